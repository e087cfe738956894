"""A killed run resumes from its last checkpoint with the weights it saved; two CPU processes
train through detectron2-style launch."""

import signal
import subprocess
import sys
import time

import torch

from conftest import RECIPE, ROOT, TRAIN_OPTS, run_train_net
from multitask_pose import get_multitask_cfg
from multitask_pose.engine import MultiTaskTrainer


def test_resume_after_kill_continues_from_saved_iteration(synth_mini, tmp_path):
    opts = TRAIN_OPTS + [
        "SOLVER.MAX_ITER",
        "8",
        "SOLVER.CHECKPOINT_PERIOD",
        "3",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "train_net.py"),
        "--config-file",
        str(RECIPE),
        *opts,
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    marker = tmp_path / "last_checkpoint"
    deadline = time.time() + 600
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # as a machine that dies mid-run
    proc.wait()
    assert marker.exists(), proc.stderr.read()[-3000:]
    saved_name = marker.read_text().strip()
    # Usually the first checkpoint (after iteration 2); a fast machine may have written the next
    # one (after 5) before the kill landed: either is a checkpoint of the period.
    assert saved_name in ("model_0000002.pth", "model_0000005.pth"), saved_name
    saved = torch.load(tmp_path / saved_name, map_location="cpu", weights_only=False)
    assert saved["iteration"] == int(saved_name[6:13])
    assert not (tmp_path / "model_final.pth").exists()

    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(opts)
    trainer = MultiTaskTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == saved["iteration"] + 1
    state = trainer.model.state_dict()
    for k, v in saved["model"].items():
        assert torch.equal(state[k], v), k
    trainer.train()
    iters = [it for _, it in trainer.storage.history("total_loss").values()]
    assert iters == list(range(saved["iteration"] + 1, 8))
    assert (tmp_path / "model_final.pth").exists()


def test_two_cpu_processes_train(synth_mini, tmp_path):
    opts = TRAIN_OPTS + [
        "SOLVER.MAX_ITER",
        "3",
        "SOLVER.IMS_PER_BATCH",
        "4",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    proc = run_train_net(["--num-gpus", "2", "--config-file", str(RECIPE), *opts], cwd=tmp_path)
    log = (tmp_path / "log.txt").read_text()
    assert "Rank of current process: 0. World size: 2" in log
    assert (tmp_path / "log.txt.rank1").exists()
    assert (tmp_path / "model_final.pth").exists()
    assert "train_net synth_people_mini_val" in proc.stdout
