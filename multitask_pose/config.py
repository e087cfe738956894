"""Every config key this project adds to detectron2's, one comment each: ``add_pose_config`` the
keys both stages use (evaluation, optimizer), ``add_multitask_config`` those and the multitask
R-CNN's (the top-down stage's are in ``pose_topdown/config.py``)."""

import logging

from detectron2.config import CfgNode as CN
from detectron2.config.compat import _rename

__all__ = [
    "PoseCfgNode",
    "RENAMED_KEYS",
    "add_multitask_config",
    "add_pose_config",
    "flatten_config",
    "get_multitask_cfg",
    "get_pose_cfg",
    "stage_configs",
]


logger = logging.getLogger(__name__)

# Keys that were renamed: {old: new}. An old key in a yaml or an override still loads into the
# new one with a warning (PoseCfgNode); yacs's register_renamed_key makes them known keys.
RENAMED_KEYS = {
    # the R-CNN's and the top-down stage's twins, one set since the two stages share it
    "INPUT.HARD_NEGATIVES_FILE": "INPUT.HARD_NEGATIVES.FILE",
    "INPUT.HARD_NEGATIVE_SCORE": "INPUT.HARD_NEGATIVES.SCORE",
    "INPUT.HARD_NEGATIVE_RULE": "INPUT.HARD_NEGATIVES.RULE",
    "INPUT.HARD_NEGATIVE_IOU": "INPUT.HARD_NEGATIVES.IOU",
    "INPUT.HARD_NEGATIVE_MAX_KEYPOINTS": "INPUT.HARD_NEGATIVES.MAX_KEYPOINTS",
    "INPUT.TOPDOWN.HARD_NEGATIVES_FILE": "INPUT.HARD_NEGATIVES.FILE",
    "INPUT.TOPDOWN.HARD_NEGATIVE_SCORE": "INPUT.HARD_NEGATIVES.SCORE",
    "INPUT.TOPDOWN.HARD_NEGATIVE_RULE": "INPUT.HARD_NEGATIVES.RULE",
    "INPUT.TOPDOWN.HARD_NEGATIVE_IOU": "INPUT.HARD_NEGATIVES.IOU",
    "INPUT.TOPDOWN.HARD_NEGATIVE_MAX_KEYPOINTS": "INPUT.HARD_NEGATIVES.MAX_KEYPOINTS",
}


class PoseCfgNode(CN):
    """detectron2's ``CfgNode`` that loads the old names of :data:`RENAMED_KEYS` into the new
    ones with a logged warning, in a yaml (and its ``_BASE_`` files) as in ``merge_from_list``,
    the way detectron2's ``compat.py`` renames the keys of an old-version yaml (its ``_rename``)
    where yacs's own renamed keys are an error. Only the root is of this class: its nodes stay
    detectron2's, as yacs merges a node only into one of the very same type."""

    @classmethod
    def _create_config_tree_from_dict(cls, dic, key_list):
        return CN._create_config_tree_from_dict(dic, key_list)

    @classmethod
    def _decode_cfg_value(cls, value):
        return CN._decode_cfg_value(value)

    @classmethod
    def load_yaml_with_base(cls, filename, allow_unsafe=False):
        loaded = CN(super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe))
        for old, new in RENAMED_KEYS.items():
            if _has_key(loaded, old):
                logger.warning("%s: config key %s is renamed %s: read as the new key", filename,
                               old, new)  # fmt: skip
                _rename(loaded, old, new)
        return loaded

    def merge_from_list(self, cfg_list):
        cfg_list = list(cfg_list)
        for i in range(0, len(cfg_list) - 1, 2):
            new = RENAMED_KEYS.get(cfg_list[i])
            if new is not None:
                logger.warning("config key %s is renamed %s: read as the new key", cfg_list[i],
                               new)  # fmt: skip
                cfg_list[i] = new
        return super().merge_from_list(cfg_list)


def _has_key(cfg, dotted: str) -> bool:
    for k in dotted.split("."):
        if not isinstance(cfg, dict) or k not in cfg:
            return False
        cfg = cfg[k]
    return True


def add_pose_config(cfg: CN) -> CN:
    """Add the keys both stages use to a detectron2 config (idempotent); returns ``cfg``."""
    if "COCO_EVAL_BACKEND" in cfg.TEST:
        return cfg
    # Which COCO API computes AP: "faster_coco_eval" (C++, no detectron2 ops needed) or
    # "pycocotools" (the reference). Both give identical numbers (tests/evaluation).
    cfg.TEST.COCO_EVAL_BACKEND = "faster_coco_eval"
    # Ground truth without "area" is scored with box area x this (multitask_pose/evaluation/
    # ground_truth.py). A dataset in CrowdPose's layout always gets its official rule instead.
    cfg.TEST.MISSING_AREA_FACTOR = 0.53
    # Also report AI Challenger's own keypoint score, "AIC_mAP", for datasets in its 14-keypoint
    # layout (its challenge's keypoint_eval.py: visible points only, box area as OKS scale, each
    # person's best OKS over the image's predictions, per image / max(persons, predictions);
    # multitask_pose/evaluation/aic_evaluation.py). Its rule counts every submitted person: the
    # predictions scoring below AIC_EVAL_SCORE_THRESH are not submitted.
    cfg.TEST.AIC_EVAL = False
    cfg.TEST.AIC_EVAL_SCORE_THRESH = 0.0
    # "SGD" (detectron2's, with SOLVER.MOMENTUM), "AdamW" (betas 0.9/0.999; converges much faster
    # in the short from-scratch CPU schedules; Adam when WEIGHT_DECAY is 0) or "RMSprop" (the
    # stacked hourglass's). All use SOLVER.BASE_LR, WEIGHT_DECAY* and clipping.
    cfg.SOLVER.OPTIMIZER = "SGD"
    # detectron2's mixed-precision switch, for both stages and on CPUs too
    # (engine/mixed_precision.py): fp16 with a grad scaler on CUDA, bf16 on a CPU with native
    # bf16 (AVX-512 BF16 or AMX), fp32 with a warning on other CPUs.
    cfg.SOLVER.AMP.ENABLED = False
    # Learning-rate factor of the DCNv2 offset/modulation predictors (DeformConv2d.offset), 0.1 as
    # in the DCNv2 paper; at 1.0 from-scratch CPU runs grew offsets of 4-7 feature pixels in
    # res4-res5.
    cfg.SOLVER.DEFORM_OFFSET_LR_FACTOR = 0.1
    # Periodic checkpoints kept in OUTPUT_DIR, the newest ones (a resumed run's earlier ones
    # included; model_final is never removed); 0 keeps every one (detectron2's behaviour).
    cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP = 0
    # The iteration a run started from MODEL.WEIGHTS (not resumed from its own checkpoint)
    # begins at: the learning-rate schedule, the data stream and MAX_ITER go on from there, and
    # the warm-up (SOLVER.WARMUP_*) is repeated from there, since the optimizer starts afresh.
    # It continues a training whose checkpoint kept only the weights (a zoo entry's fp16 file,
    # tools/train_zoo.py); 0 starts at the beginning, as detectron2 does.
    cfg.SOLVER.START_ITER = 0
    # Weights files (MODEL.WEIGHTS, --resume, TEST.TOPDOWN.DETECTOR_WEIGHTS) load through
    # SafeCheckpointer, which refuses any pickled object that could run code. True loads them
    # with the full pickle: only for trusted legacy files it refuses (see README, Safety).
    cfg.MODEL.TRUST_PICKLED_WEIGHTS = False
    # State-dict prefixes of MODEL.WEIGHTS a training run does not load, so that those modules
    # start as built: ("proposal_generator.",) starts an R-CNN from the zoo entry's backbone and
    # FPN, ("pose_net.final_layer.",) an HRNet without its heatmap layer, as detectron2's recipes
    # start from ImageNet weights. Resuming from OUTPUT_DIR and evaluating load everything; a
    # prefix that matches no key of the weights is an error (a typo).
    cfg.MODEL.WEIGHTS_EXCLUDE = ()
    # The tools that predict or evaluate refuse an empty MODEL.WEIGHTS (or DETECTOR_WEIGHTS) and
    # a checkpoint that leaves part of the model at its random initialisation, naming the
    # modules (multitask_pose/engine/weights_check.py). True (the tools' --allow-random-weights)
    # runs anyway: for smoke tests only, the predictions are noise.
    cfg.MODEL.ALLOW_RANDOM_WEIGHTS = False
    # Before the first iteration the trainers check every image file of their datasets for
    # damage (empty, cut short, not an image; multitask_pose/data/image_check.py, cached per
    # file) and refuse a dataset with damaged ones, naming them. SKIP_DAMAGED_IMAGES True leaves
    # them out instead (listed in a warning); CHECK_IMAGES False skips the check.
    cfg.DATALOADER.CHECK_IMAGES = True
    # Training batches as a function of (SEED, rank, iteration): --resume after a kill continues
    # with exactly the batches and augmentations of an uninterrupted run, and the model's
    # randomness is reseeded per iteration (multitask_pose/data/resumable_loader.py). False:
    # detectron2's loader (its samplers other than TrainingSampler), which restarts its stream.
    cfg.DATALOADER.EXACT_RESUME = True
    cfg.DATALOADER.SKIP_DAMAGED_IMAGES = False
    # The OKS team's data selection on the training annotations (multitask_pose/data/
    # selection.py): a person whose box centre and keypoint centre disagree for its number of
    # keypoints loses its keypoints; its box and mask still train the R-CNN, and the top-down
    # stage leaves it out. tools/select_data.py applies the same rule to a json file.
    cfg.DATASETS.KEYPOINT_SELECTION = False
    # Joint training (multitask_pose/data/joint_training.py): empty (default) concatenates the
    # DATASETS.TRAIN datasets, every sample equally likely (the reports' joint training); one
    # weight per entry instead fixes the share of training samples drawn from it whatever its
    # size (e.g. (0.7, 0.3)). Datasets after the first are mapped into the first one's keypoint
    # layout, their missing joints unlabelled (no loss).
    cfg.DATASETS.TRAIN_RATIOS = ()
    # COCO-format json files to register before the run, so that DATASETS.TRAIN / TEST can name
    # them without a script: entries (name, json_file, image_root) or (name, json_file,
    # image_root, layout), layout one of "coco" (default), "aic", "crowdpose"
    # (multitask_pose/data/datasets.py register_config_datasets).
    cfg.DATASETS.REGISTER_COCO = ()
    # Hard-negative detection mining, both stages (multitask_pose/data/hard_negatives.py): a
    # detection file (COCO results: image_id, bbox XYWH, score) over DATASETS.TRAIN[0]'s images;
    # its detections scoring at least SCORE that cover no person (RULE) are trained on as
    # background: extra proposals of the R-CNN, crops with all-zero heatmaps at full weight of
    # the top-down stage. "" is off.
    hn = cfg.INPUT.HARD_NEGATIVES = CN()
    hn.FILE = ""
    hn.SCORE = 0.5  # "high scores": the PCR report gives no value; ours
    # "no_intersection": zero overlap with every person box, crowd regions included (the PCR
    # report's rule, section 2.3); "iou": IoU below IOU with every person (ours).
    hn.RULE = "no_intersection"
    hn.IOU = 0.3  # read by the "iou" rule only
    # >= 0: also drop the detections holding more than this many labelled keypoints of one
    # person (a box around half a person or two people, under the "iou" rule), whose all-zero
    # targets contradict that person's own crop; -1 is off.
    hn.MAX_KEYPOINTS = -1
    for old, new in RENAMED_KEYS.items():  # old names still load, with a warning
        cfg.register_renamed_key(old, new)
    return cfg


def add_multitask_config(cfg: CN) -> CN:
    """Add the shared keys and the multitask R-CNN's to a detectron2 config (idempotent); returns
    ``cfg``."""
    add_pose_config(cfg)
    if "OFFSET_ON" in cfg.MODEL.ROI_KEYPOINT_HEAD:
        return cfg
    # Modulation of the DCNv2 stages (MODEL.RESNETS.DEFORM_ON_PER_STAGE with DEFORM_MODULATED):
    # "2sigmoid" (ours: 2 x sigmoid of the mask logits, 1 at the zero-initialised start, so a
    # plain checkpoint keeps its outputs) or "sigmoid" (detectron2's and DCNv2's: for detectron2
    # deformable checkpoints, multitask_pose/layers/deform_conv.py).
    cfg.MODEL.RESNETS.DEFORM_MODULATION = "2sigmoid"

    # Per-task loss weights of the ROI heads (TaskLossWeights: MultiTaskROIHeads,
    # MultiTaskCascadeROIHeads). The keypoint weight is detectron2's own
    # MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT; these two complete the set.
    cfg.MODEL.ROI_BOX_HEAD.LOSS_WEIGHT = 1.0  # scales loss_cls and loss_box_reg
    cfg.MODEL.ROI_MASK_HEAD.LOSS_WEIGHT = 1.0  # scales loss_mask

    # KeypointOffsetHead (MODEL.ROI_KEYPOINT_HEAD.NAME: "KeypointOffsetHead"); ignored by other
    # heads.
    kp = cfg.MODEL.ROI_KEYPOINT_HEAD
    kp.OFFSET_ON = True  # predict 2K x/y sub-cell offsets next to the K heatmaps
    kp.OFFSET_LOSS_WEIGHT = 1.0  # weight of loss_keypoint_offset (smooth L1, in heatmap cells)
    kp.OFFSET_RADIUS = 2.0  # cells within this many heatmap cells of a keypoint learn its offset
    # "softmax": detectron2's spatial softmax cross-entropy; "gaussian_mse": Gaussian targets, MSE.
    kp.HEATMAP_LOSS = "softmax"
    kp.GAUSSIAN_SIGMA = 2.0  # in heatmap cells, for HEATMAP_LOSS "gaussian_mse"
    # Heatmap side; 0 means detectron2's 4 x POOLER_RESOLUTION (56). Must be a multiple of
    # 2 x POOLER_RESOLUTION (the deconvolution's output, upsampled by an integer factor).
    kp.HEATMAP_SIZE = 0
    # Weight each keypoint type by the reciprocal of its share of labelled keypoints in the batch
    # (multitask_pose/shared/balanced_loss.py).
    kp.BALANCED_LOSS = False
    # Which of the head's convs (1-based, conv_fcn<i>) are DCNv2
    # (multitask_pose/layers/deform_conv.py).
    kp.DEFORM_CONVS = ()

    # Hybrid Task Cascade (MODEL.ROI_HEADS.NAME "HybridTaskCascadeROIHeads",
    # multitask_pose/modeling/htc.py) on detectron2's cascade keys (ROI_BOX_CASCADE_HEAD.IOUS
    # gives the stages); ignored by other ROI heads. The defaults are the HTC paper's.
    htc = cfg.MODEL.HTC = CN()
    htc.INTERLEAVED = True  # stage t's mask branch trains on the boxes stage t just refined
    htc.MASK_INFO_FLOW = True  # each mask head adds the previous stage's mask features (1x1 conv)
    htc.MASK_AVERAGE = True  # inference: mean of every stage's mask probabilities (False: last)
    htc.STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)  # each stage's box and mask losses (mmdetection)
    # training: every later stage (and, interleaved, its mask branch) samples its RoIs again as
    # the first does: the refined boxes (less those refined from ground truth) plus the ground
    # truth, matched at the stage's IoU, ROI_HEADS.BATCH_SIZE_PER_IMAGE RoIs at most
    # ROI_HEADS.POSITIVE_FRACTION positive (mmdetection's HTC); False: detectron2's cascade,
    # which re-matches every refined box and samples none
    htc.RESAMPLE_EVERY_STAGE = True
    htc.SEMANTIC_ON = True  # semantic branch on the FPN; target: the union of instance masks
    # the branch's inputs, each resized to SEMANTIC_FUSE_LEVEL, through its 1x1 conv and summed;
    # that level's stride is the stride of the branch's output, of its embedding and its target
    htc.SEMANTIC_IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    htc.SEMANTIC_FUSE_LEVEL = "p3"
    htc.SEMANTIC_NUM_CONVS = 4  # 3x3 convs after the fusion
    htc.SEMANTIC_LOSS_WEIGHT = 0.2  # of its cross-entropy (mmdetection's HTC)
    return cfg


def get_pose_cfg() -> CN:
    """detectron2's default config plus the keys both stages use (a :class:`PoseCfgNode`)."""
    from detectron2.config import get_cfg

    return add_pose_config(PoseCfgNode(get_cfg()))


def get_multitask_cfg() -> CN:
    """detectron2's default config plus the multitask R-CNN's keys (a :class:`PoseCfgNode`)."""
    from detectron2.config import get_cfg

    return add_multitask_config(PoseCfgNode(get_cfg()))


def flatten_config(cfg: CN, prefix: str = "") -> dict:
    """``{"MODEL.RESNETS.DEPTH": 50, ...}``: every leaf of a config by its full key, to compare
    two configs key by key."""
    out = {}
    for key, value in cfg.items():
        if isinstance(value, CN):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# Entry-point group through which an installed project declares its stage's config builder
# (setup.py: the top-down project's ``get_topdown_cfg``), so the core finds every stage's keys
# (the tools' config checks) without importing a project.
STAGE_ENTRY_POINTS = "multitask_pose.stages"


def stage_configs() -> dict:
    """{stage name: its config builder}: "rcnn" (``get_multitask_cfg``) and each installed project's
    stage (entry-point group ``multitask_pose.stages``)."""
    from importlib.metadata import entry_points

    stages = {"rcnn": get_multitask_cfg}
    for ep in entry_points(group=STAGE_ENTRY_POINTS):
        stages.setdefault(ep.name, ep.load())
    return stages
