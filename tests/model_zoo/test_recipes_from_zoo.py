"""The recipes that start from a zoo entry take every weight of it their network shares, less the
layers they train anew (MODEL.WEIGHTS_EXCLUDE): what each method adds to the trunk, and nothing
else, starts as built. The top-down recipes start from the zoo HRNet less its heatmap layer; every
R-CNN recipe of the basic level (make demo's, the ablation's, the detector study's) from the zoo
R-CNN's backbone and FPN."""

import pytest
from detectron2.modeling import build_model

import multitask_pose.model_zoo as zoo
from conftest import ROOT
from multitask_pose.config import get_multitask_cfg
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


def built_and_loaded(cfg):
    """The recipe's model with its MODEL.WEIGHTS loaded less MODEL.WEIGHTS_EXCLUDE, as the
    trainer loads them, and the keys the checkpoint did not fill (no shape may differ)."""
    model = build_model(cfg)
    checkpointer = SafeCheckpointer(model)
    checkpointer.exclude = tuple(cfg.MODEL.WEIGHTS_EXCLUDE)  # as the trainer sets it
    checkpointer.load(cfg.MODEL.WEIGHTS)
    assert not checkpointer.incompatible_keys.incorrect_shapes
    return model, checkpointer.incompatible_keys


@pytest.mark.parametrize("recipe", sorted(FRESH))
def test_a_method_takes_the_zoo_trunk_and_trains_its_own_layers(recipe):
    if not zoo.zoo_weights_file("hrnet_w18_small_synthpeople").is_file():
        pytest.skip("the zoo HRNet has no weights in this clone yet (tools/train_zoo.py)")
    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(SYNTH / f"{recipe}.yaml"))
    assert cfg.MODEL.WEIGHTS == "zoo://hrnet_w18_small_synthpeople"
    model, keys = built_and_loaded(cfg)
    fresh = {k for k in model.state_dict() if k.startswith(FRESH[recipe])
             and not k.endswith("num_batches_tracked")}  # fvcore does not report those  # fmt: skip
    assert fresh and set(keys.missing_keys) == fresh


RCNN = ROOT / "configs" / "Synthetic"
RCNN_RECIPES = sorted(
    str(p.relative_to(RCNN))
    for p in [RCNN / "multitask_rcnn_R_18_FPN_synth_basic.yaml", *RCNN.glob("*/*_synth_basic.yaml"),
              *(RCNN / "ablation").glob("*.yaml")]
)  # fmt: skip
# The deformable variants' offset convs (res3-res5, two blocks each; the deformable conv takes the
# plain conv's kernel, the offsets start at zero as the reports' ImageNet-started DCN models)
DCN = {"ablation/dcn_rb.yaml", "ablation/dcn_rb_h.yaml", "ablation/dcn_rb_h_offset.yaml"}


def test_every_basic_rcnn_recipe_is_listed():
    assert len(RCNN_RECIPES) == 13 and DCN < set(RCNN_RECIPES)


@pytest.mark.parametrize("recipe", RCNN_RECIPES)
def test_an_rcnn_recipe_takes_the_zoo_backbone_and_fpn_only(recipe):
    if not zoo.zoo_weights_file("multitask_rcnn_R_18_FPN_synthpeople").is_file():
        pytest.skip("the zoo R-CNN has no weights in this clone yet (tools/train_zoo.py)")
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RCNN / recipe))
    assert cfg.MODEL.WEIGHTS == "zoo://multitask_rcnn_R_18_FPN_synthpeople"
    model, keys = built_and_loaded(cfg)
    state = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    offsets = {k for k in state if ".conv2.offset." in k}
    assert len(offsets) == (12 if recipe in DCN else 0)
    heads = {k for k in state if k.startswith(("proposal_generator.", "roi_heads."))}
    assert heads and set(keys.missing_keys) == heads | offsets


@pytest.mark.parametrize("recipe", RCNN_RECIPES)
def test_an_rcnn_recipe_trains_its_backbone_from_res3_on(recipe):
    # the stem and res2 stay as the zoo made them (MODEL.BACKBONE.FREEZE_AT 2, BN frozen too)
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RCNN / recipe))
    model = build_model(cfg)
    bottom_up = model.backbone.bottom_up
    grads = {n: p.requires_grad for n, p in bottom_up.named_parameters()}
    frozen = [g for n, g in grads.items() if n.startswith(("stem.", "res2."))]
    trained = [g for n, g in grads.items() if n.startswith(("res3.", "res4.", "res5."))]
    assert frozen and not any(frozen) and trained and all(trained)
    norms = [type(m).__name__ for n, m in bottom_up.named_modules()
             if n.startswith("res2.") and n.endswith(".norm")]  # fmt: skip
    assert norms and set(norms) == {"FrozenBatchNorm2d"}
