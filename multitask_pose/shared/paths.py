"""Where a relative path in a config points, so that a command works from any directory.

detectron2 takes ``_BASE_`` relative to the yaml that names it and every other path
(``MODEL.WEIGHTS``, ``OUTPUT_DIR``) relative to the current directory. The top-down configs also
name files of the repository: the detector's config and checkpoint, a detection file
(``TEST.TOPDOWN.DETECTOR_CONFIG``, ``DETECTOR_WEIGHTS``, ``DET_FILE``, ``HINT.FILE``), written
from the repository root (``configs/...``, ``output/main_job/...``). :func:`find_file` keeps
detectron2's rule first: a relative path is taken from the current directory; only when no such
file is there, from the repository root. A path found in neither stays as given, and the error
that follows names both places (:func:`looked_in`).
"""

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "find_file", "looked_in"]

# The checkout the package runs from (multitask_pose/shared/paths.py -> the repository root).
REPO_ROOT = Path(__file__).resolve().parents[2]


def find_file(path: str) -> str:
    """``path`` when absolute, a URL, empty or a file from the current directory; else the
    repository's file of that relative path when there is one; else ``path`` unchanged."""
    if not path or "://" in path or os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = REPO_ROOT / path
    return str(candidate) if candidate.exists() else path


def looked_in(path: str) -> str:
    """Where :func:`find_file` looked for a relative ``path`` ("" for other paths), for an
    error message."""
    if not path or "://" in path or os.path.isabs(path):
        return ""
    return f" (looked in {os.getcwd()} and in the repository {REPO_ROOT})"
