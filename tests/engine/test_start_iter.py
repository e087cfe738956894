"""SOLVER.START_ITER: a training continued from its weights alone (a zoo entry's fp16 file, whose
optimizer state is not kept) begins at that iteration: the learning rate where the uninterrupted
schedule has it, times the warm-up repeated from there (the optimizer starts afresh), the data
stream at that iteration; resuming the continued run keeps that schedule. Bad values are clear
errors."""

import warnings

import pytest
import torch

from conftest import RECIPE, TRAIN_OPTS
from multitask_pose import get_multitask_cfg
from multitask_pose.engine import MultiTaskTrainer
from multitask_pose.engine.cli import ConfigError

BASE_LR, GAMMA, STEPS, WARMUP, FACTOR, MAX_ITER = 0.001, 0.1, (60, 90), 10, 0.01, 100
SCHEDULE = ("SOLVER.BASE_LR", BASE_LR, "SOLVER.GAMMA", GAMMA, "SOLVER.STEPS", STEPS,
            "SOLVER.WARMUP_ITERS", WARMUP, "SOLVER.WARMUP_FACTOR", FACTOR,
            "SOLVER.WARMUP_METHOD", "linear", "SOLVER.MAX_ITER", MAX_ITER)  # fmt: skip
START = 65


def expected_multiplier(it, start):
    """Written from the definitions: detectron2's step schedule (its own warm-up over the first
    WARMUP iterations is long over at ``start``), times the warm-up again from ``start``."""
    m = GAMMA ** sum(it >= s for s in STEPS)
    if start <= it < start + WARMUP:
        m *= FACTOR + (1 - FACTOR) * (it - start) / WARMUP
    return m


def trainer_in(out, *opts):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(TRAIN_OPTS + ["OUTPUT_DIR", str(out), *SCHEDULE, *opts])
    return MultiTaskTrainer(cfg)


def multipliers(trainer):
    """Each parameter group's lr over its base lr."""
    groups = trainer.optimizer.param_groups
    return [g["lr"] / base for g, base in zip(groups, trainer.scheduler.base_lrs)]


def step(trainer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no optimizer step before it, here
        trainer.scheduler.step()


@pytest.fixture
def weights(synth_mini, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"model": trainer_in(tmp_path / "donor").model.state_dict()}, path)
    return path


def test_a_continued_run_begins_at_start_iter_with_the_warm_up_repeated(weights, tmp_path):
    t = trainer_in(tmp_path / "run", "MODEL.WEIGHTS", str(weights), "SOLVER.START_ITER", START)
    starts = []
    t.data_loader.start_at = starts.append  # the exactly resumable loader's position
    t.resume_or_load(resume=False)
    assert t.start_iter == START and starts == [START]
    for it in range(START, 96):  # the warm-up, its end, the second step
        assert multipliers(t) == pytest.approx([expected_multiplier(it, START)] * len(
            t.optimizer.param_groups), rel=1e-9), it
        step(t)


def test_resuming_a_continued_run_keeps_its_schedule(weights, tmp_path):
    opts = ("MODEL.WEIGHTS", str(weights), "SOLVER.START_ITER", START)
    first = trainer_in(tmp_path / "run", *opts)
    first.resume_or_load(resume=False)
    for _ in range(5):  # iterations 65-69, the scheduler stepped after each
        step(first)
    first.iter = 69  # as the periodic checkpointer saves after iteration 69
    first.checkpointer.save("model_0000069", iteration=69)
    t = trainer_in(tmp_path / "run", *opts)
    t.resume_or_load(resume=True)
    assert t.start_iter == 70
    for it in (70, 71, 72):  # still inside the repeated warm-up (65-74)
        assert multipliers(t)[0] == pytest.approx(expected_multiplier(it, START), rel=1e-9), it
        step(t)


def test_start_iter_0_is_detectron2_s_schedule(weights, tmp_path):
    t = trainer_in(tmp_path / "run", "MODEL.WEIGHTS", str(weights))
    t.resume_or_load(resume=False)
    assert t.start_iter == 0
    for _ in range(START):
        step(t)
    assert multipliers(t)[0] == pytest.approx(GAMMA)  # no warm-up at 65


@pytest.mark.parametrize(
    "opts, message",
    [
        (("SOLVER.START_ITER", MAX_ITER), "SOLVER.START_ITER=100: expected 0 <= it < SOLVER"),
        (("SOLVER.START_ITER", -1), "SOLVER.START_ITER=-1: expected 0 <= it"),
        (("SOLVER.START_ITER", START, "MODEL.WEIGHTS", ""), "set MODEL.WEIGHTS to them"),
    ],
)
def test_bad_start_iter_is_a_clear_error(synth_mini, tmp_path, opts, message):
    with pytest.raises(ConfigError, match=message):
        trainer_in(tmp_path / "run", "MODEL.WEIGHTS", "unused.pth", *opts)
