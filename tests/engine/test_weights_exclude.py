"""MODEL.WEIGHTS_EXCLUDE: a training run starts from part of a checkpoint (a zoo entry's backbone
and FPN) while the excluded modules keep the initialisation they were built with; the run's own
checkpoints always load whole; a prefix matching nothing is a clear error."""

import pytest
import torch

from conftest import RECIPE, TRAIN_OPTS
from multitask_pose import get_multitask_cfg
from multitask_pose.engine import MultiTaskTrainer

HEADS = ("roi_heads.", "proposal_generator.")


def trainer_in(out, *opts):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(TRAIN_OPTS + ["OUTPUT_DIR", str(out), *opts])
    return MultiTaskTrainer(cfg)


def _state(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.fixture
def donor(synth_mini, tmp_path):
    """A checkpoint every float tensor of which differs from a freshly built model's."""
    state = {
        k: v + 1.0 if torch.is_floating_point(v) else v
        for k, v in trainer_in(tmp_path / "donor").model.state_dict().items()
    }
    path = tmp_path / "donor.pth"
    torch.save({"model": state}, path)
    return path, state


def _floats(state, prefixes, inside=True):
    return [k for k, v in state.items()
            if torch.is_floating_point(v) and k.startswith(prefixes) == inside
            and not k.startswith(("pixel_",))]  # fmt: skip


def test_the_excluded_heads_keep_their_built_weights(donor, tmp_path):
    path, state = donor
    t = trainer_in(tmp_path / "run", "MODEL.WEIGHTS", str(path), "MODEL.WEIGHTS_EXCLUDE", HEADS)
    built = _state(t)
    t.resume_or_load(resume=False)
    now = t.model.state_dict()
    loaded, kept = _floats(now, HEADS, inside=False), _floats(now, HEADS)
    assert loaded and kept
    for k in loaded:  # backbone and FPN: the checkpoint's
        assert torch.equal(now[k], state[k]), k
    for k in kept:  # the heads: as built, not the checkpoint's
        assert torch.equal(now[k], built[k]), k


def test_resuming_loads_the_run_s_own_checkpoint_whole(donor, tmp_path):
    path, state = donor
    out = tmp_path / "run"
    opts = ("MODEL.WEIGHTS", str(path), "MODEL.WEIGHTS_EXCLUDE", HEADS)
    first = trainer_in(out, *opts)
    first.resume_or_load(resume=False)
    with torch.no_grad():
        for p in first.model.parameters():
            p.add_(0.5)  # as if trained
    first.iter = 4  # as the periodic checkpointer saves after iteration 4
    first.checkpointer.save("model_0000004", iteration=4)
    saved = _state(first)
    t = trainer_in(out, *opts)
    t.resume_or_load(resume=True)
    assert t.start_iter == 5
    now = t.model.state_dict()
    for k in _floats(now, HEADS) + _floats(now, HEADS, inside=False):
        assert torch.equal(now[k], saved[k]), k


def test_a_prefix_matching_no_key_is_an_error(donor, tmp_path):
    path, _ = donor
    t = trainer_in(tmp_path / "run", "MODEL.WEIGHTS", str(path), "MODEL.WEIGHTS_EXCLUDE",
                   ("proposal_generator.", "roi_head."))  # fmt: skip
    with pytest.raises(ValueError, match=r"no key of the weights starts with \['roi_head.'\]"):
        t.resume_or_load(resume=False)
