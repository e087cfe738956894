"""The recipes that start from a zoo entry take every weight of it their network shares, less the
layers they train anew (MODEL.WEIGHTS_EXCLUDE): what each method adds to the trunk, and nothing
else, starts as built."""

import pytest
from detectron2.modeling import build_model

import multitask_pose.model_zoo as zoo
from conftest import ROOT
from multitask_pose.engine.checkpoint import SafeCheckpointer
from pose_topdown import get_topdown_cfg

SYNTH = ROOT / "projects" / "TopDown" / "configs" / "Synthetic"
# recipe: the state-dict prefixes that start as built (the layers the recipe trains anew)
FRESH = {
    "hrnet_w18_small_synth_basic": ("pose_net.final_layer.",),
    "pcr_hrnet_w18_small_synth_basic": ("pose_net.head.",),
    "hintpose_w18_small_synth_basic": (
        "pose_net.final_layer.", "pose_net.extract.", "pose_net.input_refine.", "pose_net.update.",
    ),
    "posefix_hrnet_w18_small_synth_basic": ("pose_net.final_layer.",),
}  # fmt: skip


@pytest.mark.parametrize("recipe", sorted(FRESH))
def test_a_method_takes_the_zoo_trunk_and_trains_its_own_layers(recipe):
    if not zoo.zoo_weights_file("hrnet_w18_small_synthpeople").is_file():
        pytest.skip("the zoo HRNet has no weights in this clone yet (tools/train_zoo.py)")
    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(SYNTH / f"{recipe}.yaml"))
    assert cfg.MODEL.WEIGHTS == "zoo://hrnet_w18_small_synthpeople"
    model = build_model(cfg)
    checkpointer = SafeCheckpointer(model)
    checkpointer.exclude = tuple(cfg.MODEL.WEIGHTS_EXCLUDE)  # as the trainer sets it
    checkpointer.load(cfg.MODEL.WEIGHTS)
    keys = checkpointer.incompatible_keys
    assert not keys.incorrect_shapes
    fresh = {k for k in model.state_dict() if k.startswith(FRESH[recipe])
             and not k.endswith("num_batches_tracked")}  # fvcore does not report those  # fmt: skip
    assert fresh and set(keys.missing_keys) == fresh
