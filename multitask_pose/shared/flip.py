"""Horizontal flips of keypoints and keypoint maps, through a dataset's flip map: one place for the
R-CNN's test-time augmentation, the top-down flip test and the training mappers.

``flip_indices[k]`` is the index of keypoint k's mirror type (``KeypointSpec.flip_indices``).
"""
import numpy as np
import torch

__all__ = ["flip_heatmaps", "flip_keypoints", "flip_offsets"]


def flip_keypoints(keypoints: np.ndarray, width: float, flip_indices) -> np.ndarray:
    """Mirror (..., K, 2+) keypoints in an image of ``width`` pixels: ``x -> width - 1 - x`` (the
    official pixel-index convention) and left/right types swapped by ``flip_indices``."""
    out = np.asarray(keypoints)[..., np.asarray(flip_indices), :].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


def flip_heatmaps(heatmaps, flip_indices, shift: bool = False):
    """Maps of a mirrored input -> maps in the original frame: reverse the columns of (N, K, h, w)
    heatmaps (numpy or torch) and give each channel to its mirror keypoint. ``shift`` moves the
    result one column right, as HRNet's flip test does (SHIFT_HEATMAP) to undo the half-pixel bias
    of its coordinate convention."""
    if isinstance(heatmaps, torch.Tensor):
        idx = torch.as_tensor(np.asarray(flip_indices), device=heatmaps.device, dtype=torch.long)
        out = heatmaps.index_select(1, idx).flip(-1)
        if shift:
            out = out.clone()
            out[..., 1:] = out[..., :-1].clone()
        return out
    out = np.asarray(heatmaps)[:, np.asarray(flip_indices), :, ::-1].copy()
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out


def flip_offsets(offsets: torch.Tensor, flip_indices) -> torch.Tensor:
    """Offset fields of a mirrored input, (R, 2K, S, S) with (x, y) per keypoint -> the original
    frame: flipped and re-assigned as :func:`flip_heatmaps`, x components negated."""
    R, _, S, S2 = offsets.shape
    # (x, y) maps of a keypoint stacked vertically flip and move together as one channel.
    off = flip_heatmaps(offsets.reshape(R, -1, 2 * S, S2), flip_indices).reshape(R, -1, 2, S, S2)
    return torch.stack([-off[:, :, 0], off[:, :, 1]], dim=2).reshape(R, -1, S, S2)
