"""The Gaussian-heatmap regression error both stages train with: the squared difference of
predicted and target heatmaps, cell by cell, optionally weighted per map. Each loss reduces it its
own way: the top-down ``JointsMSELoss`` takes 0.5 x the mean over every cell (the official HRNet /
SimpleBaseline loss), the R-CNN offset head (``HEATMAP_LOSS "gaussian_mse"``) sums each keypoint's
map and normalises as detectron2's keypoint loss does.
"""
from typing import Optional

import torch

__all__ = ["heatmap_squared_error"]


def heatmap_squared_error(
    pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """(..., h, w) predicted and target heatmaps -> (..., h, w) squared errors, each map times its
    ``weight`` (shape ``(...)``) when given."""
    if pred.shape != target.shape:
        raise ValueError(
            f"heatmaps {tuple(pred.shape)} and targets {tuple(target.shape)} differ in shape"
        )
    err = (pred - target) ** 2
    return err if weight is None else err * weight[..., None, None]
