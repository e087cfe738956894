"""Files written whole or not at all: a run killed while writing leaves the previous file (or
none), never a cut-short one that a later run reads as complete."""

import contextlib
import json
import os
import tempfile

__all__ = [
    "AtomicPathManager",
    "atomic_write",
    "save_figure_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


# The process's umask (read once: os.umask can only be read by setting it), for the mode of the
# files written: mkstemp creates them 0600, open() would have made them 0666 & ~umask.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_kwargs):
    """``open(path, mode)`` for writing through a temporary file in the same folder that replaces
    ``path`` (``os.replace``, atomic on POSIX and Windows) only when the block ends without an
    exception; otherwise the temporary file is removed and ``path`` is untouched."""
    if "w" not in mode:
        raise ValueError(f"atomic_write writes whole files: mode {mode!r} has no 'w'")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o7777  # replacing a file: keep its mode
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json_atomic(path, obj, **dump_kwargs):
    """``json.dump(obj)`` into ``path`` with :func:`atomic_write`."""
    with atomic_write(path) as f:
        json.dump(obj, f, **dump_kwargs)


def write_text_atomic(path, text):
    """``Path(path).write_text(text)`` with :func:`atomic_write`."""
    with atomic_write(path) as f:
        f.write(text)


def save_figure_atomic(fig, path, **savefig_kwargs):
    """``fig.savefig(path)`` (a matplotlib figure; format from the suffix) with
    :func:`atomic_write`."""
    fmt = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, **savefig_kwargs)


class AtomicPathManager:
    """An iopath ``PathManager`` (detectron2's, fvcore's) whose ``open`` for writing a local file
    goes through :func:`atomic_write`; everything else is the wrapped manager's. Given to
    detectron2's evaluator and to the checkpointer, so their files are whole or absent."""

    def __init__(self, base):
        self._base = base

    def open(self, path, mode="r", **kwargs):
        if "w" in mode and "://" not in str(path):
            return atomic_write(path, mode, **kwargs)
        return self._base.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(self._base, name)
