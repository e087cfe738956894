"""Losses of the top-down stage as registered modules: the meta-architecture applies the one
``MODEL.TOPDOWN.LOSS_NAME`` names to each supervised output of the pose network.

A loss is built as ``TOPDOWN_LOSS_REGISTRY.get(name)(cfg)`` and called as
``loss(prediction (N, K, h, w), targets)`` with ``targets`` the batch of the codec's encodings
(a dict of stacked tensors, e.g. ``heatmaps`` and ``target_weight``), returning a scalar.
"""
from typing import Dict

import torch
from detectron2.config import configurable
from detectron2.utils.registry import Registry
from torch import nn

from multitask_pose.shared import heatmap_squared_error, keypoint_type_weights

__all__ = ["JointsMSELoss", "TOPDOWN_LOSS_REGISTRY", "build_topdown_loss"]

TOPDOWN_LOSS_REGISTRY = Registry("TOPDOWN_LOSS")
TOPDOWN_LOSS_REGISTRY.__doc__ = "Top-down heatmap losses, selected by MODEL.TOPDOWN.LOSS_NAME."


@TOPDOWN_LOSS_REGISTRY.register()
class JointsMSELoss(nn.Module):
    """The official HRNet / SimpleBaseline loss: 0.5 x the mean over (N, K, h, w) of squared
    errors, each map weighted by its target weight (0 for unlabelled keypoints); with
    ``balanced`` the weights are also multiplied by the balanced keypoint-type weights of the
    batch (``multitask_pose.shared.balanced_loss``)."""

    target_keys = ("heatmaps", "target_weight")  # what it reads of the codec's targets

    @configurable
    def __init__(self, *, balanced: bool = False):
        super().__init__()
        self.balanced = balanced

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: the config (MODEL.TOPDOWN.BALANCED_LOSS).

        Returns:
            the constructor's keyword arguments.
        """
        return {"balanced": cfg.MODEL.TOPDOWN.BALANCED_LOSS}

    def forward(self, pred: torch.Tensor, targets: Dict[str, torch.Tensor]) -> torch.Tensor:
        """
        Args:
            pred: (N, K, h, w) predicted heatmaps.
            targets: ``heatmaps`` (N, K, h, w) and ``target_weight`` (N, K).

        Returns:
            the scalar loss.
        """
        weight = targets["target_weight"]
        if self.balanced:
            weight = weight * keypoint_type_weights(weight > 0)[None]
        return 0.5 * heatmap_squared_error(pred, targets["heatmaps"], weight).mean()


def build_topdown_loss(cfg) -> nn.Module:
    return TOPDOWN_LOSS_REGISTRY.get(cfg.MODEL.TOPDOWN.LOSS_NAME)(cfg)
