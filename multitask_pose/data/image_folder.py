"""The images of a folder (or of listed files) for the tools that read photos: one behaviour for
bad inputs in all of them (``tools/demo.py``, ``tools/detect_persons.py``).

- Files whose extension is not an image's (:data:`IMAGE_SUFFIXES`: a ``notes.txt``, a
  ``.DS_Store``) are left out of a folder and counted; a file named on the command line is used
  whatever its name.
- Every image is checked before any work (``image_problem``: empty, cut short, not an image; two
  small reads per file). A damaged one stops the run before it starts, with one line naming the
  file and ``DATALOADER.SKIP_DAMAGED_IMAGES`` -- the trainers' rule for the same key -- unless
  that key is True: then it is left out and counted with its reason. The same holds for a file
  that passes the check but does not decode (:func:`read_or_skip`).

Image ids are positions in the sorted list of image files (damaged ones included), so a file's id
does not change when a damaged neighbour is repaired or left out.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .image_check import DamagedImageError, image_problem, read_image_checked

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageListing",
    "damaged_image_message",
    "list_images",
    "read_or_skip",
    "screen_images",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SKIP_KEY = "DATALOADER.SKIP_DAMAGED_IMAGES"


@dataclass
class ImageListing:
    """The images to read, each with its id, and what was left out."""

    images: List[Tuple[int, Path]]
    not_images: List[Path] = field(default_factory=list)
    damaged: List[Tuple[Path, str]] = field(default_factory=list)  # (file, reason)

    def skip_damaged(self, path: Path, reason: str) -> None:
        """Leave out an image found damaged while reading it (:func:`read_or_skip`)."""
        self.images = [(i, p) for i, p in self.images if p != path]
        self.damaged.append((path, reason))

    def summary(self) -> str:
        """"" when nothing was left out, else e.g. "; skipped 1 file that is not an image, 2
        damaged images" (for a tool's one-line summary)."""
        parts = []
        if self.not_images:
            n = len(self.not_images)
            parts.append(f"{n} file{'s' if n > 1 else ''} that {'are' if n > 1 else 'is'} not"
                         f" an image ({', '.join(p.name for p in self.not_images[:3])}"
                         f"{', ...' if n > 3 else ''})")  # fmt: skip
        if self.damaged:
            n = len(self.damaged)
            parts.append(f"{n} damaged image{'s' if n > 1 else ''}")
        return "; skipped " + ", ".join(parts) if parts else ""

    def damaged_lines(self) -> List[str]:
        """One line per damaged image left out: the file and why."""
        return [f"{p} {reason}" for p, reason in self.damaged]


def damaged_image_message(path, reason: str, more: int = 0) -> str:
    """The one-line refusal of a damaged image when ``DATALOADER.SKIP_DAMAGED_IMAGES`` is False."""
    also = f" (and {more} more damaged image{'s' if more > 1 else ''})" if more else ""
    return (f"{path} {reason}{also}: repair or remove it, or pass {SKIP_KEY} True to skip"
            " damaged images")  # fmt: skip


def list_images(inputs: Sequence, skip_damaged: bool, what: str = "--input") -> ImageListing:
    """The images of ``inputs`` (folders and/or image files), sorted within each folder, checked.

    Raises:
        FileNotFoundError naming an input that does not exist, or when no image is left.
        DamagedImageError (one line, the first damaged file, the key) unless ``skip_damaged``.
    """
    files: List[Path] = []
    not_images: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(x for x in p.iterdir() if x.is_file()):
                (files if f.suffix.lower() in IMAGE_SUFFIXES else not_images).append(f)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{what} {item}: no such file or folder")
    listing = screen_images(list(enumerate(files)), skip_damaged, not_images)
    if not listing.images:
        looked = " ".join(map(str, inputs))
        raise FileNotFoundError(
            f"{what} {looked}: no images (looked for {', '.join(IMAGE_SUFFIXES)})"
            + listing.summary()
        )
    return listing


def screen_images(images: Sequence[Tuple[int, Path]], skip_damaged: bool,
                  not_images: Sequence[Path] = ()) -> ImageListing:  # fmt: skip
    """``images`` ((id, file) pairs, e.g. a registered dataset's) checked with ``image_problem``:
    the listing without the damaged ones when ``skip_damaged``, else DamagedImageError (one
    line: the first damaged file, how many more, the key)."""
    checked = [(i, Path(p), image_problem(p)) for i, p in images]
    bad = [(p, reason) for _, p, reason in checked if reason]
    if bad and not skip_damaged:
        raise DamagedImageError(damaged_image_message(*bad[0], more=len(bad) - 1))
    good = [(i, p) for i, p, reason in checked if not reason]
    return ImageListing(good, list(not_images), bad)


def read_or_skip(listing: ImageListing, path: Path, skip_damaged: bool,
                 format: str = "BGR") -> Optional[object]:  # fmt: skip
    """The decoded image at ``path`` (``read_image_checked``), or None when it does not decode
    and ``skip_damaged`` (then left out of ``listing`` with its reason); else DamagedImageError
    in one line naming the file and the key."""
    try:
        return read_image_checked(path, format=format)
    except DamagedImageError as e:
        reason = str(e)[len(str(path)) + 1:] if str(e).startswith(str(path)) else str(e)
        if not skip_damaged:
            raise DamagedImageError(damaged_image_message(path, reason)) from None
        listing.skip_damaged(path, reason)
        return None
