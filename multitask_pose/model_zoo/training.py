"""Training a zoo entry, one leg at a time: ``tools/train_zoo.py`` (see the package docstring).

A leg runs the entry's stage's ``train_net.py --resume`` on the entry's recipe in its cache
folder, so a killed leg continues from its last checkpoint (the recipe checkpoints every few
minutes). ``export`` writes the newest checkpoint's model as the entry's fp16 file and record, at
the end of the training or of a session (``--export``); ``--finish`` (after the last iteration)
also evaluates every SynthPeople level and draws the learning curve.
"""

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..shared.atomic_io import write_json_atomic
from . import ENTRIES, ROOT, ZOO_DIR, export_fp16, zoo_record, zoo_run_dir, zoo_weights_file

__all__ = ["LEVELS", "evaluate_levels", "export", "resumes_from", "train_leg"]

TRAIN_SCRIPTS = {
    "topdown": ROOT / "projects" / "TopDown" / "train_net.py",
    "rcnn": ROOT / "tools" / "train_net.py",
}
# The SynthPeople validation splits every entry is measured on (the zoo table's columns).
LEVELS = ("synth_people_basic_val", "synth_people_val", "synth_people_crowd_val")


def _run(cmd: List[str]) -> None:
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def _last_checkpoint(run_dir: Path) -> Optional[Path]:
    marker = run_dir / "last_checkpoint"
    if not marker.is_file():
        return None
    path = run_dir / marker.read_text().strip()
    return path if path.is_file() else None


def resumes_from(run_dir: Path) -> int:
    """The iteration a resumed run continues from: that of its last checkpoint (0 without one;
    detectron2 names a checkpoint after its last iteration run, 0-based)."""
    checkpoint = _last_checkpoint(run_dir)
    if checkpoint is None:
        return 0
    if checkpoint.stem == "model_final":
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["iteration"]) + 1
    return int(checkpoint.stem.rsplit("_", 1)[1]) + 1


def train_leg(name: str, python: str = sys.executable) -> Path:
    """Run (or continue) entry ``name``'s training in its cache folder; returns that folder."""
    entry = ENTRIES[name]
    run_dir = zoo_run_dir(name)
    run_dir.mkdir(parents=True, exist_ok=True)
    legs = run_dir / "legs.json"
    history = json.loads(legs.read_text()) if legs.is_file() else []
    history.append({"started": time.strftime("%Y-%m-%d %H:%M"), "from": resumes_from(run_dir)})
    write_json_atomic(legs, history, indent=1)
    _run([python, TRAIN_SCRIPTS[entry.stage], "--config-file", ROOT / entry.config, "--resume",
          "OUTPUT_DIR", run_dir])  # fmt: skip
    return run_dir


def evaluate_levels(name: str, python: str = sys.executable) -> Dict[str, Dict]:
    """Evaluate the entry's final checkpoint on every level of :data:`LEVELS`."""
    entry = ENTRIES[name]
    run_dir = zoo_run_dir(name)
    out = run_dir / "levels"
    _run([python, TRAIN_SCRIPTS[entry.stage], "--config-file", ROOT / entry.config, "--eval-only",
          "MODEL.WEIGHTS", run_dir / "model_final.pth", "OUTPUT_DIR", out,
          "DATASETS.TEST", repr(LEVELS)])  # fmt: skip
    return {lvl: json.loads((out / f"results_{lvl}.json").read_text()) for lvl in LEVELS}


def export(name: str, levels: Optional[Dict[str, Dict]] = None) -> str:
    """The newest checkpoint of the entry's run as ``model_zoo/<name>.pth`` (fp16) and its record
    ``model_zoo/<name>.json``; returns a one-line summary."""
    entry = ENTRIES[name]
    run_dir = zoo_run_dir(name)
    checkpoint = _last_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(
            f"{run_dir}: no checkpoint yet; train with tools/train_zoo.py {name}"
        )
    sha = export_fp16(str(checkpoint), zoo_weights_file(name))
    iteration = torch.load(checkpoint, map_location="cpu", weights_only=True).get("iteration")
    metrics = [json.loads(x) for x in (run_dir / "metrics.json").read_text().splitlines() if x]
    # detectron2 logs every 20 iterations the median iteration time of the last 20: about the
    # training time (evaluations and checkpoints not counted).
    seconds = sum(m.get("time", 0.0) for m in metrics) * 20
    legs_file = run_dir / "legs.json"
    record = {
        "name": name,
        "what": entry.what,
        "config": entry.config,
        "checkpoint": checkpoint.name,
        # detectron2 stores the last iteration run (0-based); model_final's is MAX_ITER - 1
        "iterations": int(iteration) + 1 if iteration is not None else None,
        "legs": json.loads(legs_file.read_text()) if legs_file.is_file() else [],
        "training_hours": round(seconds / 3600, 2),
        "sha256": sha,
        "levels": levels if levels is not None else zoo_record(name).get("levels", {}),
    }
    write_json_atomic(ZOO_DIR / f"{name}.json", record, indent=1)
    size = zoo_weights_file(name).stat().st_size / 2**20
    return (
        f"train_zoo {name}: {record['iterations']} iterations in {len(record['legs'])} legs,"
        f" {record['training_hours']} h of training; model_zoo/{name}.pth {size:.1f} MB"
        f" sha256 {sha[:12]}"
    )
