"""The zoo's compatibility figure: each entry measured on ``synth_people_basic_val`` with its stored
weights only, written into its record at export and measured again by the test suite, so that a
code change that silently breaks an entry (a renamed key, a changed layer, another decoding)
fails a test instead of every run that starts from it.

- A top-down entry: keypoint AP on ground-truth boxes; an R-CNN entry: keypoint and box AP (each
  its stage's ``train_net.py --eval-only``).
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Sequence

from . import ENTRIES, PREFIX, ROOT

__all__ = [
    "CHECK_DATASET",
    "TRAIN_SCRIPTS",
    "eval_only",
    "measure",
    "run_logged",
]

CHECK_DATASET = "synth_people_basic_val"
TRAIN_SCRIPTS = {
    "topdown": ROOT / "projects" / "TopDown" / "train_net.py",
    "rcnn": ROOT / "tools" / "train_net.py",
}


def run_logged(cmd: Sequence) -> None:
    """Run ``cmd`` in the repository root, echoed first; CalledProcessError when it fails."""
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def eval_only(name: str, weights: str, output_dir: Path, datasets: Sequence[str],
              python: str = sys.executable) -> Dict[str, Dict]:  # fmt: skip
    """Evaluate ``weights`` with entry ``name``'s recipe on ``datasets`` (its stage's
    ``train_net.py --eval-only``); returns each dataset's results (detectron2's, AP in %)."""
    entry = ENTRIES[name]
    cmd = [python, TRAIN_SCRIPTS[entry.stage], "--config-file", ROOT / entry.config,
           "--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", output_dir,
           "DATASETS.TEST", repr(tuple(datasets))]  # fmt: skip
    run_logged(cmd)
    return {d: json.loads((Path(output_dir) / f"results_{d}.json").read_text()) for d in datasets}


def measure(name: str) -> Dict[str, float]:
    """Entry ``name``'s compatibility figure from its stored weights (``zoo://<name>``)."""
    weights = f"{PREFIX}{name}"
    with tempfile.TemporaryDirectory() as tmp:
        res = eval_only(name, weights, Path(tmp), [CHECK_DATASET])[CHECK_DATASET]
    tasks = {"keypoints": "keypoint AP", "bbox": "box AP"}
    if ENTRIES[name].stage == "topdown":
        del tasks["bbox"]  # that of the ground-truth boxes it is given
    return {f"{CHECK_DATASET} {label}": round(res[task]["AP"] / 100, 4)
            for task, label in tasks.items()}  # fmt: skip
