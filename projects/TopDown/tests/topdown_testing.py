"""Helpers of the top-down tests: a small config on the real COCO sample and an oracle pose
network that returns given heatmaps."""

import torch
from detectron2.modeling import build_model
from torch import nn

import multitask_pose  # noqa: F401  (registers the datasets)
from topdown import get_topdown_cfg
from topdown.modeling import TopDownPoseNet

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
    """Returns the codec's encoding of given heatmaps, the flipped version on the flip-test call:
    a perfect pose network, to test the geometry around it."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.queue = []

    def forward(self, crops, cues=None):
        return {"heatmap": self.queue.pop(0)}


def _oracle_model(cfg, flip_test):
    cfg.MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER = True
    cfg.MODEL.TOPDOWN.CODEC.DECODE = "dark"
    cfg.MODEL.TOPDOWN.CODEC.BLUR_KERNEL = 0
    cfg.TEST.TOPDOWN.FLIP_TEST = flip_test
    cfg.TEST.TOPDOWN.SHIFT_HEATMAP = False
    model = build_model(cfg).eval()
    model.pose_net = OraclePoseNet()
    return model
