"""Damaged image files found before they are used.

Decoders hide damage: OpenCV decodes a JPEG cut to a third of its bytes into a whole image whose
missing part is grey, and a training run meets a file it cannot read hours in, in a loader worker.
Two levels:

- ``image_problem(path)``: a cheap structural check (size, the format's signature, the JPEG
  end-of-image marker or PNG ``IEND`` chunk near the end; two small reads, no decoding). The
  trainers run it on every image of their datasets before the first iteration
  (``screen_dataset_images``), cached per file (path, size, modification time) in
  ``$MTP_DATASETS_CACHE/../image_checks.json`` so a dataset is read once.
- ``read_image_checked(path)``: the structural check, then a full decode with detectron2's
  ``read_image`` (PIL, which refuses truncated data), for the demo.

A file whose content is no image format (a text or html file named ``.jpg``: "wrong extension")
is a problem; an image whose extension names another format (a PNG named ``.jpg``) is not,
since every decoder reads the content.
"""

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from detectron2.data.detection_utils import read_image

from .paths import synth_cache_root

__all__ = [
    "DamagedImageError",
    "check_image_array",
    "image_problem",
    "read_image_checked",
    "screen_dataset_images",
]

logger = logging.getLogger(__name__)

# The last bytes searched for an end marker: writers may pad after it (zeros, a short trailer).
_TAIL = 4096
_SIGNATURES = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
]


class DamagedImageError(OSError):
    """An image file that is empty, cut short, not an image, or cannot be decoded."""


def _format_of(head: bytes) -> Optional[str]:
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def image_problem(path) -> Optional[str]:
    """What is wrong with the image file ``path`` by its structure (module docstring), or None.
    Formats without an end marker (BMP, GIF, TIFF, WebP) are checked by their signature only."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "is empty (0 bytes)"
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    kind = _format_of(head)
    if kind is None:
        return f"is not an image in a known format (it starts with {head[:8]!r})"
    if kind == "JPEG" and b"\xff\xd9" not in tail:
        return f"is a JPEG cut short: no end-of-image marker in its last bytes ({size} bytes)"
    if kind == "PNG" and b"IEND" not in tail:
        return f"is a PNG cut short: no IEND chunk at its end ({size} bytes)"
    return None


def read_image_checked(path, format: str = "BGR"):
    """``detectron2.data.detection_utils.read_image(path, format)`` (EXIF orientation applied)
    after ``image_problem``; raises ``DamagedImageError`` naming the file and the problem."""
    problem = image_problem(path)
    if problem:
        raise DamagedImageError(f"{path} {problem}")
    try:
        image = read_image(str(path), format=format)
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for undecodable data
        raise DamagedImageError(f"{path} cannot be decoded: {e}") from e
    if image.size == 0:
        raise DamagedImageError(f"{path} decodes to an empty image {image.shape}")
    return image


def check_image_array(image, what="image"):
    """Raise ValueError unless ``image`` is a non-empty (H, W, 3) array (what predictors take)."""
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"{what}: expected an (H, W, 3) array, got shape {shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{what}: empty image of shape {tuple(shape)}")
    return image


def _cache_file() -> Path:
    return synth_cache_root().parent / "image_checks.json"


class _CheckCache:
    """{absolute path: [size, mtime_ns, problem]}, read once and written atomically."""

    def __init__(self, path: Path):
        self.path, self.changed = path, False
        try:
            self.entries: Dict[str, list] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def problem(self, file_name: str) -> Optional[str]:
        key = os.path.abspath(file_name)
        try:
            st = os.stat(key)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError as e:
            return f"cannot be read ({e.strerror or e})"  # not cached: it may appear later
        hit = self.entries.get(key)
        if hit and hit[:2] == stamp:
            return hit[2]
        problem = image_problem(key)
        self.entries[key] = [*stamp, problem]
        self.changed = True
        return problem

    def save(self):
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only cache costs time, not correctness
            logger.warning("could not write the image-check cache %s: %s", self.path, e)


def screen_dataset_images(
    dicts: List[dict], what: str, skip: bool = False, progress_every: int = 20000
) -> List[dict]:
    """Check the image of every dataset dict (``image_problem``, cached per file).

    Args:
        dicts: detectron2 dataset dicts ("file_name").
        what: the datasets' names, for messages (e.g. "DATASETS.TRAIN ('coco_2017_train',)").
        skip: leave damaged images out (listed in a warning) instead of raising.

    Returns:
        ``dicts`` itself when every image passes, else (``skip``) the dicts of the good ones.

    Raises:
        DamagedImageError naming the damaged files (the first 10) and the option that skips them.
    """
    cache = _CheckCache(_cache_file())
    bad = []
    for i, d in enumerate(dicts):
        if progress_every and i and i % progress_every == 0:
            logger.info("checking the image files of %s: %d / %d", what, i, len(dicts))
        problem = cache.problem(d["file_name"])
        if problem:
            bad.append((i, f"{d['file_name']} {problem}"))
    cache.save()
    if not bad:
        return dicts
    listing = "\n  ".join(msg for _, msg in bad[:10]) + (
        f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    )
    if not skip:
        raise DamagedImageError(
            f"{what}: {len(bad)} of {len(dicts)} image files are damaged:\n  {listing}\n"
            "Repair or remove them, or set DATALOADER.SKIP_DAMAGED_IMAGES True to leave them out."
        )
    logger.warning(
        "%s: leaving out %d of %d images whose files are damaged "
        "(DATALOADER.SKIP_DAMAGED_IMAGES):\n  %s",
        what, len(bad), len(dicts), listing,
    )  # fmt: skip
    drop = {i for i, _ in bad}
    return [d for i, d in enumerate(dicts) if i not in drop]
