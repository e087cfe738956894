"""The person-detector recipes (configs/COCO-PersonDetection, configs/Synthetic/detectors): the
Cascade Mask R-CNN ones are detectron2's own configs except for the person-only keys; the HTC
ones differ from them exactly by mmdetection's published HTC settings, listed here with where
mmdetection sets them; every recipe builds the ROI heads it names, and the CPU ones predict."""

import pytest
import torch
from test_rcnn_faithfulness import detectron2_cfg, differences

from conftest import ROOT
from multitask_pose import get_multitask_cfg
from multitask_pose.config import flatten_config
from multitask_pose.engine import MultiTaskTrainer

COCO = ROOT / "configs" / "COCO-PersonDetection"
SYNTH = ROOT / "configs" / "Synthetic" / "detectors"
PERSON_ONLY = {"MODEL.ROI_HEADS.NUM_CLASSES", "DATASETS.TRAIN", "DATASETS.TEST"}

# mmdetection configs/htc/htc_r50_fpn_1x.py (v1): key -> (value, where mmdetection sets it).
HTC = "configs/htc/htc_r50_fpn_1x.py"
MMDET_HTC_1X = {
    "MODEL.ROI_HEADS.NAME": ("HybridTaskCascadeROIHeads", f"{HTC}: type='HybridTaskCascade'"),
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": (0.001, f"{HTC}: test_cfg.rcnn.score_thr"),
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": (1.0, f"{HTC}: bbox_head[*].loss_bbox beta"),
    "MODEL.RPN.SMOOTH_L1_BETA": (0.1111, f"{HTC}: rpn_head.loss_bbox beta 1/9"),
    "INPUT.MIN_SIZE_TRAIN": ((800,), f"{HTC}: img_scale (1333, 800)"),
    "SOLVER.MAX_ITER": (88715, f"{HTC}: total_epochs 12 x 118,287 images / 16"),
    "SOLVER.STEPS": ((59144, 81322), f"{HTC}: lr_config step [8, 11]"),
    "SOLVER.WARMUP_ITERS": (500, f"{HTC}: warmup_iters"),
    "SOLVER.WARMUP_FACTOR": (0.3333, f"{HTC}: warmup_ratio 1/3"),
    "SOLVER.CLIP_GRADIENTS.ENABLED": (True, f"{HTC}: grad_clip"),
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": ("full_model", f"{HTC}: grad_clip (all parameters)"),
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": (35.0, f"{HTC}: grad_clip max_norm"),
}
# Already the cascade base's (detectron2's) values and mmdetection's alike, so no difference:
# MAX_SIZE_TRAIN 1333, BASE_LR 0.02, batch 16, momentum 0.9, weight decay 1e-4, RPN 2000
# proposals in training and 1000 at test, regression weights (10, 10, 5, 5) / (20, 20, 10, 10) /
# (30, 30, 15, 15) (target_stds), NMS 0.5, 100 detections. HTC's own settings and the cascade
# settings its training relies on are checked below against mmdetection v2.28.2 (the release
# whose configs ship in its wheel; the v1 file above sets the same values), file:line each.
V2 = "configs/htc/htc_without_semantic_r50_fpn_1x_coco.py"
SEM = "configs/htc/htc_r50_fpn_1x_coco.py"
ROI = "mmdet/models/roi_heads/htc_roi_head.py"
HTC_SETTINGS = {
    "MODEL.HTC.INTERLEAVED": (True, f"{V2}:41 interleaved=True"),
    "MODEL.HTC.MASK_INFO_FLOW": (True, f"{V2}:42 mask_info_flow=True"),
    "MODEL.HTC.MASK_AVERAGE": (
        True,
        f"{ROI}:465-489 every stage's mask sigmoid, merged by merge_aug_masks (a mean)",
    ),
    "MODEL.HTC.STAGE_LOSS_WEIGHTS": ((1.0, 0.5, 0.25), f"{V2}:44 stage_loss_weights"),
    "MODEL.HTC.RESAMPLE_EVERY_STAGE": (
        True,
        f"{ROI}:266-277 assign + sample at every stage; 300-312 again for the mask branch",
    ),
    "MODEL.HTC.SEMANTIC_ON": (True, f"{SEM}:9 semantic_head FusedSemanticHead"),
    "MODEL.HTC.SEMANTIC_IN_FEATURES": (("p2", "p3", "p4", "p5", "p6"), f"{SEM}:11 num_ins=5"),
    "MODEL.HTC.SEMANTIC_FUSE_LEVEL": ("p3", f"{SEM}:12 fusion_level=1; :8 featmap_strides=[8]"),
    "MODEL.HTC.SEMANTIC_NUM_CONVS": (4, f"{SEM}:13 num_convs=4"),
    "MODEL.HTC.SEMANTIC_LOSS_WEIGHT": (0.2, f"{SEM}:18 loss_seg loss_weight=0.2"),
    "MODEL.ROI_BOX_CASCADE_HEAD.IOUS": (
        (0.5, 0.6, 0.7),
        f"{V2}:161-163, 177-179, 193-195 pos_iou_thr = neg_iou_thr = min_pos_iou",
    ),
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": (512, f"{V2}:167, 183, 199 sampler num=512"),
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": (0.25, f"{V2}:168, 184, 200 pos_fraction=0.25"),
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT": (True, f"{V2}:170, 186, 202 add_gt_as_proposals"),
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": (True, f"{V2}:61, 78, 95 reg_class_agnostic"),
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": (7, f"{V2}:47 bbox_roi_extractor output_size=7"),
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": (14, f"{V2}:104, {SEM}:6 mask and semantic RoIs 14"),
    "MODEL.ROI_MASK_HEAD.NUM_CONV": (4, f"{V2}:111, 119, 127 HTCMaskHead num_convs=4"),
    "MODEL.ROI_MASK_HEAD.CONV_DIM": (256, f"{V2}:113, 121, 129 conv_out_channels=256"),
}
# (The wiring these keys switch, each checked by tests/modeling/test_htc.py: semantic fusion
# into box and mask features, ROI:164-170 and 130-136; the flow, ROI:141-146; the semantic
# head's resize-then-lateral order, mmdet/models/roi_heads/mask_heads/fused_semantic_head.py
# :98-105.)


def ours(path):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(path))
    return cfg


def value(cfg, key):
    v = flatten_config(cfg)[key]
    return tuple(v) if isinstance(v, list) else v


def test_every_detector_recipe_is_covered():
    assert {p.name for p in COCO.glob("*.yaml")} == {
        "cascade_mask_rcnn_R_50_FPN_1x.yaml", "cascade_mask_rcnn_R_50_FPN_3x.yaml",
        "htc_R_50_FPN_1x.yaml", "htc_R_50_FPN_20e.yaml", "htc_keypoint_R_50_FPN_1x.yaml",
    }  # fmt: skip
    assert {p.stem for p in SYNTH.glob("*.yaml")} == set(SYNTH_HEADS)


@pytest.mark.parametrize("schedule", ["1x", "3x"])
def test_cascade_recipes_are_detectron2s_with_one_class(schedule):
    reference = detectron2_cfg(f"Misc/cascade_mask_rcnn_R_50_FPN_{schedule}.yaml")
    cfg = ours(COCO / f"cascade_mask_rcnn_R_50_FPN_{schedule}.yaml")
    assert set(differences(cfg, reference, flatten_config(reference))) == PERSON_ONLY
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1
    assert cfg.DATASETS.TRAIN == ("keypoints_coco_2017_train",)  # COCO's person annotations


def test_htc_recipes_are_mmdetections():
    base = ours(COCO / "cascade_mask_rcnn_R_50_FPN_1x.yaml")
    htc = ours(COCO / "htc_R_50_FPN_1x.yaml")
    diff = differences(htc, base, flatten_config(base))
    assert set(diff) == set(MMDET_HTC_1X)
    wrong = {k: (v[0], MMDET_HTC_1X[k]) for k, v in diff.items() if v[0] != MMDET_HTC_1X[k][0]}
    assert not wrong, wrong
    wrong = {k: (value(htc, k), v) for k, (v, _) in HTC_SETTINGS.items() if value(htc, k) != v}
    assert not wrong, wrong
    # the MODEL.HTC keys' defaults are mmdetection's too: the CPU recipe inherits them
    synth = ours(SYNTH / "htc_R_18_FPN_synth_basic.yaml")
    htc_keys = [k for k in HTC_SETTINGS if k.startswith("MODEL.HTC.")]
    assert {k: value(synth, k) for k in htc_keys} == {k: HTC_SETTINGS[k][0] for k in htc_keys}
    # 20e: 20 epochs, steps after 16 and 19 (configs/htc/htc_r50_fpn_20e.py)
    e20 = ours(COCO / "htc_R_50_FPN_20e.yaml")
    assert set(differences(e20, htc, flatten_config(htc))) == {"SOLVER.MAX_ITER", "SOLVER.STEPS"}
    assert (e20.SOLVER.MAX_ITER, tuple(e20.SOLVER.STEPS)) == (147859, (118287, 140466))
    kp = ours(COCO / "htc_keypoint_R_50_FPN_1x.yaml")
    assert set(differences(kp, htc, flatten_config(htc))) == {
        "MODEL.KEYPOINT_ON", "MODEL.ROI_KEYPOINT_HEAD.NAME",
    }  # fmt: skip


@pytest.mark.parametrize(
    "name, heads, mask, keypoint",
    [
        ("cascade_mask_rcnn_R_50_FPN_1x", "CascadeROIHeads", True, False),
        ("htc_R_50_FPN_1x", "HybridTaskCascadeROIHeads", True, False),
        ("htc_keypoint_R_50_FPN_1x", "HybridTaskCascadeROIHeads", True, True),
    ],
)
def test_coco_recipes_build(name, heads, mask, keypoint):
    cfg = ours(COCO / f"{name}.yaml")
    cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = "", "cpu"
    model = MultiTaskTrainer.build_model(cfg)
    assert type(model.roi_heads).__name__ == heads
    assert model.roi_heads.mask_on == mask and model.roi_heads.keypoint_on == keypoint
    if heads == "HybridTaskCascadeROIHeads":
        assert len(model.roi_heads.mask_head) == 3 and model.roi_heads.semantic_head is not None


SYNTH_HEADS = {
    # (the multitask R-CNN's heads: detectron2's StandardROIHeads with task loss weights)
    "faster_rcnn_R_18_FPN_synth_basic": ("MultiTaskROIHeads", set()),
    "cascade_mask_rcnn_R_18_FPN_synth_basic": ("CascadeROIHeads", {"pred_masks"}),
    "htc_R_18_FPN_synth_basic": ("HybridTaskCascadeROIHeads", {"pred_masks"}),
    "htc_keypoint_R_18_FPN_synth_basic": (
        "HybridTaskCascadeROIHeads",
        {"pred_masks", "pred_keypoints"},
    ),
}


@pytest.mark.parametrize("name", sorted(SYNTH_HEADS))
def test_cpu_recipes_build_and_predict(name):
    heads, fields = SYNTH_HEADS[name]
    cfg = ours(SYNTH / f"{name}.yaml")
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    torch.manual_seed(0)
    model = MultiTaskTrainer.build_model(cfg).eval()
    assert type(model.roi_heads).__name__ == heads
    with torch.no_grad():
        inst = model([{"image": torch.randint(0, 255, (3, 240, 320), dtype=torch.uint8)}])[0][
            "instances"
        ]
    assert len(inst) > 0
    assert {"pred_masks", "pred_keypoints"} & set(inst.get_fields()) == fields
