"""The R-CNN ablation (multitask_pose/studies/rcnn_ablation.py, tools/ablate.py): its configs and
table, and (slow) the command, which trains each config with one budget, writes the table, and on
a second call reads finished configs back instead of training them again."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from multitask_pose.engine.cli import ConfigError
from multitask_pose.studies import rcnn_ablation

TINY = [
    "DATASETS.TRAIN",
    "('synth_people_mini_train',)",
    "DATASETS.TEST",
    "('coco_person_sample',)",
    "INPUT.MIN_SIZE_TRAIN",
    "(160,)",
    "INPUT.MAX_SIZE_TRAIN",
    "192",
    "INPUT.MIN_SIZE_TEST",
    "192",
    "INPUT.MAX_SIZE_TEST",
    "256",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "TEST.EVAL_PERIOD",
    "0",
    "SOLVER.CHECKPOINT_PERIOD",
    "1000",
]


def test_configs_by_name_or_path(tmp_path):
    assert rcnn_ablation.resolve("plain") == ("plain", rcnn_ablation.ABLATION_DIR / "plain.yaml")
    # the study's order names every ablation config
    assert set(rcnn_ablation.ORDER) == {p.stem for p in rcnn_ablation.ABLATION_DIR.glob("*.yaml")}
    yaml = tmp_path / "mine.yaml"
    with pytest.raises(ConfigError, match="does not exist"):
        rcnn_ablation.resolve(str(yaml))
    yaml.write_text("")
    assert rcnn_ablation.resolve(str(yaml)) == ("mine", yaml)
    with pytest.raises(ConfigError, match=r"no config 'nope' in .*known: \['balanced'"):
        rcnn_ablation.resolve("nope")


def test_table_cells_and_spread():
    def r(kp, box=40.0, train=2.0, infer=30.0):
        return {"box": box, "mask": None, "kp": kp, "kp50": 80.0, "kp75": kp / 2,
                "train_min": train, "infer_ms": infer}  # fmt: skip

    groups = [("plain", [r(50.0), r(52.0, train=4.0)]), ("offset", [r(56.0), r(57.0)])]
    lines = rcnn_ablation.table(groups, "note").splitlines()
    assert lines[:2] == ["note", ""]
    assert lines[2] == (
        "| config | box AP | mask AP | kp AP | kp AP50 | kp AP75 | train min | infer ms/img |"
        " kp AP vs first, exceeds seed spread |"
    )
    assert lines[3] == "|" + "---|" * 9
    assert lines[4] == (
        "| plain | 0.400 (0.400, 0.400) | - | 0.510 (0.500, 0.520) | 0.800 (0.800, 0.800) |"
        " 0.255 (0.250, 0.260) | 3.0 | 30 | +0.000 (spread 0.020: no) |"
    )
    assert lines[5].endswith("| +0.055 (spread 0.020: yes) |")
    # one seed: the values alone, no comparison column
    one = rcnn_ablation.table([("plain", [r(50.0)])], "note").splitlines()
    assert one[3] == "|" + "---|" * 8
    assert one[4] == "| plain | 0.400 | - | 0.500 | 0.800 | 0.250 | 2.0 | 30 |"


def ablate(out, *names, seeds=("1", "2")):
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "ablate.py"),
        "--configs",
        *names,
        "--max-iter",
        "4",
        "--seeds",
        *seeds,
        "--output",
        str(out),
        "--",
        *TINY,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # four short trainings, about a minute: kept out of `make test`
def test_ablate_table_and_rerun(synth_mini, tmp_path):
    """Two configs, two seeds each: every run's row holds the figures of the results file
    train_net wrote; the table gives each config's mean and both seeds' values, and the keypoint
    AP difference from the first config with its verdict against the seed spread."""
    names = ("plain", "dcn_rb_h_offset")
    proc = ablate(tmp_path, *names)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    table = (tmp_path / "ablation.md").read_text()
    rows = {n: line for n in names for line in table.splitlines() if line.startswith(f"| {n} |")}
    assert len(rows) == 2, table
    assert "SOLVER.MAX_ITER 4" in table and "coco_person_sample" in table and "SEED 1, 2" in table
    res = {}
    for name in names:
        for seed in (1, 2):
            out = tmp_path / name / f"seed{seed}"
            row = json.loads((out / "ablation_row.json").read_text())
            # The common budget and the seed reached train_net: 4 iterations, steps scaled.
            cfg = (out / "config.yaml").read_text()
            assert "MAX_ITER: 4" in cfg and f"SEED: {seed}" in cfg
            assert row["train_min"] > 0 and row["infer_ms"] > 0
            r = json.loads((out / "results_coco_person_sample.json").read_text())
            assert (row["box"], row["kp"], row["kp50"], row["kp75"]) == (
                r["bbox"]["AP"],
                r["keypoints"]["AP"],
                r["keypoints"]["AP50"],
                r["keypoints"]["AP75"],
            )
            res[name, seed] = r

    def mean_and_values(name, task, metric):
        a, b = (res[name, s][task][metric] / 100 for s in (1, 2))
        return f"{(a + b) / 2:.3f} ({a:.3f}, {b:.3f})"

    for name in names:
        cells = rows[name].split(" | ")
        assert cells[1:6] == [
            mean_and_values(name, "bbox", "AP"), mean_and_values(name, "segm", "AP"),
            mean_and_values(name, "keypoints", "AP"), mean_and_values(name, "keypoints", "AP50"),
            mean_and_values(name, "keypoints", "AP75"),
        ]  # fmt: skip
        kp = {n: [res[n, s]["keypoints"]["AP"] / 100 for s in (1, 2)] for n in names}
        diff = sum(kp[name]) / 2 - sum(kp["plain"]) / 2
        spread = max(max(v) - min(v) for v in (kp[name], kp["plain"]))
        verdict = "yes" if abs(diff) > spread else "no"
        assert cells[8].strip(" |") == f"{diff:+.3f} (spread {spread:.3f}: {verdict})", cells
    assert proc.stdout.strip().splitlines()[-1].startswith("ablate: plain kp AP")
    again = ablate(tmp_path, *names)
    assert again.returncode == 0 and again.stdout.count("finished earlier") == 4, again.stdout
    bad = ablate(tmp_path, "no_such_config")
    assert bad.returncode == 2 and "ablate: no config 'no_such_config'" in bad.stderr
