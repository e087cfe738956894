"""Files written whole or not at all: a run killed while writing leaves the previous file (or
none), never a cut-short one that a later run reads as complete."""

import contextlib
import json
import os
import tempfile

__all__ = ["atomic_write", "write_json_atomic"]


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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json_atomic(path, obj, **dump_kwargs):
    """``json.dump(obj)`` into ``path`` with :func:`atomic_write`."""
    with atomic_write(path) as f:
        json.dump(obj, f, **dump_kwargs)
