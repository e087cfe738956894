"""Fault injection: training killed (SIGKILL, as a machine that dies) at seeded random points,
one of them while a checkpoint is being written, and resumed with --resume each time, ends with
the weights of an uninterrupted run; the training stream resumes exactly with aspect-ratio
groups waiting; dataset generation and evaluation killed mid-way leave nothing that later reads
as complete; OUTPUT_DIR's run lock refuses a second live run and takes over a dead one's."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from coco_testing import gt_as_predictions

import multitask_pose  # noqa: F401
from multitask_pose.data.resumable_loader import (
    PositionedDataset,
    ResumableTrainLoader,
    stack_batch,
)
from multitask_pose.engine.run_lock import RunLockError, _start_time, output_dir_lock

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth.yaml"

# train_net's body with two faults on demand: SIGKILL after iteration KILL_AFTER's hooks (the
# periodic checkpoint included), or while the checkpoint of iteration KILL_IN_SAVE is being
# written (a third of its bytes written, then SIGKILL).
KILL_SCRIPT = """
import io, os, signal
import torch
from detectron2.engine import HookBase, default_argument_parser
import multitask_pose  # noqa: F401
from multitask_pose.engine import MultiTaskTrainer, train_net_main

KILL_AFTER = int(os.environ.get("KILL_AFTER", -1))
KILL_IN_SAVE = int(os.environ.get("KILL_IN_SAVE", -1))
real_save = torch.save


def save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("iteration") == KILL_IN_SAVE:
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 3])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)


torch.save = save


class Kill(HookBase):
    def after_step(self):
        if self.trainer.iter == KILL_AFTER:
            os.kill(os.getpid(), signal.SIGKILL)


class Trainer(MultiTaskTrainer):
    def build_hooks(self):
        return super().build_hooks() + [Kill()]


train_net_main(default_argument_parser().parse_args(), Trainer)
"""

# fmt: off
OPTS = ["DATASETS.TRAIN", "('coco_person_sample',)", "DATASETS.TEST", "()",
        "INPUT.MIN_SIZE_TRAIN", "(160, 192, 224)", "INPUT.MAX_SIZE_TRAIN", "256",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "12", "SOLVER.STEPS", "(9,)",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "3", "TEST.EVAL_PERIOD", "0",
        "DATALOADER.NUM_WORKERS", "1", "SEED", "7"]
# fmt: on


def run(tmp_path, out, resume, **faults):
    script = tmp_path / "train_with_faults.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, **{k: str(v) for k, v in faults.items()})
    cmd = [sys.executable, str(script), "--config-file", str(RECIPE),
           *(["--resume"] if resume else []), *OPTS, "OUTPUT_DIR", str(out)]  # fmt: skip
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # five short trainings: about 45 s alone on a 2-core AMD EPYC
def test_killed_training_resumes_to_the_uninterrupted_weights(tmp_path):
    rng = np.random.default_rng(2026)
    k1 = int(rng.integers(3, 5))  # after the first checkpoint (iteration 2)
    in_save = 5  # the next checkpoint: killed while writing it
    k3 = int(rng.integers(9, 11))  # after the checkpoint of iteration 8
    reference = run(tmp_path, tmp_path / "reference", resume=False)
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "interrupted"
    first = run(tmp_path, out, resume=False, KILL_AFTER=k1)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert (out / "last_checkpoint").read_text() == "model_0000002.pth"
    second = run(tmp_path, out, resume=True, KILL_IN_SAVE=in_save)
    assert second.returncode == -signal.SIGKILL, second.stderr[-3000:]
    assert "taking it over" in second.stderr  # the killed run's lock
    # The half-written checkpoint never took the name: the last one is still iteration 2's.
    assert (out / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not (out / "model_0000005.pth").exists()
    third = run(tmp_path, out, resume=True, KILL_AFTER=k3)
    assert third.returncode == -signal.SIGKILL, third.stderr[-3000:]
    assert (out / "last_checkpoint").read_text() == "model_0000008.pth"
    last = run(tmp_path, out, resume=True)
    assert last.returncode == 0, last.stderr[-3000:]
    assert "training data continues at iteration 9" in last.stdout
    want = torch.load(tmp_path / "reference" / "model_final.pth", weights_only=True)["model"]
    got = torch.load(out / "model_final.pth", weights_only=True)["model"]
    assert want.keys() == got.keys()
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6, msg=k)
    assert not (out / ".run.lock").exists()


class _Recorder:
    """A mapper that records what it was given and draws augmentation-like random numbers."""

    def __call__(self, d):
        return {**d, "r": float(np.random.rand()), "t": float(torch.rand(1))}


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_resumes_exactly_with_aspect_ratio_groups_waiting(workers):
    """Mixed orientations and batch 3: samples wait in their orientation group across batches.
    A loader started at batch 7 yields what an uninterrupted loader yields from batch 7 on,
    augmentation draws included, whatever the number of workers."""
    dicts = [{"id": i, "width": 40 if i % 3 else 20, "height": 30} for i in range(11)]
    make = lambda: ResumableTrainLoader(  # noqa: E731
        PositionedDataset(dicts, _Recorder(), seed=5), 3, aspect_ratio_grouping=True,
        num_workers=workers,
    )  # fmt: skip
    it = iter(make())
    whole = [next(it) for _ in range(12)]
    resumed = make()
    resumed.start_at(7)
    it = iter(resumed)
    tail = [next(it) for _ in range(5)]
    assert [[(d["id"], d["r"], d["t"]) for d in b] for b in tail] == [
        [(d["id"], d["r"], d["t"]) for d in b] for b in whole[7:]
    ]
    # Groups did hold samples back: some batch is not a run of consecutive stream positions.
    positions = [[d["stream_position"] for d in b] for b in whole]
    assert any(p != list(range(p[0], p[0] + 3)) for p in positions)
    # Every image is seen, once per epoch of the stream.
    first_epoch = sorted(d["id"] for b in whole[:3] for d in b)
    assert len(set(first_epoch)) == len(first_epoch)


class _TensorMapper:
    """Tensor fields of one shape (stacked by the workers), one of varying shape (sent as a
    list) and plain values, all from the position's random draws."""

    def __call__(self, d):
        return {
            "id": d["id"],
            "image": torch.rand(3, 4, 5),
            "target": torch.randint(0, 9, (2, 3)),
            "ragged": torch.rand(d["id"] % 3 + 1),
            "targets": {"heatmaps": torch.rand(2, 3, 3), "weight": torch.rand(2)},
        }


def test_stacked_worker_batches_equal_the_in_process_ones():
    """Without grouping, workers send batches with their same-shape tensors stacked; the trainer
    still gets a list of per-sample dicts, each equal to its stream position mapped here."""
    dicts = [{"id": i, "width": 40, "height": 30} for i in range(7)]
    dataset = PositionedDataset(dicts, _TensorMapper(), seed=3)
    loader = ResumableTrainLoader(dataset, 4, aspect_ratio_grouping=False, num_workers=2)
    it = iter(loader)
    for _ in range(4):
        batch = next(it)
        assert isinstance(batch, list) and len(batch) == 4
        for got in batch:
            want = dataset[got["stream_position"]]
            assert list(got) == list(want) and got["id"] == want["id"]
            for k in ("image", "target", "ragged"):
                assert got[k].dtype == want[k].dtype
                torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
            assert list(got["targets"]) == ["heatmaps", "weight"]
            torch.testing.assert_close(got["targets"], want["targets"], rtol=0, atol=0)
        # One transfer per field: the samples' images are views of one stacked tensor.
        storages = {d["image"].untyped_storage().data_ptr() for d in batch}
        assert len(storages) == 1
        nested = {d["targets"]["heatmaps"].untyped_storage().data_ptr() for d in batch}
        assert len(nested) == 1
    # A batch whose dicts differ in keys is passed as it is.
    assert stack_batch([{"a": 1}, {"b": 2}]) == [{"a": 1}, {"b": 2}]


def test_killed_generation_leaves_no_complete_looking_cache(tmp_path):
    """SynthPeople generation killed at a seeded random point: no annotations.json is left, the
    next call generates the split whole, byte for byte as an uninterrupted generation; a file
    lost from a finished cache is noticed and the split generated again."""
    from multitask_pose.data.synth_people.splits import ensure_split

    name = "synth_people_mini_val"
    killed_root = tmp_path / "killed"
    code = ("import sys; from multitask_pose.data.synth_people.splits import ensure_split; "
            f"ensure_split({name!r}, sys.argv[1], progress=False)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, str(killed_root)], cwd=tmp_path)
    want = int(np.random.default_rng(3).integers(5, 40))  # images written before the kill
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list(killed_root.glob("*.tmp-*/images/*.jpg"))) >= want:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "generation ended before the kill"
    assert not list(killed_root.glob("*/annotations.json"))
    json_path, image_root = ensure_split(name, str(killed_root), progress=False)
    clean_json, clean_root = ensure_split(name, str(tmp_path / "clean"), progress=False)
    assert Path(json_path).read_bytes() == Path(clean_json).read_bytes()
    for f in Path(clean_root).iterdir():
        assert (Path(image_root) / f.name).read_bytes() == f.read_bytes(), f.name
    lost = Path(image_root) / "000007.jpg"
    lost.unlink()
    ensure_split(name, str(killed_root), progress=False)
    assert lost.read_bytes() == (Path(clean_root) / lost.name).read_bytes()


def test_killed_evaluation_leaves_no_partial_results(tmp_path, monkeypatch):
    """The evaluator's result files are written whole or not at all: a fault while writing
    coco_instances_results.json leaves none (not a cut-short one), and the rerun writes it."""
    from detectron2.data import DatasetCatalog

    from multitask_pose.evaluation import PoseCOCOEvaluator

    pairs = gt_as_predictions(DatasetCatalog.get("coco_person_sample"))
    out = tmp_path / "inference"

    def evaluate():
        ev = PoseCOCOEvaluator("coco_person_sample", tasks=("keypoints",), distributed=False,
                               output_dir=str(out))  # fmt: skip
        ev.reset()
        for inp, o in pairs:
            ev.process([inp], [o])
        return ev.evaluate()

    real_dumps = json.dumps

    def dying_dumps(obj, *args, **kwargs):  # detectron2: f.write(json.dumps(results)), f open
        if isinstance(obj, list):
            raise KeyboardInterrupt("killed while writing")
        return real_dumps(obj, *args, **kwargs)

    monkeypatch.setattr(json, "dumps", dying_dumps)
    with pytest.raises(KeyboardInterrupt):
        evaluate()
    monkeypatch.setattr(json, "dumps", real_dumps)
    assert not (out / "coco_instances_results.json").exists()
    assert [p.name for p in out.iterdir()] == ["instances_predictions.pth"]
    assert evaluate()["keypoints"]["AP"] == pytest.approx(100.0)
    assert len(json.loads((out / "coco_instances_results.json").read_text())) > 0


def _lock_of(pid, host=None, start_time=None):
    return {"host": host or socket.gethostname(), "pid": pid, "since": "earlier",
            "start_time": start_time, "command": "train_net.py (the other run)"}  # fmt: skip


def test_run_lock_refuses_a_live_run_and_takes_over_a_dead_one(tmp_path, caplog):
    lock = tmp_path / ".run.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps(_lock_of(sleeper.pid, start_time=_start_time(sleeper.pid))))
        with pytest.raises(RunLockError, match=f"in use by pid {sleeper.pid} on "):
            with output_dir_lock(str(tmp_path)):
                pass
        # A run on another machine cannot be checked: respected.
        lock.write_text(json.dumps(_lock_of(1, host="another-host")))
        with pytest.raises(RunLockError, match=f"another-host.*delete {lock}"):
            with output_dir_lock(str(tmp_path)):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    # Dead (the sleeper is gone) or a pid reused by another process: taken over.
    for holder in (_lock_of(sleeper.pid), _lock_of(os.getpid(), start_time=-5)):
        lock.write_text(json.dumps(holder))
        with output_dir_lock(str(tmp_path)):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert not lock.exists()
    assert "taking it over" in caplog.text


def test_train_net_refuses_an_output_dir_in_use(tmp_path):
    """train_net's body (what tools/train_net.py runs): nothing is written into the folder of
    the live run."""
    from detectron2.engine import default_argument_parser

    from multitask_pose.engine import train_net_main

    out = tmp_path / "busy"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".run.lock").write_text(
            json.dumps(_lock_of(sleeper.pid, start_time=_start_time(sleeper.pid)))
        )
        args = default_argument_parser().parse_args(
            ["--config-file", str(RECIPE), *OPTS, "OUTPUT_DIR", str(out)]
        )
        with pytest.raises(RunLockError, match=f"in use by pid {sleeper.pid}"):
            train_net_main(args)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(p.name for p in out.iterdir()) == [".run.lock"]


def test_atomic_writes_keep_the_usual_file_mode(tmp_path):
    """Files come out as open() would make them (0666 & ~umask), not mkstemp's 0600, and a
    replaced file keeps its mode."""
    from multitask_pose.shared import atomic_io

    new = tmp_path / "new.txt"
    atomic_io.write_text_atomic(new, "x")
    assert new.stat().st_mode & 0o777 == 0o666 & ~atomic_io._UMASK and new.read_text() == "x"
    new.chmod(0o604)
    atomic_io.write_text_atomic(new, "y")
    assert new.stat().st_mode & 0o777 == 0o604 and new.read_text() == "y"
    assert [p.name for p in tmp_path.iterdir()] == ["new.txt"]  # no temporary left
