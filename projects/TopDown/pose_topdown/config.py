"""``add_topdown_config(cfg)``: every key of the top-down stage, one comment each.

It only adds keys. Defaults are the official HRNet-W32 256x192 COCO recipe's values; the values
of detectron2's own keys that the stage needs (meta-architecture, normalisation, input format)
are set in ``configs/Base-TopDown.yaml``, and recipes change what their paper changed.

A method's module may keep its keys with it instead: a function decorated with
:func:`topdown_keys` adds them (e.g. ``modeling/simcc_head.py``), run after the keys here.
"""

from detectron2.config import CfgNode as CN

__all__ = ["add_topdown_config", "get_topdown_cfg", "topdown_keys"]

_KEY_ADDERS = []  # the modules' own key functions (topdown_keys), in import order


def topdown_keys(add):
    """Decorator: ``add(cfg)`` adds a module's keys (each with its comment) to every top-down
    config; ``import pose_topdown`` imports every module, so they are present before any config is
    built."""
    _KEY_ADDERS.append(add)
    return add


def add_topdown_config(cfg: CN) -> CN:
    """Add the top-down keys to a detectron2 config (idempotent); returns ``cfg``."""
    if "TOPDOWN" in cfg.MODEL:
        return cfg
    from multitask_pose.config import add_pose_config

    add_pose_config(cfg)  # the evaluator backend and optimizer keys are shared

    td = cfg.MODEL.TOPDOWN = CN()
    td.POSE_NET = "PoseHighResolutionNet"  # a POSE_NET_REGISTRY name (pose_topdown/modeling)
    # Instance cue appended to the crop (a CUE_REGISTRY name, pose_topdown/data/cues.py; "" for
    # none); the pose net's cue_channels must match it.
    td.CUE = ""
    td.HINT = CN()  # the JointHintCue (HintPose's joint hint, pose_topdown/data/cues.py)
    td.HINT.SIGMA = 6.0  # the hint Gaussian's standard deviation, in crop pixels
    # Training hints: a random labelled joint, moved by N(0, TRAIN_JITTER x sqrt(box area)).
    td.HINT.TRAIN_JITTER = 0.05
    # PoseFix (pose_topdown/posefix.py; CUE "PoseCue", POSE_NET "PoseFixHRNet", LOSS_NAME
    # "PoseFixLoss", CODEC.NAME "SoftArgmaxCodec", HEAD.NAME "SoftArgmaxHead", META_ARCHITECTURE
    # "PoseFixEstimator"), defaults as its official
    # code (mks0601/PoseFix_RELEASE). The training errors follow its per-joint tables (fixed).
    td.POSEFIX = CN()
    # The input pose's Gaussians: standard deviation in crop pixels (main/config.py:29-32: 7 at
    # 256x192 crops, 9 at 384x288)
    td.POSEFIX.INPUT_SIGMA = 7.0
    # and their peak in image pixel values (main/model.py:135), divided by the mean PIXEL_STD
    td.POSEFIX.INPUT_PEAK = 255.0
    td.POSEFIX.SWAP_MIN_IOU = 0.1  # swap partners: box IoU with the person (tfflat/base.py:332)
    # Another model's keypoint results on DATASETS.TRAIN[0]'s images: a person's unlabelled
    # joints are drawn around the pose of the entry whose box overlaps it most (gen_batch.py:76-78,
    # tfflat/base.py:321-324); "": they stay empty.
    td.POSEFIX.TRAIN_ESTIMATES = ""
    td.POSEFIX.COORD_LOSS_WEIGHT = 1.0  # PoseFixLoss: the L1 soft-argmax term (main/model.py:175)
    # The test crop: "pose", the input pose's extent x 1.2 (data/COCO/dataset.py:131-148), or
    # "box", the results entry's box
    td.POSEFIX.TEST_CROP = "pose"
    td.NUM_KEYPOINTS = 17  # must equal the dataset's keypoint count (checked at build time)
    td.INPUT_SIZE = (192, 256)  # crop (width, height), as the official configs' IMAGE_SIZE
    td.HEATMAP_SIZE = (48, 64)  # heatmap (width, height): INPUT_SIZE / 4 for every model here
    # The loss applied to each supervised output (a TOPDOWN_LOSS_REGISTRY name,
    # pose_topdown/modeling/losses.py; JointsMSELoss is the official target-weighted heatmap MSE).
    td.LOSS_NAME = "JointsMSELoss"
    td.LOSS_WEIGHT = 1.0  # scales every loss_<output>
    # Weight each keypoint type by the reciprocal of its share of labelled keypoints in the batch
    # (multitask_pose/shared/balanced_loss.py, shared with the R-CNN head).
    td.BALANCED_LOSS = False
    # The pose network in channels-last memory (NHWC weights, so NHWC activations), in training
    # and eager inference; the faster layout for CPU convolutions (oneDNN's native one):
    # benchmarks/bench_training.py --channels-last measures each recipe both ways.
    td.CHANNELS_LAST = False

    td.CODEC = CN()
    # A CODEC_REGISTRY name (multitask_pose/codecs): makes the mapper's targets, decodes outputs.
    td.CODEC.NAME = "GaussianHeatmapCodec"
    td.CODEC.SIGMA = (
        2.0  # Gaussian target sigma in heatmap cells (official: 2 at 64x48, 3 at 96x72)
    )
    # True: targets centred at the exact keypoint; False: rounded to a cell as the official HRNet.
    td.CODEC.SUBPIXEL_CENTER = False
    td.CODEC.DECODE = "quarter"  # "quarter" (official quarter-cell shift) or "dark" (Taylor, DARK)
    td.CODEC.BLUR_KERNEL = 11  # odd Gaussian blur size before "dark" decoding; 0 disables

    # The head: owns the codec, the loss and the flip test (pose_topdown/modeling/heads.py), a
    # TOPDOWN_HEAD_REGISTRY name: "HeatmapHead" (GaussianHeatmapCodec), "SoftArgmaxHead"
    # (PoseFix's SoftArgmaxCodec), "SimCCHead" (SimCCCodec).
    td.HEAD = CN()
    td.HEAD.NAME = "HeatmapHead"

    cfg.MODEL.HRNET = CN()
    cfg.MODEL.HRNET.WIDTH = 32  # W: branch channels W, 2W, 4W, 8W (W32, W48)
    cfg.MODEL.HRNET.STEM_BLOCKS = 4  # bottlenecks of layer1 (official 4; W18-small-v2 has 2)
    cfg.MODEL.HRNET.NUM_MODULES = (1, 4, 3)  # high-resolution modules of stages 2, 3, 4
    cfg.MODEL.HRNET.NUM_BLOCKS = (4, 4, 4)  # basic blocks per branch in stages 2, 3, 4
    cfg.MODEL.HRNET.FINAL_CONV_KERNEL = 1  # kernel of the heatmap conv (official 1)
    # Conv init: "normal" (official N(0, 0.001), for ImageNet-initialised training) or "kaiming"
    # (He init; trains from scratch far faster, see PoseHighResolutionNet.init_weights).
    cfg.MODEL.HRNET.INIT = "normal"

    cfg.MODEL.POSE_RESNET = CN()  # SimpleBaseline (Xiao et al. 2018)
    cfg.MODEL.POSE_RESNET.DEPTH = 50  # 18, 34, 50, 101 or 152
    cfg.MODEL.POSE_RESNET.NUM_DECONV_LAYERS = 3  # each doubles the resolution (stride 32 -> 4)
    cfg.MODEL.POSE_RESNET.NUM_DECONV_FILTERS = 256
    cfg.MODEL.POSE_RESNET.DECONV_KERNEL = 4  # 2, 3 or 4 (official 4)
    cfg.MODEL.POSE_RESNET.FINAL_CONV_KERNEL = 1

    cfg.MODEL.HOURGLASS = CN()  # stacked hourglass (Newell et al. 2016)
    cfg.MODEL.HOURGLASS.NUM_STACKS = 8  # 8 in the published model, 2 for CPU recipes
    cfg.MODEL.HOURGLASS.NUM_FEATURES = 256  # channels through the hourglasses
    cfg.MODEL.HOURGLASS.DEPTH = 4  # downsamplings per hourglass (64x64 -> 4x4)

    # PCR, progressive context refinement (pose_topdown/modeling/pcr.py): POSE_NET "PCRResNet"
    # (encoder depth MODEL.POSE_RESNET.DEPTH) or "PCRHRNet" (encoder MODEL.HRNET.*).
    cfg.MODEL.PCR = CN()
    cfg.MODEL.PCR.CHANNELS = (256, 256, 256)  # C_k of the K CAMs of a decoder (K = length)
    cfg.MODEL.PCR.NUM_DECODERS = 1  # L parallel decoders, fused progressively
    cfg.MODEL.PCR.SE = True  # Table 3's "SE": the CAMs' squeeze-and-excitation gate
    cfg.MODEL.PCR.HDC = True  # Table 3's "HDC": dilations 1-4 (off: all 1, a plain 3x3 conv)
    cfg.MODEL.PCR.AUX = True  # Table 3's "AD": auxiliary supervision after the penultimate CAM
    cfg.MODEL.PCR.AUX_WEIGHT = 1.0  # weight of each auxiliary loss
    # BN after the SE branch's two 1x1 convs, as the report's section 2.1 (False: SENet's biases,
    # no BN; BN there needs training batches of two or more crops).
    cfg.MODEL.PCR.SE_BN = True

    # HintPose (pose_topdown/modeling/hintpose.py, POSE_NET "HintPoseHRNet"): HRNet (MODEL.HRNET.*)
    # with an instance cue channel (MODEL.TOPDOWN.CUE) and recurrent refinement.
    cfg.MODEL.HINTPOSE = CN()
    cfg.MODEL.HINTPOSE.HOPS = 3  # refinement hops, each supervised; the last is the prediction
    cfg.MODEL.HINTPOSE.CUE_ON = True  # the cue channel and its input-refinement block

    # Heatmap ensembles (pose_topdown/modeling/ensemble.py, POSE_NET "HeatmapEnsemble"): trained
    # top-down models averaged before decoding; inference only.
    cfg.MODEL.ENSEMBLE = CN()
    cfg.MODEL.ENSEMBLE.CONFIGS = []  # the members' config files
    cfg.MODEL.ENSEMBLE.WEIGHTS = []  # their checkpoints, one per config
    cfg.MODEL.ENSEMBLE.MEMBER_WEIGHTS = []  # averaging weights (empty: equal), normalised to 1

    tin = cfg.INPUT.TOPDOWN = CN()  # training crops (pose_topdown/data/mapper.py)
    tin.PADDING = 1.25  # box enlargement around the person before cropping
    tin.SCALE_FACTOR = 0.35  # crop scale ~ clip(1 + N(0, f), 1 - f, 1 + f)
    tin.ROTATION_FACTOR = 45.0  # rotation ~ clip(N(0, r), -2r, 2r) degrees ...
    tin.ROTATION_PROB = 0.6  # ... applied with this probability
    tin.FLIP_PROB = 0.5  # horizontal flip through the dataset's flip map
    tin.HALF_BODY_PROB = 0.3  # crop to the upper or lower body with this probability ...
    tin.HALF_BODY_MIN_KEYPOINTS = (
        8  # ... when the person has more than this many labelled keypoints
    )
    tin.MIN_KEYPOINTS = 1  # training persons need at least this many labelled keypoints
    # Ground-truth boxes (training crops, BOX_SOURCE "gt") as the official HRNet / SimpleBaseline
    # loaders clean them: x2 = min(W - 1, x1 + w - 1), i.e. one pixel narrower and lower
    # (pose_topdown/data/boxes.py official_gt_boxes); False keeps the COCO box.
    tin.GT_BOX_MINUS_ONE = False
    # inference (pose_topdown/modeling/meta_arch.py, pose_topdown/data/boxes.py)
    tt = cfg.TEST.TOPDOWN = CN()
    tt.BOX_SOURCE = "gt"  # "gt" (dataset boxes), "file" (DET_FILE) or "detector" (DETECTOR_CONFIG)
    tt.DET_FILE = ""  # a COCO detection-results json (image_id, category_id, bbox xywh, score)
    tt.DET_SCORE_THRESH = 0.0  # drop detections below this score
    tt.DET_TOPK = 100  # keep at most this many detections per image (best first)
    tt.DET_MIN_SIZE = 0.0  # drop boxes whose shorter side is below this many pixels
    tt.DETECTOR_CONFIG = ""  # a detectron2 config for BOX_SOURCE "detector"
    tt.DETECTOR_WEIGHTS = ""  # its weights
    tt.FLIP_TEST = True  # average the heatmaps of the crop and of its mirror image
    tt.SHIFT_HEATMAP = True  # move the mirrored heatmaps one column right (official HRNet)
    # Instance score = box score x mean score of the keypoints above RESCORE_THRESH (official).
    tt.RESCORE = True
    tt.RESCORE_THRESH = 0.2
    # Box IoU-NMS, then OKS-NMS; 1.0 disables either. Defaults: the OKS team's best practice (0.6,
    # 0.5); the HRNet recipes use the official 1.0 and 0.9 (Base-TopDown.yaml).
    tt.IOU_NMS_THRESH = 0.6
    tt.OKS_NMS_THRESH = 0.5
    # OKS-NMS counts only keypoints scoring above this in both poses; None counts all of them, as
    # the official HRNet / SimpleBaseline evaluation does (its oks_nms gets no in_vis_thre).
    tt.OKS_NMS_VIS_THRESH = None
    # Where inference hints of a hint cue come from (pose_topdown/data/hints.py), another model's
    # joint estimates, as HintPose's report takes them (section 3.1): "keypoints" (HINT.FILE's
    # keypoints inside the box; without HINT.FILE, the box's own pred_keypoints: the multitask
    # R-CNN as detector, or a keypoint results file as DET_FILE) or "heatmap_peaks" (local peaks
    # inside the box of the R-CNN detector's keypoint heatmaps pasted into image space, the
    # report's image-level joint heatmaps). "center" (the box centre) is a project option: a cue
    # that training never shows (training cues a joint).
    tt.HINT = CN()
    tt.HINT.SOURCE = "keypoints"
    # A COCO keypoint results json on the test images (another model's, e.g. a top-down pass's
    # or the R-CNN's results) whose keypoints inside each box are its hints, whatever the box
    # source (ground-truth boxes included); "": the box source's own keypoints.
    tt.HINT.FILE = ""
    # Hints (so poses) per box, best first; OKS-NMS merges duplicates. 0, the report's: every
    # hint in the box, one crop each ("the same cropped image fed ... with each cue").
    tt.HINT.MAX_PER_BOX = 0
    # Keypoints or peaks scoring below this give no hint (R-CNN keypoint scores are spatial
    # softmax probabilities, often about 0.1; a top-down pass's are heatmap maxima).
    tt.HINT.SCORE_THRESH = 0.05
    tt.HINT.PEAK_STRIDE = 4  # "heatmap_peaks": image pixels per cell of the pasted heatmap
    # How inference runs the pose network (pose_topdown/runtime.py): "eager" (as trained), "fused"
    # (BatchNorm folded into the convolutions, channels-last), "onnxruntime" (exported to ONNX and
    # run by ONNX Runtime on CPU), "bf16" (fused under bf16 autocast, fp32 outputs; heatmaps within
    # 2.5% of eager's maximum; fast only with native bf16, AVX-512 BF16 or AMX on a CPU: elsewhere
    # emulated and slower than fp32, so it warns there) or "auto": the fastest fp32 backend,
    # onnxruntime on CPU when it imports, else fused (never bf16: the default's results do not
    # depend on the machine).
    tt.BACKEND = "auto"
    # An ONNX file of this model's weights (tools/export_model.py) for the onnxruntime backend;
    # "": export in memory whenever the weights change.
    tt.ONNX_FILE = ""
    # The "int8" backend (ONNX Runtime static int8; asked for by name, never by "auto"): its
    # activation ranges are calibrated on person crops of a registered dataset, the ground-truth
    # boxes of its images in order, cropped as inference does, each also mirrored as the flip test
    # runs it. "" calibrates on the first of DATASETS.TRAIN; never calibrate on the data you
    # evaluate on (a dataset only in DATASETS.TEST is refused).
    tt.INT8_CALIBRATION_DATASET = ""
    tt.INT8_CALIBRATION_CROPS = 64  # persons taken (so twice as many crops with their mirrors)
    # Where quantized networks are kept, keyed on the weights' digest and the calibration crops
    # (quantizing HRNet-W32 takes about 30 s on a 2-core CPU); "": quantize at every build.
    tt.INT8_CACHE_DIR = ""
    for add in _KEY_ADDERS:
        add(cfg)
    return cfg


def get_topdown_cfg() -> CN:
    """detectron2's default config plus the shared and the top-down keys (the values of
    ``configs/Base-TopDown.yaml`` are not in it: merge that file or a recipe)."""
    from detectron2.config import get_cfg

    from multitask_pose.config import PoseCfgNode

    return add_topdown_config(PoseCfgNode(get_cfg()))
