"""tools/ablate.py: trains each config with one budget, writes the table, and on a second call
reads finished configs back instead of training them again."""

import json
import subprocess
import sys

from conftest import ROOT

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


def ablate(out, *names):
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "ablate.py"),
        "--configs",
        *names,
        "--max-iter",
        "4",
        "--output",
        str(out),
        "--",
        *TINY,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ablate_table_and_rerun(synth_mini, tmp_path):
    proc = ablate(tmp_path, "plain", "dcn_rb_h_offset")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    table = (tmp_path / "ablation.md").read_text()
    rows = [
        line
        for line in table.splitlines()
        if line.startswith("| plain") or line.startswith("| dcn_rb_h_offset")
    ]
    assert len(rows) == 2, table
    assert "SOLVER.MAX_ITER 4" in table and "coco_person_sample" in table
    for name in ("plain", "dcn_rb_h_offset"):
        row = json.loads((tmp_path / name / "ablation_row.json").read_text())
        # The common budget reached train_net: 4 iterations, steps scaled from the recipe's.
        cfg = (tmp_path / name / "config.yaml").read_text()
        assert "MAX_ITER: 4" in cfg and row["train_min"] > 0 and row["infer_ms"] > 0
        # The row holds the figures of the results file train_net wrote, and the table shows them.
        res = json.loads((tmp_path / name / "results_coco_person_sample.json").read_text())
        assert (row["box"], row["kp"], row["kp50"], row["kp75"]) == (
            res["bbox"]["AP"],
            res["keypoints"]["AP"],
            res["keypoints"]["AP50"],
            res["keypoints"]["AP75"],
        )
        line = next(r for r in rows if r.startswith(f"| {name} |"))
        assert line.split(" | ")[1:6] == [
            f"{res['bbox']['AP'] / 100:.3f}", f"{res['segm']['AP'] / 100:.3f}",
            f"{res['keypoints']['AP'] / 100:.3f}", f"{res['keypoints']['AP50'] / 100:.3f}",
            f"{res['keypoints']['AP75'] / 100:.3f}",
        ]  # fmt: skip
    assert proc.stdout.strip().splitlines()[-1].startswith("ablate: plain kp AP")
    again = ablate(tmp_path, "plain", "dcn_rb_h_offset")
    assert again.returncode == 0 and again.stdout.count("finished earlier") == 2, again.stdout
    bad = ablate(tmp_path, "no_such_config")
    assert bad.returncode != 0 and "no config 'no_such_config'" in bad.stderr
