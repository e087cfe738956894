"""The published set-ups the COCO top-down recipes reproduce, setting by setting, each with the
file and line it comes from, in this project's config keys and units. Read by
test_topdown_faithfulness.py (against the merged recipes, the README's figures and the accuracy
tests) and test_recipes.py (parameter counts).

Sources (read at these commits):
- HRNET: leoxiaobin/deep-high-resolution-net.pytorch @ 6f69e46 (the HRNet paper's code).
- SB: microsoft/human-pose-estimation.pytorch @ 49f3f44 (the SimpleBaseline paper's own code).
- The OKS team's COCO keypoint report, for the 8-stack hourglass (its figures as quoted in this
  project's issue 13: the report gives no code).
"""
from dataclasses import dataclass
from math import ceil
from typing import Tuple

# COCO train2017 persons the official loaders keep (their logs: "=> load 149813 samples"): one
# epoch is ceil(149,813 / batch) iterations, the last batch partial (no drop_last).
COCO_TRAIN_PERSONS = 149813

HRNET = "deep-high-resolution-net.pytorch@6f69e46"
SB = "human-pose-estimation.pytorch@49f3f44"
OKS_TEAM = "the OKS team's COCO keypoint report"

# ImageNet mean/std (x255) in RGB order, as both codebases' Normalize applies them.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Setting:
    key: str  # this project's config key
    value: object  # the published value in that key's units
    source: str  # where it is published


@dataclass(frozen=True)
class PublishedRecipe:
    config: str  # under projects/TopDown/configs
    settings: Tuple[Setting, ...]
    ap: float  # published COCO val2017 keypoint AP, percent
    ap_source: str
    params_m: float  # published parameters, millions
    params_source: str
    weights: str = ""  # the released pose checkpoint, "" when none


def _epochs(batch: int, end: int, steps, yaml: str, lines: str, step_lines: str, loop: str):
    """MAX_ITER and STEPS in iterations. Both codebases call ``lr_scheduler.step()`` at the start
    of every epoch (``loop``), so MultiStepLR lowers the lr one epoch before LR_STEP: epochs
    0-based ``s - 1`` on train at the lower lr (checked with torch's MultiStepLR)."""
    ipe = ceil(COCO_TRAIN_PERSONS / batch)
    return (
        Setting("SOLVER.MAX_ITER", end * ipe, f"{yaml}:{lines} END_EPOCH {end} x {ipe} it/epoch"),
        Setting("SOLVER.STEPS", tuple((s - 1) * ipe for s in steps),
                f"{yaml}:{step_lines} LR_STEP {steps}, stepped before each epoch: {loop}"),
    )


def _hrnet(width: int, size, batch_per_gpu: int, ap: float, readme_line: int, weights: str):
    w, h = size
    yaml = f"{HRNET} experiments/coco/hrnet/w{width}_{h}x{w}_adam_lr1e-3.yaml"
    jd = f"{HRNET} lib/dataset/JointsDataset.py"
    coco = f"{HRNET} lib/dataset/coco.py"
    settings = (
        Setting("MODEL.TOPDOWN.POSE_NET", "PoseHighResolutionNet", f"{yaml}:27 pose_hrnet"),
        Setting("MODEL.HRNET.WIDTH", width, f"{yaml}:59-61 STAGE2 NUM_CHANNELS"),
        Setting("MODEL.TOPDOWN.INPUT_SIZE", (w, h), f"{yaml}:31-33 IMAGE_SIZE"),
        Setting("MODEL.TOPDOWN.HEATMAP_SIZE", (w // 4, h // 4), f"{yaml}:34-36 HEATMAP_SIZE"),
        Setting("MODEL.TOPDOWN.CODEC.NAME", "GaussianHeatmapCodec", f"{yaml}:30 TARGET_TYPE"),
        Setting("MODEL.TOPDOWN.CODEC.SIGMA", 2.0 if h == 256 else 3.0, f"{yaml}:37 SIGMA"),
        Setting("MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER", False, f"{jd}:255 int(x / stride + 0.5)"),
        Setting("MODEL.TOPDOWN.CODEC.DECODE", "quarter", f"{yaml}:120 POST_PROCESS"),
        Setting("MODEL.TOPDOWN.LOSS_NAME", "JointsMSELoss", f"{yaml}:92 USE_TARGET_WEIGHT"),
        Setting("INPUT.FORMAT", "RGB", f"{yaml}:14 COLOR_RGB true; {jd}:126-131"),
        Setting("MODEL.PIXEL_MEAN", MEAN, f"{HRNET} tools/train.py:123-125"),
        Setting("MODEL.PIXEL_STD", STD, f"{HRNET} tools/train.py:123-125"),
        Setting("INPUT.TOPDOWN.PADDING", 1.25, f"{coco}:210-229 _xywh2cs"),
        Setting("INPUT.TOPDOWN.GT_BOX_MINUS_ONE", True, f"{coco}:164-171 clean_bbox"),
        Setting("INPUT.TOPDOWN.FLIP_PROB", 0.5, f"{yaml}:17 FLIP; {jd}:161-165"),
        Setting("INPUT.TOPDOWN.ROTATION_FACTOR", 45.0, f"{yaml}:21 ROT_FACTOR"),
        Setting("INPUT.TOPDOWN.ROTATION_PROB", 0.6, f"{jd}:158-159"),
        Setting("INPUT.TOPDOWN.SCALE_FACTOR", 0.35, f"{yaml}:22 SCALE_FACTOR"),
        Setting("INPUT.TOPDOWN.HALF_BODY_MIN_KEYPOINTS", 8, f"{yaml}:18 NUM_JOINTS_HALF_BODY"),
        Setting("INPUT.TOPDOWN.HALF_BODY_PROB", 0.3, f"{yaml}:19 PROB_HALF_BODY"),
        Setting("SOLVER.OPTIMIZER", "AdamW", f"{yaml}:98 adam"),
        # Adam without weight decay: lib/utils/utils.py:70-74 passes WD only to SGD.
        Setting("SOLVER.WEIGHT_DECAY", 0.0, f"{HRNET} lib/utils/utils.py:70-74"),
        Setting("SOLVER.BASE_LR", 0.001, f"{yaml}:99 LR"),
        Setting("SOLVER.GAMMA", 0.1, f"{yaml}:100 LR_FACTOR"),
        Setting("SOLVER.WARMUP_ITERS", 0, f"{HRNET} tools/train.py:177-183 MultiStepLR"),
        Setting("SOLVER.IMS_PER_BATCH", 4 * batch_per_gpu, f"{yaml}:94 x 4 GPUS (7)"),
        *_epochs(4 * batch_per_gpu, 210, (170, 200), yaml, "97", "101-103",
                 f"{HRNET} tools/train.py:177-183"),
        Setting("TEST.TOPDOWN.BOX_SOURCE", "file", f"{HRNET} README.md:213-216 USE_GT_BBOX False"),
        Setting("TEST.TOPDOWN.DET_FILE", "COCO_val2017_detections_AP_H_56_person.json",
                f"{yaml}:111 COCO_BBOX_FILE"),
        Setting("TEST.TOPDOWN.DET_SCORE_THRESH", 0.0, f"{yaml}:113 IMAGE_THRE; {coco}:267"),
        Setting("TEST.TOPDOWN.DET_TOPK", 0, f"{HRNET} lib/nms/nms.py:97-124 (no cap)"),
        Setting("TEST.TOPDOWN.FLIP_TEST", True, f"{yaml}:119 FLIP_TEST"),
        Setting("TEST.TOPDOWN.SHIFT_HEATMAP", True, f"{yaml}:121 SHIFT_HEATMAP"),
        Setting("TEST.TOPDOWN.RESCORE", True, f"{coco}:323-340"),
        Setting("TEST.TOPDOWN.RESCORE_THRESH", 0.2, f"{yaml}:114 IN_VIS_THRE"),
        Setting("TEST.TOPDOWN.IOU_NMS_THRESH", 1.0, f"{coco}:342-351 OKS-NMS only"),
        Setting("TEST.TOPDOWN.OKS_NMS_THRESH", 0.9, f"{yaml}:117 OKS_THRE"),
        Setting("TEST.TOPDOWN.OKS_NMS_VIS_THRESH", None, f"{coco}:342-351 no in_vis_thre"),
    )
    return PublishedRecipe(
        config=f"COCO/hrnet_w{width}_{h}x{w}.yaml", settings=settings, ap=ap,
        ap_source=f"{HRNET} README.md:{readme_line}", params_m=28.5 if width == 32 else 63.6,
        params_source=f"{HRNET} README.md:{readme_line} #Params", weights=weights,
    )  # fmt: skip


def _simple_baseline(depth: int, ap: float, readme_line: int, params_m: float, params_line: int):
    yaml = f"{SB} experiments/coco/resnet{depth}/256x192_d256x3_adam_lr1e-3.yaml"
    jd = f"{SB} lib/dataset/JointsDataset.py"
    coco = f"{SB} lib/dataset/coco.py"
    settings = (
        Setting("MODEL.TOPDOWN.POSE_NET", "PoseResNet", f"{yaml}:17 pose_resnet"),
        Setting("MODEL.POSE_RESNET.DEPTH", depth, f"{yaml}:40 NUM_LAYERS"),
        Setting("MODEL.POSE_RESNET.NUM_DECONV_LAYERS", 3, f"{yaml}:31 NUM_DECONV_LAYERS"),
        Setting("MODEL.POSE_RESNET.NUM_DECONV_FILTERS", 256, f"{yaml}:32-35 NUM_DECONV_FILTERS"),
        Setting("MODEL.POSE_RESNET.DECONV_KERNEL", 4, f"{yaml}:36-39 NUM_DECONV_KERNELS"),
        Setting("MODEL.TOPDOWN.INPUT_SIZE", (192, 256), f"{yaml}:19-21 IMAGE_SIZE"),
        Setting("MODEL.TOPDOWN.HEATMAP_SIZE", (48, 64), f"{yaml}:25-27 HEATMAP_SIZE"),
        Setting("MODEL.TOPDOWN.CODEC.NAME", "GaussianHeatmapCodec", f"{yaml}:24 TARGET_TYPE"),
        Setting("MODEL.TOPDOWN.CODEC.SIGMA", 2.0, f"{yaml}:28 SIGMA"),
        Setting("MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER", False, f"{jd}:191 int(x / stride + 0.5)"),
        Setting("MODEL.TOPDOWN.CODEC.DECODE", "quarter", f"{SB} lib/core/config.py:108"),
        Setting("MODEL.TOPDOWN.LOSS_NAME", "JointsMSELoss", f"{yaml}:42 USE_TARGET_WEIGHT"),
        # No COLOR_RGB: images come from cv2.imread (BGR) and are normalised with the RGB-order
        # mean/std, so the channels are BGR and PIXEL_MEAN stays in RGB order.
        Setting("INPUT.FORMAT", "BGR", f"{jd}:75-76 cv2.imread, no conversion"),
        Setting("MODEL.PIXEL_MEAN", MEAN, f"{SB} pose_estimation/train.py:129-130"),
        Setting("MODEL.PIXEL_STD", STD, f"{SB} pose_estimation/train.py:129-130"),
        Setting("INPUT.TOPDOWN.PADDING", 1.25, f"{coco}:197-212 _xywh2cs"),
        Setting("INPUT.TOPDOWN.GT_BOX_MINUS_ONE", True, f"{coco}:146-154 clean_bbox"),
        Setting("INPUT.TOPDOWN.FLIP_PROB", 0.5, f"{yaml}:13 FLIP; {jd}:97-101"),
        Setting("INPUT.TOPDOWN.ROTATION_FACTOR", 40.0, f"{yaml}:14 ROT_FACTOR"),
        Setting("INPUT.TOPDOWN.ROTATION_PROB", 0.6, f"{jd}:94-95"),
        Setting("INPUT.TOPDOWN.SCALE_FACTOR", 0.3, f"{yaml}:15 SCALE_FACTOR"),
        Setting("INPUT.TOPDOWN.HALF_BODY_PROB", 0.0, f"{jd}:90-101 (no half body)"),
        Setting("SOLVER.OPTIMIZER", "AdamW", f"{yaml}:49 adam"),
        Setting("SOLVER.WEIGHT_DECAY", 0.0, f"{SB} lib/utils/utils.py:69-73"),
        Setting("SOLVER.BASE_LR", 0.001, f"{yaml}:50 LR"),
        Setting("SOLVER.GAMMA", 0.1, f"{yaml}:51 LR_FACTOR"),
        Setting("SOLVER.WARMUP_ITERS", 0, f"{SB} pose_estimation/train.py:124 MultiStepLR"),
        Setting("SOLVER.IMS_PER_BATCH", 128, f"{yaml}:44 BATCH_SIZE 32 x 4 GPUs (README.md:51)"),
        *_epochs(128, 140, (90, 120), yaml, "47", "52-54",
                 f"{SB} pose_estimation/train.py:169-170"),
        Setting("TEST.TOPDOWN.BOX_SOURCE", "file", f"{SB} README.md:29 detector AP 56.4"),
        Setting("TEST.TOPDOWN.DET_FILE", "COCO_val2017_detections_AP_H_56_person.json",
                f"{yaml}:62 COCO_BBOX_FILE"),
        Setting("TEST.TOPDOWN.DET_SCORE_THRESH", 0.0, f"{yaml}:65 IMAGE_THRE; {coco}:250"),
        Setting("TEST.TOPDOWN.DET_TOPK", 0, f"{SB} lib/nms/nms.py:74-122 (no cap)"),
        Setting("TEST.TOPDOWN.FLIP_TEST", True, f"{SB} README.md:201-204 --flip-test"),
        Setting("TEST.TOPDOWN.SHIFT_HEATMAP", True, f"{SB} lib/core/config.py:109"),
        Setting("TEST.TOPDOWN.RESCORE", True, f"{coco}:298-316"),
        Setting("TEST.TOPDOWN.RESCORE_THRESH", 0.2, f"{yaml}:66 IN_VIS_THRE"),
        Setting("TEST.TOPDOWN.IOU_NMS_THRESH", 1.0, f"{coco}:317-318 OKS-NMS only"),
        Setting("TEST.TOPDOWN.OKS_NMS_THRESH", 0.9, f"{yaml}:69 OKS_THRE"),
        Setting("TEST.TOPDOWN.OKS_NMS_VIS_THRESH", None, f"{coco}:317-318 no in_vis_thre"),
    )  # fmt: skip
    return PublishedRecipe(
        config=f"COCO/simple_baseline_R{depth}_256x192.yaml", settings=settings, ap=ap,
        ap_source=f"{SB} README.md:{readme_line}", params_m=params_m,
        params_source=f"{HRNET} README.md:{params_line} #Params (the SB README has none)",
        weights=f"pose_resnet_{depth}_256x192.pth.tar",
    )  # fmt: skip


HOURGLASS = PublishedRecipe(
    config="COCO/hourglass_oks_team_8stack_256x256.yaml",
    settings=(
        Setting("MODEL.TOPDOWN.POSE_NET", "StackedHourglass", OKS_TEAM),
        Setting("MODEL.HOURGLASS.NUM_STACKS", 8, OKS_TEAM),
        Setting("MODEL.TOPDOWN.INPUT_SIZE", (256, 256), OKS_TEAM),
        Setting("MODEL.TOPDOWN.HEATMAP_SIZE", (64, 64), f"{OKS_TEAM}: stride 4 as Newell et al."),
        Setting("MODEL.TOPDOWN.CODEC.SIGMA", 1.0, f"{OKS_TEAM}: Gaussian std 1"),
        # Loss only on annotated keypoints: the target weights of JointsMSELoss.
        Setting("MODEL.TOPDOWN.LOSS_NAME", "JointsMSELoss", OKS_TEAM),
        Setting("TEST.TOPDOWN.BOX_SOURCE", "gt", f"{OKS_TEAM}: AP with ground-truth boxes"),
    ),
    ap=73.4,
    ap_source=OKS_TEAM,
    params_m=25.1,
    params_source="the HRNet paper (Sun et al. 2019), Table 1: 8-stage hourglass",
)

RECIPES = (
    _hrnet(32, (192, 256), 32, 74.4, 40, "pose_hrnet_w32_256x192.pth"),
    _hrnet(32, (288, 384), 32, 75.8, 41, "pose_hrnet_w32_384x288.pth"),
    _hrnet(48, (192, 256), 32, 75.1, 42, "pose_hrnet_w48_256x192.pth"),
    _hrnet(48, (288, 384), 24, 76.3, 43, "pose_hrnet_w48_384x288.pth"),
    _simple_baseline(50, 70.4, 29, 34.0, 34),
    _simple_baseline(152, 72.0, 33, 68.6, 38),
    HOURGLASS,
)
