"""The studies' seeds shared among processes (multitask_pose/studies/jobs.py, ``--jobs``)."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import ROOT
from multitask_pose.studies import data_study, detector_study, jobs, rcnn_ablation

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


def test_each_study_reruns_its_own_script():
    """--jobs runs the study's SCRIPT once per share of the seeds: that script is the study's
    command (its --help lists the study's options)."""
    studies = (rcnn_ablation, data_study, detector_study)
    procs = [subprocess.Popen([sys.executable, str(s.SCRIPT), "--help"], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for s in studies]
    for study, proc in zip(studies, procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        options = {o for a in study.build_parser()._actions for o in a.option_strings}
        assert "--jobs" in options and all(o in out for o in options - {"--seeds-only"})
