"""Training a zoo entry, one leg at a time: ``tools/train_zoo.py`` (see the package docstring).

A leg runs the entry's stage's ``train_net.py --resume`` on the entry's recipe in its cache
folder, so a killed leg continues from its last checkpoint (the recipe checkpoints every few
minutes). A machine without that folder (a new one, or a cleared cache) continues from the
entry's weights committed in the repository at the iteration its record gives: the optimizer
restarts there with the recipe's warm-up (SOLVER.START_ITER), and the record's legs, hours and
curve carry over. ``export`` writes the newest checkpoint's model as the entry's fp16 file and
record, at the end of the training or of a session (``--export``: commit them, so that the next
machine continues from there); ``--finish`` (after the last iteration) also evaluates every
SynthPeople level. Each export draws the learning curve and measures the entry's compatibility
figure (check.py).
"""

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..engine.learning_curves import plot_learning_curves, read_learning_curves
from ..engine.weights_check import WeightsFileNotFoundError
from ..env import cpu_model
from ..shared.atomic_io import write_json_atomic
from . import (
    ENTRIES,
    ROOT,
    ZOO_DIR,
    export_fp16,
    sha256_of,
    zoo_record,
    zoo_run_dir,
    zoo_weights_file,
)
from .check import CHECK_DATASET, CHECK_IMAGES, TRAIN_SCRIPTS, eval_only, measure, run_logged

__all__ = [
    "LEVELS",
    "continue_from_repository",
    "evaluate_levels",
    "export",
    "resumes_from",
    "train_leg",
    "training_hours",
    "zoo_table",
]

# The SynthPeople validation splits every entry is measured on (the zoo table's columns).
LEVELS = ("synth_people_basic_val", "synth_people_val", "synth_people_crowd_val")
# The AP each stage's record and table show (a top-down entry's box AP is that of the
# ground-truth boxes it is given: 1.0, not a measurement).
TASKS = {"topdown": ("keypoints",), "rcnn": ("keypoints", "bbox", "segm")}


def _last_checkpoint(run_dir: Path) -> Optional[Path]:
    marker = run_dir / "last_checkpoint"
    if not marker.is_file():
        return None
    path = run_dir / marker.read_text().strip()
    return path if path.is_file() else None


# In a run continued from the repository's weights: the record they came with, and the weights.
EARLIER_RECORD, EARLIER_WEIGHTS = "continued_from.json", "continued_from.pth"


def _earlier(run_dir: Path) -> Dict:
    path = run_dir / EARLIER_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def resumes_from(run_dir: Path) -> int:
    """The iteration a resumed run continues from: that of its last checkpoint (detectron2 names
    a checkpoint after its last iteration run, 0-based); without one, that of the repository's
    weights it continues from, or 0."""
    checkpoint = _last_checkpoint(run_dir)
    if checkpoint is None:
        return _earlier(run_dir).get("iterations", 0)
    if checkpoint.stem == "model_final":
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["iteration"]) + 1
    return int(checkpoint.stem.rsplit("_", 1)[1]) + 1


def continue_from_repository(name: str, run_dir: Path) -> int:
    """Set up an empty run folder to continue from the entry's weights in the repository (copied
    into it with their record, so that a later export cannot change them under the run);
    returns their iteration, 0 when the repository has none. ValueError when they cannot be
    continued: of another recipe, or not the recorded file."""
    record = zoo_record(name)
    weights = zoo_weights_file(name)
    if not record.get("iterations") or not weights.is_file():
        return 0
    entry = ENTRIES[name]
    why = None
    if record.get("config") != entry.config:
        why = f"it was trained with {record.get('config')}, not {entry.config}"
    elif sha256_of(weights) != record.get("sha256"):
        why = f"{weights} is not the file its record names (sha256 differs)"
    if why:
        raise ValueError(
            f"cannot continue zoo entry {name} from the repository's weights: {why}; remove"
            f" model_zoo/{name}.pth and .json to train it from the start"
        )
    shutil.copyfile(weights, run_dir / EARLIER_WEIGHTS)
    write_json_atomic(run_dir / EARLIER_RECORD, record, indent=1)
    return record["iterations"]


def train_leg(name: str, python: str = sys.executable) -> Path:
    """Run (or continue) entry ``name``'s training in its cache folder; returns that folder."""
    entry = ENTRIES[name]
    run_dir = zoo_run_dir(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    legs = run_dir / "legs.json"
    history = json.loads(legs.read_text()) if legs.is_file() else []
    if _last_checkpoint(run_dir) is None and not (run_dir / EARLIER_RECORD).is_file():
        continue_from_repository(name, run_dir)
    committed = zoo_record(name).get("iterations", 0)
    if resumes_from(run_dir) < committed:
        raise ValueError(
            f"{run_dir} is at iteration {resumes_from(run_dir)}, behind the repository's weights"
            f" of zoo entry {name} ({committed} iterations): move that folder away to continue"
            " from the repository's"
        )
    leg = {
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "from": resumes_from(run_dir),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),  # OMP_NUM_THREADS, which the leg inherits
    }
    opts = []
    earlier = _earlier(run_dir)
    if earlier:
        # every leg of a continued run: its first starts at the weights' iteration; the later
        # ones resume from the run's own checkpoints, with the same (repeated) warm-up schedule
        opts = ["MODEL.WEIGHTS", run_dir / EARLIER_WEIGHTS,
                "SOLVER.START_ITER", earlier["iterations"]]  # fmt: skip
        if leg["from"] == earlier["iterations"]:
            leg["note"] = "from the repository's fp16 weights, the optimizer restarted (warm-up)"
    history.append(leg)
    write_json_atomic(legs, history, indent=1)
    script = TRAIN_SCRIPTS[entry.stage]
    run_logged([python, script, "--config-file", ROOT / entry.config, "--resume",
                "OUTPUT_DIR", run_dir, *opts])  # fmt: skip
    return run_dir


def evaluate_levels(name: str, python: str = sys.executable) -> Dict[str, Dict]:
    """Evaluate the entry's final checkpoint (the whole model, also where the entry stores part of
    it) on every level of :data:`LEVELS`."""
    run_dir = zoo_run_dir(name)
    return eval_only(name, run_dir / "model_final.pth", run_dir / "levels", LEVELS, python)


def training_hours(metrics_file: Path, legs: List[Dict]) -> Tuple[float, Optional[float]]:
    """Hours of training in the model (evaluations and checkpoints not counted) and CPU-hours
    (hours x each leg's threads; None when a leg did not record its threads). detectron2 logs
    every 20 iterations the median time of the last 20; an iteration a resumed leg ran again
    counts once, as its last run (the work a killed leg lost is not in the model)."""
    logged = {}
    for line in metrics_file.read_text().splitlines():
        m = json.loads(line) if line.strip() else {}
        if "time" in m:
            logged[m["iteration"]] = m["time"] * 20 / 3600
    starts = sorted(((leg["from"], leg.get("threads")) for leg in legs), key=lambda x: x[0])
    hours, cpu_hours = 0.0, 0.0
    for it, h in logged.items():
        threads = next((t for start, t in reversed(starts) if start <= it), None)
        hours += h
        cpu_hours = None if cpu_hours is None or threads is None else cpu_hours + h * threads
    return hours, cpu_hours


def export(name: str, levels: Optional[Dict[str, Dict]] = None) -> str:
    """The newest checkpoint of the entry's run as ``model_zoo/<name>.pth`` (fp16) and its record
    ``model_zoo/<name>.json``; returns a one-line summary."""
    entry = ENTRIES[name]
    run_dir = zoo_run_dir(name)
    checkpoint = _last_checkpoint(run_dir)
    if checkpoint is None:
        raise WeightsFileNotFoundError(
            f"{run_dir}: no checkpoint yet; train with tools/train_zoo.py {name}"
        )
    sha = export_fp16(str(checkpoint), zoo_weights_file(name))
    check = measure(name)
    legs_file = run_dir / "legs.json"
    legs = json.loads(legs_file.read_text()) if legs_file.is_file() else []
    hours, cpu_hours = training_hours(run_dir / "metrics.json", legs)
    curves = read_learning_curves(run_dir, name)
    earlier = _earlier(run_dir)  # the record of the weights a continued run started from
    if earlier:
        legs = earlier["legs"] + legs
        hours += earlier["training_hours"]
        both = cpu_hours is not None and earlier["cpu_hours"] is not None
        cpu_hours = cpu_hours + earlier["cpu_hours"] if both else None
        for key, points in earlier["curve"].items():
            its, values = curves.ap.setdefault(key, ([], []))  # all after the earlier points
            merged = [tuple(p) for p in points] + list(zip(its, values))
            curves.ap[key] = ([it for it, _ in merged], [v for _, v in merged])
    plot_learning_curves([curves], run_dir / "learning_curve.png")
    record = {
        "name": name,
        "what": entry.what,
        "config": entry.config,
        "checkpoint": checkpoint.name,
        "iterations": resumes_from(run_dir),  # the iterations in the checkpoint
        "legs": legs,
        "training_hours": round(hours, 2),
        "cpu_hours": round(cpu_hours, 2) if cpu_hours is not None else None,
        "sha256": sha,
        # measured again by tests/model_zoo (multitask_pose/model_zoo/check.py)
        "check": check,
        # the learning curve on the recipe's DATASETS.TEST (the PNG: learning_curve.png in the run)
        "curve": {
            key: [[it, round(v, 4)] for it, v in zip(*series)]
            for key, series in sorted(curves.ap.items())
            if key.endswith("/AP") and key.split("/")[0] in TASKS[entry.stage]
        },
        "levels": levels if levels is not None else zoo_record(name).get("levels", {}),
    }
    write_json_atomic(ZOO_DIR / f"{name}.json", record, indent=1)
    size = zoo_weights_file(name).stat().st_size / 2**20
    return (
        f"train_zoo {name}: {record['iterations']} iterations in {len(record['legs'])}"
        f" leg{'s' if len(record['legs']) != 1 else ''},"
        f" {record['training_hours']} h of training ({record['cpu_hours']} CPU-hours);"
        f" model_zoo/{name}.pth {size:.1f} MB"
        f" sha256 {sha[:12]}; " + ", ".join(f"{k} {v:.4f}" for k, v in check.items())
    )


def _level_ap(results: Dict, stage: str) -> str:
    labels = {"keypoints": "kp", "bbox": "box", "segm": "mask"}
    return " / ".join(f"{labels[task]} {results[task]['AP'] / 100:.3f}"
                      for task in TASKS[stage] if task in results)  # fmt: skip


def zoo_table() -> str:
    """The zoo's markdown table, one row per entry with a record (the README's)."""
    head = (
        "| entry | trained on | iterations (legs) | hours (CPU-hours), CPU"
        " | " + " | ".join(f"`{lvl}` AP" for lvl in LEVELS)
        + f" | check (first {CHECK_IMAGES} images of `{CHECK_DATASET}`) | MB, sha256 |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in sorted(ENTRIES):
        r = zoo_record(name)
        if not r:
            rows.append(f"| `{name}` | not trained yet |" + " |" * (head.count("|") - 3))
            continue
        cpus = sorted({f"{leg.get('cpu', '?')} x{leg.get('threads', '?')}" for leg in r["legs"]})
        stage = ENTRIES[name].stage
        levels = [
            _level_ap(r["levels"][lvl], stage) if lvl in r["levels"] else "-" for lvl in LEVELS
        ]
        check = ", ".join(f"{k.split(' ', 1)[1]} {v:.3f}" for k, v in r["check"].items())
        weights = zoo_weights_file(name)
        size = weights.stat().st_size / 2**20 if weights.is_file() else 0
        rows.append(
            f"| `{name}` | {r['what']} | {r['iterations']} ({len(r['legs'])})"
            f" | {r['training_hours']} ({r['cpu_hours']}), {'; '.join(cpus)} | "
            + " | ".join(levels) + f" | {check} | {size:.1f}, `{r['sha256'][:12]}` |"
        )
    return "\n".join(rows)
