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
# proposals in training and 1000 at test, 512 RoIs at 1/4 positive, stage IoUs 0.5/0.6/0.7,
# regression weights (10, 10, 5, 5) / (20, 20, 10, 10) / (30, 30, 15, 15) (target_stds), NMS 0.5,
# 100 detections. And the MODEL.HTC defaults are mmdetection's: interleaved, mask_info_flow,
# stage_loss_weights [1, 0.5, 0.25], FusedSemanticHead num_ins 5, fusion_level 1, num_convs 4,
# loss_weight 0.2.
HTC_DEFAULTS = {
    "MODEL.HTC.INTERLEAVED": True,
    "MODEL.HTC.MASK_INFO_FLOW": True,
    "MODEL.HTC.MASK_AVERAGE": True,
    "MODEL.HTC.STAGE_LOSS_WEIGHTS": (1.0, 0.5, 0.25),
    "MODEL.HTC.SEMANTIC_ON": True,
    "MODEL.HTC.SEMANTIC_IN_FEATURES": ("p2", "p3", "p4", "p5", "p6"),
    "MODEL.HTC.SEMANTIC_FUSE_LEVEL": "p3",
    "MODEL.HTC.SEMANTIC_NUM_CONVS": 4,
    "MODEL.HTC.SEMANTIC_LOSS_WEIGHT": 0.2,
}


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
    assert {k: value(htc, k) for k in HTC_DEFAULTS} == HTC_DEFAULTS
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
