"""The COCO R-CNN recipes against detectron2's own configs (v0.6, the model zoo's): each
published setting, read from detectron2's merged config (an independent reference) with the file
and line it comes from, equals the recipe's; the variants differ from the baseline only where they
say; the released Keypoint R-CNN has an accuracy-test config with its published AP."""

from pathlib import Path

import pytest
from detectron2 import model_zoo
from detectron2.config import get_cfg

from conftest import ROOT
from multitask_pose import get_multitask_cfg
from multitask_pose.config import flatten_config

RECIPES = ROOT / "configs" / "COCO-MultiTask"
KP = "configs/COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml"
KP_BASE = "configs/COCO-Keypoints/Base-Keypoint-RCNN-FPN.yaml"
BASE = "configs/Base-RCNN-FPN.yaml"
DEFAULTS = "detectron2/config/defaults.py"

# Keypoint R-CNN R50-FPN 1x, detectron2 v0.6 (d1e04565): key -> where detectron2 sets it.
KEYPOINT_RCNN = {
    "MODEL.WEIGHTS": f"{KP}:3",
    "MODEL.RESNETS.DEPTH": f"{KP}:5",
    "MODEL.KEYPOINT_ON": f"{KP_BASE}:3",
    "MODEL.MASK_ON": f"{DEFAULTS}:30",
    "MODEL.ROI_HEADS.NUM_CLASSES": f"{KP_BASE}:5",
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": f"{KP_BASE}:7",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": f"{KP_BASE}:12",
    "DATASETS.TRAIN": f"{KP_BASE}:14",
    "DATASETS.TEST": f"{KP_BASE}:15",
    "MODEL.RESNETS.OUT_FEATURES": f"{BASE}:6",
    "MODEL.FPN.IN_FEATURES": f"{BASE}:8",
    "MODEL.ANCHOR_GENERATOR.SIZES": f"{BASE}:10",
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": f"{BASE}:11",
    "MODEL.RPN.IN_FEATURES": f"{BASE}:13",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": f"{BASE}:14",
    "MODEL.RPN.PRE_NMS_TOPK_TEST": f"{BASE}:15",
    "MODEL.RPN.POST_NMS_TOPK_TEST": f"{BASE}:20",
    "MODEL.ROI_HEADS.IN_FEATURES": f"{BASE}:23",
    "MODEL.ROI_BOX_HEAD.NAME": f"{BASE}:25",
    "MODEL.ROI_BOX_HEAD.NUM_FC": f"{BASE}:26",
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": f"{BASE}:27",
    "SOLVER.IMS_PER_BATCH": f"{BASE}:36",
    "SOLVER.BASE_LR": f"{BASE}:37",
    "SOLVER.STEPS": f"{BASE}:38",
    "SOLVER.MAX_ITER": f"{BASE}:39",
    "INPUT.MIN_SIZE_TRAIN": f"{BASE}:41",
    "MODEL.PIXEL_MEAN": f"{DEFAULTS}:42",
    "MODEL.PIXEL_STD": f"{DEFAULTS}:46",
    "INPUT.MAX_SIZE_TRAIN": f"{DEFAULTS}:61",
    "INPUT.MIN_SIZE_TEST": f"{DEFAULTS}:63",
    "INPUT.MAX_SIZE_TEST": f"{DEFAULTS}:65",
    "INPUT.RANDOM_FLIP": f"{DEFAULTS}:68",
    "INPUT.FORMAT": f"{DEFAULTS}:84",
    "MODEL.BACKBONE.FREEZE_AT": f"{DEFAULTS}:137",
    "MODEL.RPN.NMS_THRESH": f"{DEFAULTS}:243",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": f"{DEFAULTS}:267",
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": f"{DEFAULTS}:269",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": f"{DEFAULTS}:278",
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": f"{DEFAULTS}:281",
    "MODEL.ROI_KEYPOINT_HEAD.NAME": f"{DEFAULTS}:357",
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION": f"{DEFAULTS}:358",
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO": f"{DEFAULTS}:359",
    "MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS": f"{DEFAULTS}:360",
    "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS": f"{DEFAULTS}:361",
    "MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE": f"{DEFAULTS}:364",
    "MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS": f"{DEFAULTS}:379",
    "MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT": f"{DEFAULTS}:384",
    "MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE": f"{DEFAULTS}:386",
    "MODEL.RESNETS.NORM": f"{DEFAULTS}:480",
    "MODEL.RESNETS.STRIDE_IN_1X1": f"{DEFAULTS}:488",
    "SOLVER.MOMENTUM": f"{DEFAULTS}:521",
    "SOLVER.WEIGHT_DECAY": f"{DEFAULTS}:525",
    "SOLVER.WEIGHT_DECAY_NORM": f"{DEFAULTS}:528",
    "SOLVER.GAMMA": f"{DEFAULTS}:530",
    "SOLVER.WARMUP_FACTOR": f"{DEFAULTS}:534",
    "SOLVER.WARMUP_ITERS": f"{DEFAULTS}:535",
    "SOLVER.WARMUP_METHOD": f"{DEFAULTS}:536",
    "TEST.DETECTIONS_PER_IMAGE": f"{DEFAULTS}:597",
}
# Deformable convs of configs/Misc/mask_rcnn_R_50_FPN_1x_dconv_c3-c5.yaml.
DCONV = "configs/Misc/mask_rcnn_R_50_FPN_1x_dconv_c3-c5.yaml"
DEFORM = {
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": f"{DCONV}:7",
    "MODEL.RESNETS.DEFORM_MODULATED": f"{DCONV}:8",
    "MODEL.RESNETS.DEFORM_NUM_GROUPS": f"{DEFAULTS}:505",
}


def detectron2_cfg(name: str):
    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(name))
    return cfg


def ours(name: str):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPES / name))
    return cfg


def value_of(cfg, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return tuple(cfg) if isinstance(cfg, list) else cfg


def differences(a, b, keys):
    return {k: (value_of(a, k), value_of(b, k)) for k in keys if value_of(a, k) != value_of(b, k)}


def test_every_coco_recipe_is_covered():
    tested = {"keypoint_rcnn_R_50_FPN_1x.yaml", "keypoint_rcnn_R_50_FPN_1x_inference_acc_test.yaml"}
    tested |= {v for v, _ in VARIANTS}
    assert {p.name for p in RECIPES.glob("*.yaml")} == tested


def test_keypoint_rcnn_recipe_is_detectron2s():
    reference = detectron2_cfg("COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml")
    wrong = differences(ours("keypoint_rcnn_R_50_FPN_1x.yaml"), reference, KEYPOINT_RCNN)
    assert not wrong, {k: (v, KEYPOINT_RCNN[k]) for k, v in wrong.items()}
    # The only other differences: this project's keys and its ROI heads, which are detectron2's
    # StandardROIHeads with the task loss weights (1.0 here).
    rest = differences(ours("keypoint_rcnn_R_50_FPN_1x.yaml"), reference, flatten_config(reference))
    assert set(rest) == {"MODEL.ROI_HEADS.NAME"}, rest
    heads = value_of(ours("keypoint_rcnn_R_50_FPN_1x.yaml"), "MODEL.ROI_HEADS.NAME")
    assert heads == "MultiTaskROIHeads"


def test_the_comparison_catches_a_deviation():
    reference = detectron2_cfg("COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml")
    cfg = ours("keypoint_rcnn_R_50_FPN_1x.yaml")
    cfg.SOLVER.WARMUP_ITERS = 500
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]  # RGB order: wrong for detectron2's BGR
    found = set(differences(cfg, reference, KEYPOINT_RCNN))
    assert found == {"SOLVER.WARMUP_ITERS", "MODEL.PIXEL_MEAN"}


VARIANTS = [
    ("multitask_rcnn_R_50_FPN_1x.yaml", {"MODEL.MASK_ON"}),
    ("multitask_rcnn_R_50_FPN_dconv_c3-c5_1x.yaml",
     {"MODEL.MASK_ON", "MODEL.BACKBONE.NAME", "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
      "SOLVER.DEFORM_OFFSET_LR_FACTOR"}),
    ("multitask_rcnn_R_50_FPN_dcn_rb_1x.yaml",
     {"MODEL.MASK_ON", "MODEL.BACKBONE.NAME", "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
      "MODEL.RESNETS.DEFORM_MODULATED"}),
    ("multitask_rcnn_R_50_FPN_dcn_rb_h_1x.yaml",
     {"MODEL.MASK_ON", "MODEL.BACKBONE.NAME", "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
      "MODEL.RESNETS.DEFORM_MODULATED", "MODEL.ROI_KEYPOINT_HEAD.NAME",
      "MODEL.ROI_KEYPOINT_HEAD.DEFORM_CONVS", "MODEL.ROI_KEYPOINT_HEAD.OFFSET_ON"}),
    ("multitask_rcnn_R_50_FPN_dcn_rb_h_offset_1x.yaml",
     {"MODEL.MASK_ON", "MODEL.BACKBONE.NAME", "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
      "MODEL.RESNETS.DEFORM_MODULATED", "MODEL.ROI_KEYPOINT_HEAD.NAME",
      "MODEL.ROI_KEYPOINT_HEAD.DEFORM_CONVS"}),
    # KeypointOffsetHead with its offsets on (the key's default).
    ("multitask_rcnn_R_50_FPN_offset_1x.yaml", {"MODEL.MASK_ON", "MODEL.ROI_KEYPOINT_HEAD.NAME"}),
    ("multitask_rcnn_R_50_P2_1x.yaml",
     {"MODEL.MASK_ON", "MODEL.ANCHOR_GENERATOR.SIZES", "MODEL.RPN.IN_FEATURES",
      "MODEL.ROI_HEADS.IN_FEATURES"}),
]  # fmt: skip


@pytest.mark.parametrize("variant,changed", VARIANTS)
def test_variants_change_only_what_they_say(variant, changed):
    """Every COCO recipe of the multitask study is the Keypoint R-CNN recipe plus what it names."""
    base = ours("keypoint_rcnn_R_50_FPN_1x.yaml")
    assert set(differences(ours(variant), base, flatten_config(base))) == changed


def test_dconv_recipe_is_detectron2s_deformable_setting():
    """DCNv1 exactly as detectron2's dconv_c3-c5 (unmodulated, one group, res3-res5), at the base
    learning rate (detectron2's solver has no offset lr factor); the DCNv2 recipe is modulated
    with the DCNv2 paper's 0.1x offset learning rate."""
    reference = detectron2_cfg("Misc/mask_rcnn_R_50_FPN_1x_dconv_c3-c5.yaml")
    dconv = ours("multitask_rcnn_R_50_FPN_dconv_c3-c5_1x.yaml")
    wrong = differences(dconv, reference, DEFORM)
    assert not wrong, {k: (v, DEFORM[k]) for k, v in wrong.items()}
    assert dconv.SOLVER.DEFORM_OFFSET_LR_FACTOR == 1.0
    dcnv2 = ours("multitask_rcnn_R_50_FPN_dcn_rb_1x.yaml")
    assert dcnv2.MODEL.RESNETS.DEFORM_MODULATED and dcnv2.SOLVER.DEFORM_OFFSET_LR_FACTOR == 0.1
    assert value_of(dcnv2, "MODEL.RESNETS.DEFORM_ON_PER_STAGE") == value_of(
        reference, "MODEL.RESNETS.DEFORM_ON_PER_STAGE"
    )


def test_released_keypoint_rcnn_has_an_accuracy_test():
    """MODEL_ZOO.md (v0.6) lines 609-612: box AP 53.6, keypoint AP 64.0, model 137261548."""
    acc = ours("keypoint_rcnn_R_50_FPN_1x_inference_acc_test.yaml")
    base = ours("keypoint_rcnn_R_50_FPN_1x.yaml")
    released = ("keypoint_rcnn_R_50_FPN_1x", "137261548", "model_final_04e291.pkl")
    assert Path(acc.MODEL.WEIGHTS).parts[-3:] == released
    assert acc.TEST.EXPECTED_RESULTS == [["bbox", "AP", 53.6, 0.1], ["keypoints", "AP", 64.0, 0.1]]
    assert set(differences(acc, base, flatten_config(base))) == {
        "MODEL.WEIGHTS",
        "TEST.EXPECTED_RESULTS",
    }


def test_readme_quotes_the_published_keypoint_rcnn_figures():
    row = next(
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("| `configs/COCO-MultiTask/keypoint_rcnn_R_50_FPN_1x.yaml`")
    )
    assert "box AP 53.6, keypoint AP 64.0" in row
