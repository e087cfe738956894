"""tools/ablate.py: trains each config with one budget, writes the table, and on a second call
reads finished configs back instead of training them again."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from multitask_pose import get_multitask_cfg

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


def test_topdown_configs_are_trained_by_the_topdown_script():
    from multitask_pose.studies import runner

    td = (
        ROOT / "projects" / "TopDown" / "configs" / "Synthetic" / "hrnet_w18_small_synth_basic.yaml"
    )
    rcnn = ROOT / "configs" / "Synthetic" / "ablation" / "plain.yaml"
    assert runner.train_script(td) == ROOT / "projects" / "TopDown" / "train_net.py"
    assert runner.train_script(rcnn) == ROOT / "tools" / "train_net.py"
    # The common budget: the steps at the top-down recipe's own fractions (560 and 665 of 700,
    # along its _BASE_ chain), the warm-up its own (20).
    opts = dict(zip(*[iter(runner.budget_opts(td, 350))] * 2))
    assert opts["SOLVER.MAX_ITER"] == "350" and opts["SOLVER.STEPS"] == "(280, 332)"
    assert opts["SOLVER.WARMUP_ITERS"] == "20"
    # An R-CNN recipe: its schedule (and detectron2's defaults for what it leaves out).
    opts = dict(zip(*[iter(runner.budget_opts(rcnn, 100))] * 2))
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(rcnn))
    steps = tuple(sorted({min(max(1, round(s * 100 / cfg.SOLVER.MAX_ITER)), 99)
                          for s in cfg.SOLVER.STEPS}))  # fmt: skip
    assert opts["SOLVER.STEPS"] == str(steps)
    assert opts["SOLVER.WARMUP_ITERS"] == str(min(cfg.SOLVER.WARMUP_ITERS, 25))


FAKE_STUDY = """
import json, os, sys, time
seeds = sys.argv[sys.argv.index("--seeds") + 1 : sys.argv.index("--jobs")]
out = os.path.join(sys.argv[sys.argv.index("--output") + 1], "started_" + "_".join(seeds))
info = {"argv": sys.argv[1:], "threads": os.environ["OMP_NUM_THREADS"], "t": time.time()}
open(out, "w").write(json.dumps(info))
time.sleep(2.0)
print("fake: done", " ".join(seeds), flush=True)
sys.exit(3 if "9" in seeds else 0)
"""


def test_seeds_run_in_parallel_processes(tmp_path, capsys, monkeypatch):
    """--jobs: the study's own command once per share of the seeds, at the same time, with its
    arguments and overrides, --seeds-only and the threads divided; their lines printed with
    their seeds and logged; a failing process stops the study naming its log."""
    from types import SimpleNamespace

    from multitask_pose.studies import jobs

    script = tmp_path / "fake_study.py"
    script.write_text(FAKE_STUDY)
    argv = ["--output", str(tmp_path), "--seeds", "1", "2", "3", "--jobs", "2",
            "--rows", "a", "b", "--", "K", "V"]  # fmt: skip
    args = SimpleNamespace(jobs=2, seeds=[1, 2, 3], seeds_only=False, opts=["K", "V"])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(jobs.os, "cpu_count", lambda: 4)
    jobs.run_seeds_in_parallel(script, argv, args, tmp_path, "fake")
    a = json.loads((tmp_path / "started_1_3").read_text())
    b = json.loads((tmp_path / "started_2").read_text())
    assert a["argv"] == ["--output", str(tmp_path), "--rows", "a", "b", "--seeds", "1", "3",
                         "--jobs", "1", "--seeds-only", "--", "K", "V"]  # fmt: skip
    assert b["argv"][b["argv"].index("--seeds") :] == [
        "--seeds", "2", "--jobs", "1", "--seeds-only", "--", "K", "V",
    ]  # fmt: skip
    assert a["threads"] == b["threads"] == "2"
    assert abs(a["t"] - b["t"]) < 1.5  # each started before the other's 2 s had passed
    out = capsys.readouterr().out
    assert "2 processes, 2 thread(s) each" in out
    assert "[seeds1_3] fake: done 1 3" in out and "[seeds2] fake: done 2" in out
    assert (tmp_path / "jobs" / "seeds2.log").read_text() == "fake: done 2\n"
    # A process that fails: the study stops, naming its log.
    args.seeds = [9, 2]
    with pytest.raises(SystemExit, match=r"failed \(exit 3\); see .*seeds9\.log"):
        jobs.run_seeds_in_parallel(
            script, ["--output", str(tmp_path), "--seeds", "9", "2", "--jobs", "2"], args, tmp_path
        )
    # One job, one seed, or a seed process itself: nothing started.
    for n_jobs, seeds, only in ((1, [5, 6], False), (2, [5], False), (2, [5, 6], True)):
        args = SimpleNamespace(jobs=n_jobs, seeds=seeds, seeds_only=only, opts=[])
        jobs.run_seeds_in_parallel(script, ["--output", str(tmp_path)], args, tmp_path)
    assert not list(tmp_path.glob("started_5*"))


def test_detect_persons_shares_the_images_among_processes(tmp_path, monkeypatch):
    """The studies' detection step with processes > 1: detect_persons.py's --num-gpus and the
    CPU's threads divided (unless OMP_NUM_THREADS is set); one process by default; a finished
    file is kept. (That N processes write the same file as one: test_detect_persons.py.)"""
    from multitask_pose.studies import jobs, runner

    calls = []
    monkeypatch.setattr(
        runner, "run_logged", lambda cmd, log, what, prefix, env=None: calls.append((cmd, env))
    )
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(jobs.os, "cpu_count", lambda: 4)
    runner.detect_persons(tmp_path, "ds", tmp_path / "two.json", "x", 2)
    runner.detect_persons(tmp_path, "ds", tmp_path / "one.json")
    (cmd2, env2), (cmd1, env1) = calls
    assert cmd2[cmd2.index("--num-gpus") + 1] == "2" and env2["OMP_NUM_THREADS"] == "2"
    assert cmd1[cmd1.index("--num-gpus") + 1] == "1" and env1 is None
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runner.detect_persons(tmp_path, "ds", tmp_path / "three.json", "x", 2)
    assert calls[-1][1]["OMP_NUM_THREADS"] == "1"  # the user's thread count stands
    (tmp_path / "done.json").write_text("[]")
    runner.detect_persons(tmp_path, "ds", tmp_path / "done.json", "x", 2)
    assert len(calls) == 3
