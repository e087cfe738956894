"""Helpers of the top-down tests: a small config on the real COCO sample, an oracle pose network
that returns given heatmaps, and a few training steps ending in a predictor."""

import torch
import torchvision
from detectron2.modeling import build_model
from torch import nn

import multitask_pose  # noqa: F401  (registers the datasets)
from pose_topdown import get_topdown_cfg
from pose_topdown.modeling import PoseHighResolutionNet, TopDownPoseNet

SAMPLE = "coco_person_sample"


# fmt: off
# Base-TopDown.yaml's values of detectron2's own keys (without its COCO box file and schedule), on
# the real COCO sample, on the CPU.
BASE_OPTS = ["MODEL.META_ARCHITECTURE", "TopDownPoseEstimator", "INPUT.FORMAT", "RGB",
             "MODEL.PIXEL_MEAN", "[123.675, 116.28, 103.53]",
             "MODEL.PIXEL_STD", "[58.395, 57.12, 57.375]", "MODEL.DEVICE", "cpu",
             "DATASETS.TRAIN", f"('{SAMPLE}',)", "DATASETS.TEST", f"('{SAMPLE}',)"]
# A small HRNet, fast on the CPU.
SMALL_HRNET = ["MODEL.HRNET.WIDTH", "18", "MODEL.HRNET.STEM_BLOCKS", "1",
               "MODEL.HRNET.NUM_MODULES", "(1, 1, 1)", "MODEL.HRNET.NUM_BLOCKS", "(1, 1, 1)"]
# fmt: on


def topdown_cfg(*opts):
    """The top-down keys with BASE_OPTS and ``opts``."""
    cfg = get_topdown_cfg()
    cfg.merge_from_list([*BASE_OPTS, *opts])
    return cfg


def sample_cfg(*opts):
    """A small HRNet on the COCO sample."""
    return topdown_cfg(*SMALL_HRNET, *opts)


class OraclePoseNet(TopDownPoseNet):
    """Returns queued heatmaps (the codec's encoding of known poses), as many as the batch has
    crops: with flip test, the crops' heatmaps then their flipped version (the model runs crops
    and mirrors in one batch). A perfect pose network, to test the geometry around it."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.queue = []

    def forward(self, crops, cues=None):
        out = []
        while sum(len(h) for h in out) < len(crops):
            out.append(self.queue.pop(0))
        assert sum(len(h) for h in out) == len(crops), "queued heatmaps do not fill the batch"
        return {"heatmap": torch.cat(out)}


def _oracle_model(cfg, flip_test):
    cfg.MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER = True
    cfg.MODEL.TOPDOWN.CODEC.DECODE = "dark"
    cfg.MODEL.TOPDOWN.CODEC.BLUR_KERNEL = 0
    cfg.TEST.TOPDOWN.FLIP_TEST = flip_test
    cfg.TEST.TOPDOWN.SHIFT_HEATMAP = False
    cfg.TEST.TOPDOWN.BACKEND = "eager"  # the oracle replays given heatmaps: nothing to export
    model = build_model(cfg).eval()
    model.pose_net = OraclePoseNet()
    return model


def trained_predictor(cfg, losses, steps=6):
    """Build the model of ``cfg`` and train it ``steps`` Adam steps on crops of six persons of the
    COCO sample, asserting that every step gives exactly the loss names ``losses`` with a finite
    sum and that the last sum is below the first; returns a ``TopDownPredictor`` of ``cfg``
    holding the trained weights."""
    import numpy as np
    from detectron2.data import DatasetCatalog

    from pose_topdown.data import TopDownTrainMapper, person_dicts
    from pose_topdown.predictor import TopDownPredictor

    torch.manual_seed(0)
    model = build_model(cfg)
    np.random.seed(0)
    mapper = TopDownTrainMapper(cfg, is_train=True)
    batch = [mapper(p) for p in person_dicts(DatasetCatalog.get(SAMPLE))[:6]]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(steps):
        out = model(batch)
        assert set(out) == set(losses), sorted(out)
        total = sum(out.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(float(total))
    assert totals[-1] < totals[0], totals
    allowed = cfg.clone()
    allowed.defrost()
    allowed.MODEL.ALLOW_RANDOM_WEIGHTS = True  # built without weights, given the trained ones next
    predictor = TopDownPredictor(allowed)
    predictor.model.load_state_dict(model.state_dict())
    return predictor


# --- shared by several test files: parameter counts by hand, ensemble members -----------------


def count_parameters(m):
    return sum(p.numel() for p in m.parameters())


def cam_parameters(cin, c, up, se=True, se_bn=True):
    """By hand from the report's section 2.1: four dilated 3x3 convs cin -> c/4 (no bias) + BN; the
    mixing 4x4 deconvolution (up) or 3x3 conv, c -> c (no bias) + BN; SE 1x1 convs c -> c/4 -> c,
    each + BN (or with biases and no BN: se_bn False); the residual 1x1 conv cin -> c (no bias) + BN
    in every CAM. Dilation changes no count: HDC off has the same parameters."""
    n = 4 * (cin * (c // 4) * 9 + 2 * (c // 4))
    n += c * c * (16 if up else 9) + 2 * c
    if se:
        n += c * (c // 4) + (c // 4) * c
        n += 2 * (c // 4) + 2 * c if se_bn else c // 4 + c
    return n + cin * c + 2 * c


def pcr_resnet_parameters(depth, channels, k=17):
    """PCR-ResNet by hand: torchvision's ResNet without its classifier (counted from torchvision),
    the upsampling CAMs, the heatmap conv and the auxiliary conv on the penultimate CAM."""
    ref = getattr(torchvision.models, f"resnet{depth}")()
    trunk = count_parameters(ref) - count_parameters(ref.fc)
    cams = sum(cam_parameters(cin, c, True) for cin, c in zip((2048, *channels[:-1]), channels))
    return trunk + cams + (channels[-1] * k + k) + (channels[-2] * k + k)


def pcr_hrnet_parameters(width, channels, k=17):
    """PCR-HRNet by hand with one CAM: HRNet without its heatmap conv (counted from our HRNet,
    whose count test_pose_nets pins to the published figure), a non-upsampling CAM on the
    W-channel branch, the heatmap conv and the auxiliary conv on the CAM's input."""
    hrnet = PoseHighResolutionNet(width=width)
    (c,) = channels
    trunk = count_parameters(hrnet) - count_parameters(hrnet.final_layer)
    return trunk + cam_parameters(width, c, False) + (c * k + k) + (width * k + k)


def hintpose_parameters(width, hops, cue_on, k=17):
    """By hand: HRNet (counted from our HRNet, whose count test_pose_nets pins to the published
    figure) plus the new layers: input refinement conv3x3 (64 + 1 -> 64) + BN and conv3x3
    (64 -> 64) + BN with the cue; update conv1x1 (K -> 256) + BN and extract conv1x1 (256 -> 256)
    + BN with more than one hop; no biases."""
    n = count_parameters(PoseHighResolutionNet(width=width))
    if cue_on:  # the conv3x3 of the report is not given; 3x3 is this project's choice
        n += (65 * 64 * 9 + 2 * 64) + (64 * 64 * 9 + 2 * 64)
    if hops > 1:
        n += (k * 256 + 2 * 256) + (256 * 256 + 2 * 256)
    return n


SMALL = ["MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)", "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)"]


def member(tmp_path, name, seed, *opts):
    """A small HRNet's config file and checkpoint (random weights from ``seed``)."""
    cfg = sample_cfg(*SMALL, *opts)
    torch.manual_seed(seed)
    model = build_model(cfg)
    for p in model.parameters():  # non-trivial heatmaps (the official init makes them ~0)
        p.data.normal_(0, 0.05)
    (tmp_path / f"{name}.yaml").write_text(cfg.dump())
    torch.save({"model": model.state_dict()}, tmp_path / f"{name}.pth")
    return str(tmp_path / f"{name}.yaml"), str(tmp_path / f"{name}.pth"), model.eval()
