"""Helpers of the top-down tests: a small config on the real COCO sample, an oracle pose network
that returns given heatmaps, and a few training steps ending in a predictor."""

import torch
from detectron2.modeling import build_model
from torch import nn

import multitask_pose  # noqa: F401  (registers the datasets)
from pose_topdown import get_topdown_cfg
from pose_topdown.modeling import TopDownPoseNet

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
