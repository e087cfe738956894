"""A top-down CPU recipe learns: training for a few minutes raises keypoint AP on held-out
synthetic data above the untrained model (ground-truth boxes, flip test on). In `make test-slow`:
`make test` proves learning by memorisation (test_topdown_memorisation.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TRAIN_NET = ROOT / "projects" / "TopDown" / "train_net.py"
RECIPE = ROOT / "projects" / "TopDown" / "configs" / "Synthetic" / "hrnet_w18_small_synth.yaml"

# The test-sized run: the CPU recipe on the small SynthPeople splits.
OPTS = [
    "DATASETS.TRAIN",
    "('synth_people_mini_train',)",
    "DATASETS.TEST",
    "('synth_people_mini_val',)",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.CHECKPOINT_PERIOD",
    "100000",
    "TEST.EVAL_PERIOD",
    "0",
    "SEED",
    "42",
]


def _run(args, cwd):
    proc = subprocess.run(
        [sys.executable, str(TRAIN_NET), "--config-file", str(RECIPE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"train_net failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.mark.slow
def test_cpu_recipe_learns_keypoints(synth_mini, tmp_path):
    untrained = tmp_path / "untrained"
    _run(["--eval-only", "--allow-random-weights", *OPTS, "OUTPUT_DIR", str(untrained)], tmp_path)
    before = json.load(open(untrained / "results_synth_people_mini_val.json"))["keypoints"]
    trained = tmp_path / "trained"
    proc = _run(
        [*OPTS, "SOLVER.MAX_ITER", "150", "SOLVER.STEPS", "(120,)", "OUTPUT_DIR", str(trained)],
        tmp_path,
    )
    after = json.load(open(trained / "results_synth_people_mini_val.json"))["keypoints"]
    assert "topdown train_net synth_people_mini_val: " in proc.stdout
    # AP in percent, as detectron2 reports it. Measured (2-core CPU, 3.8 min): untrained 0.000 /
    # AP50 0.000; trained 0.27 / AP50 1.69. From scratch, keypoint AP rises slowly (the recipe's
    # 500 iterations: see projects/TopDown/README.md), so the margins are a third to a half of that.
    assert after["AP"] > before["AP"] + 0.1, (before, after)
    assert after["AP50"] > before["AP50"] + 0.8, (before, after)
