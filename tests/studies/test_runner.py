"""The studies' runner (multitask_pose/studies/runner.py): each config trained by its stage's
script with the common budget at its own schedule's fractions, and the detection step's processes
and threads."""

from conftest import ROOT
from multitask_pose import get_multitask_cfg
from multitask_pose.studies import jobs, runner


def test_topdown_configs_are_trained_by_the_topdown_script():
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


def test_detect_persons_shares_the_images_among_processes(tmp_path, monkeypatch):
    """The studies' detection step with processes > 1: detect_persons.py's --num-gpus and the
    CPU's threads divided (unless OMP_NUM_THREADS is set); one process by default; a finished
    file is kept. (That N processes write the same file as one: test_detect_persons.py.)"""
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
