"""The SimCC head and its loss (``MODEL.TOPDOWN.HEAD.NAME "SimCCHead"``, ``LOSS_NAME
"KLDiscretLoss"``, ``CODEC.NAME "SimCCCodec"``), as MMPose 1.x builds them (open-mmlab/mmpose
@759b39c; file:line below).

- :class:`SimCCHead` (``mmpose/models/heads/coord_cls_heads/simcc_head.py``): the pose network's K
  maps, each flattened (:221), feed two linear classifiers shared by the keypoints, over the
  ``W * ratio`` x bins and the ``H * ratio`` y bins (:153-159, 223-224); weights drawn from
  N(0, 0.01), biases 0 (:364-371). The network's own final 1x1 convolution to K channels is
  MMPose's ``final_layer``, so any ``TopDownPoseNet`` takes the head unchanged. Flip test
  (:259-274, ``mmpose/models/utils/tta.py:71-88``): the mirrored crop's outputs with their
  keypoints exchanged and the x outputs reversed, averaged with the crop's, then decoded.
- :class:`KLDiscretLoss` (``mmpose/models/losses/classification_loss.py:142-215``): for each
  keypoint and axis, the mean over the bins of KL(label || softmax(output x beta)) (:177-183),
  times the target weight, summed over the batch, keypoints and both axes, divided by K (:200-215).
"""

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from multitask_pose.codecs import SimCCCodec

from ..config import topdown_keys
from .heads import TOPDOWN_HEAD_REGISTRY, TopDownHead
from .losses import TOPDOWN_LOSS_REGISTRY

__all__ = ["KLDiscretLoss", "SimCCHead"]


@topdown_keys
def add_simcc_keys(cfg):
    # SimCCCodec (multitask_pose/codecs/simcc.py; with HEAD.NAME "SimCCHead", LOSS_NAME
    # "KLDiscretLoss"), defaults as MMPose's SimCC configs (simcc_label.py:71-72).
    cfg.MODEL.TOPDOWN.CODEC.SIMCC_SPLIT_RATIO = 2.0  # bins per crop pixel, x and y classifiers
    cfg.MODEL.TOPDOWN.CODEC.SIMCC_SIGMA = 6.0  # the Gaussian label's sigma, in bins


@TOPDOWN_HEAD_REGISTRY.register()
class SimCCHead(TopDownHead):
    """Flattened K maps -> x and y bin logits (module docstring)."""

    codec_types = (SimCCCodec,)

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        w, h = self.codec.heatmap_size
        nx, ny = self.codec.bins
        self.x_classifier = nn.Linear(w * h, nx)
        self.y_classifier = nn.Linear(w * h, ny)
        for layer in (self.x_classifier, self.y_classifier):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, K, h, w) maps -> (x (N, K, W * ratio), y (N, K, H * ratio)) logits."""
        flat = maps.flatten(2)
        return self.x_classifier(flat), self.y_classifier(flat)

    def decode(self, outputs, mirrored=None):
        if mirrored is not None:
            flip = self.flip_indices.to(outputs[0].device)
            mx, my = mirrored
            outputs = (0.5 * (outputs[0] + mx[:, flip].flip(-1)), 0.5 * (outputs[1] + my[:, flip]))
        return self.codec.decode(outputs)


@TOPDOWN_LOSS_REGISTRY.register()
class KLDiscretLoss(nn.Module):
    """MMPose's SimCC loss with its defaults (beta 1, labels as given, target weights used;
    module docstring)."""

    target_keys = ("x_labels", "y_labels", "target_weight")

    @configurable
    def __init__(self, *, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)

    @classmethod
    def from_config(cls, cfg):
        return {}

    def forward(self, pred: Tuple[torch.Tensor, torch.Tensor],
                targets: Dict[str, torch.Tensor]) -> torch.Tensor:  # fmt: skip
        """pred: the head's (x, y) logits; targets: ``SimCCCodec``'s."""
        if not isinstance(pred, (tuple, list)):
            raise ValueError(
                "KLDiscretLoss takes a SimCC head's (x, y) outputs: MODEL.TOPDOWN.HEAD.NAME"
                " 'SimCCHead'"
            )
        weight = targets["target_weight"]
        k = weight.shape[1]
        total = 0.0
        for out, labels in zip(pred, (targets["x_labels"], targets["y_labels"])):
            logp = F.log_softmax(out * self.beta, -1)
            kl = F.kl_div(logp, labels, reduction="none").mean(-1)
            total = total + (kl * weight).sum()
        return total / k
