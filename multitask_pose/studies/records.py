"""A study's record: the small files of its finished runs (``--record DIR``), kept apart from its
output folder so that a study whose output folder is lost (a machine that does not keep its cache
between sessions) resumes from them instead of training and evaluating again.

A study saves a run into its record once the run is whole (trained and evaluated in every setting)
and restores the record into its output folder when it starts: each recorded file is written where
it is missing, so the runner finds the run finished and reads its results back. Recorded per run:
its row (``ablation_row.json``), its config, every evaluation's metrics (``results_*.json``) and the
error analysis' costs of every keypoint results file (``*.costs.json``, :mod:`.reasons`), which is
all the tables and the effects' reasons read. Weights and checkpoints are never recorded (a study
whose later runs need a recorded run's weights trains it again, :func:`runner.run_one`'s
``needs_weights``); a run's COCO results files are recorded (gzip-compressed) only where later runs
read them (``inputs=True``: the baseline's results that cue or feed other models), and so are
files a study makes from a run's weights (pseudo-labels). A detector's boxes are not recorded:
the studies detect again when the file is missing (a minute or two per dataset from a model zoo
detector, the same boxes), which keeps megabytes out of the repository."""

import gzip
import json
import logging
from pathlib import Path
from typing import Iterable

from ..shared.atomic_io import atomic_write

__all__ = ["RECORDED", "restore", "save"]

logger = logging.getLogger(__name__)

# The names of a run's files that are recorded, at any depth of its folder (config.yaml at its top
# only: an evaluation's folder holds a copy).
RECORDED = ("ablation_row.json", "results_*.json", "*.costs.json")
RESULTS = "coco_instances_results.json"  # an evaluation's COCO results, under inference/<dataset>/


def _copy(src: Path, dst: Path, compress: bool):
    data = src.read_bytes()
    with atomic_write(dst, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if compress else data)


def _keypoint_results(path: Path) -> bool:
    with open(path) as f:
        found = json.load(f)
    return bool(found) and "keypoints" in found[0]


def save(record_root, out_root, *paths: Iterable, inputs: bool = False) -> int:
    """Record ``paths`` (run folders or files of the study's output folder ``out_root``) into
    ``record_root`` under the same relative paths; a no-op without ``record_root``. A folder gives
    its :data:`RECORDED` files, with the error analysis' costs of its keypoint results computed
    first, and with ``inputs`` its COCO results files too; a file is recorded whole. Results and
    given files go in gzip-compressed (``.gz``). Returns the number of files written."""
    if not record_root:
        return 0
    from .reasons import error_costs

    record_root, out_root = Path(record_root), Path(out_root)
    written = 0
    for path in map(Path, paths):
        if path.is_file():
            files = [(path, True)]
        else:
            for found in sorted(path.rglob(f"inference/*/{RESULTS}")):
                if _keypoint_results(found):
                    error_costs(found, found.parent.name)  # (its costs file, recorded below)
            files = [(f, False) for pattern in RECORDED for f in sorted(path.rglob(pattern))]
            if (path / "config.yaml").is_file():
                files.append((path / "config.yaml", False))
            if inputs:
                files += [(f, True) for f in sorted(path.rglob(f"inference/*/{RESULTS}"))]
        for f, compress in files:
            rel = f.resolve().relative_to(out_root.resolve())
            _copy(f, record_root / (f"{rel}.gz" if compress else rel), compress)
            written += 1
    return written


def restore(record_root, out_root) -> int:
    """Write each file of ``record_root`` into ``out_root`` where it is missing (a ``.gz`` file
    decompressed, without its suffix); a no-op without ``record_root`` or where it does not exist
    yet. Returns the number of files written."""
    if not record_root or not Path(record_root).is_dir():
        return 0
    record_root, out_root = Path(record_root), Path(out_root)
    written = 0
    for src in sorted(p for p in record_root.rglob("*") if p.is_file()):
        rel = src.relative_to(record_root)
        compressed = src.suffix == ".gz"
        dst = out_root / (rel.with_suffix("") if compressed else rel)
        if dst.exists():
            continue
        data = src.read_bytes()
        with atomic_write(dst, "wb") as f:
            f.write(gzip.decompress(data) if compressed else data)
        written += 1
    if written:
        logger.info("restored %d recorded files from %s into %s", written, record_root, out_root)
    return written
