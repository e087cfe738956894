"""Balanced keypoint loss: weight each keypoint type by the reciprocal of its share of the
labelled keypoints in the batch, so rare types (ankles, ears on crowded or truncated people) pull as
hard as common ones (the HRNet-based COCO reports). Shared by the R-CNN keypoint head and the
top-down heads.
"""
import torch

__all__ = ["keypoint_type_weights"]


def keypoint_type_weights(labelled: torch.Tensor) -> torch.Tensor:
    """Per-type loss weights for one batch.

    Args:
        labelled: (N, K) bool (or 0/1) tensor, True where instance n has keypoint type k labelled
            (the keypoints that contribute to the loss).

    Returns:
        (K,) float tensor. A type with ``n_k`` labelled instances out of ``n`` in all gets weight
        ``c / (n_k / n)``, with ``c`` chosen so that the mean weight over the types present in the
        batch is 1. Types absent from the batch get 0 (they contribute no loss anyway).
    """
    if labelled.dim() != 2:
        raise ValueError(f"keypoint_type_weights expects an (N, K) tensor, got shape {tuple(labelled.shape)}")
    counts = labelled.to(torch.float32).sum(dim=0)
    present = counts > 0
    weights = torch.zeros_like(counts)
    if not present.any():
        return weights
    share = counts[present] / counts.sum()
    inverse = 1.0 / share
    weights[present] = inverse / inverse.mean()
    return weights
