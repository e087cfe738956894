"""Resuming when last_checkpoint is broken: an empty name or a checkpoint cut short falls back to
the newest checkpoint that loads (with a warning); none loading is an error naming the folder."""
import logging

import pytest

from conftest import RECIPE, TRAIN_OPTS
from multitask_pose import get_multitask_cfg
from multitask_pose.engine import MultiTaskTrainer


def trainer_in(out):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(TRAIN_OPTS + ["OUTPUT_DIR", str(out)])
    return MultiTaskTrainer(cfg)


@pytest.fixture
def two_checkpoints(synth_mini, tmp_path):
    t = trainer_in(tmp_path)
    for it in (2, 5):  # as the periodic checkpointer saves them after iteration `it`
        t.iter = it
        t.checkpointer.save(f"model_{it:07d}", iteration=it)
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000005.pth"
    return tmp_path


def test_a_truncated_last_checkpoint_falls_back_to_the_previous(two_checkpoints, caplog):
    out = two_checkpoints
    data = (out / "model_0000005.pth").read_bytes()
    (out / "model_0000005.pth").write_bytes(data[: len(data) // 3])  # killed while writing
    t = trainer_in(out)
    with caplog.at_level(logging.WARNING):
        t.resume_or_load(resume=True)
    assert t.start_iter == 3
    assert "'model_0000005.pth', which does not load" in caplog.text
    assert (out / "last_checkpoint").read_text().strip() == "model_0000002.pth"


def test_an_empty_last_checkpoint_resumes_from_the_newest(two_checkpoints, caplog):
    (two_checkpoints / "last_checkpoint").write_text("")
    t = trainer_in(two_checkpoints)
    with caplog.at_level(logging.WARNING):
        t.resume_or_load(resume=True)
    assert t.start_iter == 6
    assert "resumed from model_0000005.pth" in caplog.text


def test_nothing_loadable_is_an_error_naming_the_folder(two_checkpoints):
    for name in ("model_0000002.pth", "model_0000005.pth"):
        (two_checkpoints / name).write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=rf"cannot resume from {two_checkpoints}.*model_0000005"):
        trainer_in(two_checkpoints).resume_or_load(resume=True)


def test_only_the_newest_checkpoints_are_kept_across_a_resume(two_checkpoints):
    """SOLVER.CHECKPOINT_MAX_TO_KEEP 2: the checkpoints a resumed run finds count as the oldest,
    so after two more saves only those two remain; model_final is never removed."""
    from detectron2.engine import hooks

    out = two_checkpoints
    (out / "model_final.pth").write_bytes((out / "model_0000002.pth").read_bytes())
    t = trainer_in(out)
    t.cfg.defrost()
    t.cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP = 2
    t.cfg.SOLVER.CHECKPOINT_PERIOD = 1
    (saver,) = [h for h in t.build_hooks() if isinstance(h, hooks.PeriodicCheckpointer)]
    saver.period = 1
    for it in (6, 7):
        saver.step(it)
    kept = sorted(p.name for p in out.glob("model_*.pth"))
    assert kept == ["model_0000006.pth", "model_0000007.pth", "model_final.pth"]
    t.cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP = 0  # detectron2's default: every one stays
    (saver,) = [h for h in t.build_hooks() if isinstance(h, hooks.PeriodicCheckpointer)]
    saver.period = 1
    saver.step(8)
    assert len(list(out.glob("model_0*.pth"))) == 3
