"""Soft-argmax (integral) codec, the output of PoseFix (Moon et al. 2019, official code
mks0601/PoseFix_RELEASE): the network's maps are logits; a keypoint is the expectation of the
cell coordinates under each map's softmax.

Coordinates in and out are crop pixels, heatmap cell ``(i, j)`` at crop pixel
``(j * stride, i * stride)``, the same convention as :mod:`.gaussian_heatmap` (the official
``coord / input_shape * output_shape``, main/model.py:77-78 and 126-127).

Encoding (main/model.py:73-116, 158-161): each labelled keypoint inside the crop becomes a
probability map with its mass on the four cells around it, shared bilinearly (the cross-entropy
target), and its coordinates in cells (the L1 target). The target weight is 1 for a keypoint
labelled and inside the crop, 0 otherwise (main/gen_batch.py:384).

Decoding (main/model.py:44-71, 183): softmax over each map, then the expected cell coordinates
times the stride. Scores are each map's peak probability.
"""

from typing import Dict, Sequence, Tuple

import torch

from .base import CODEC_REGISTRY, KeypointCodec, crop_stride

__all__ = ["SoftArgmaxCodec", "bilinear_onehot", "soft_argmax"]


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """(..., h, w) logits -> (..., 2) expected (x, y) in cells under each map's softmax."""
    h, w = logits.shape[-2:]
    prob = torch.softmax(logits.flatten(-2), -1).unflatten(-1, (h, w))
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    return torch.stack([(prob.sum(-2) * xs).sum(-1), (prob.sum(-1) * ys).sum(-1)], -1)


def bilinear_onehot(centres: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(..., 2) cell coordinates -> (..., h, w) maps whose mass sits on the four cells around each
    centre, bilinearly; cells outside the map are dropped and the rest renormalised to sum 1
    (main/model.py:73-116; a non-finite centre gives an empty map)."""
    w, h = int(size[0]), int(size[1])
    finite = torch.isfinite(centres).all(-1)
    c = torch.where(finite[..., None], centres, torch.zeros_like(centres))
    x0 = c[..., 0].floor().clamp(0, w - 1)
    y0 = c[..., 1].floor().clamp(0, h - 1)
    fx, fy = c[..., 0] - x0, c[..., 1] - y0
    xs = torch.arange(w, dtype=c.dtype, device=c.device)
    ys = torch.arange(h, dtype=c.dtype, device=c.device)
    # The weight of each column / row: 1 - f at the floor cell, f at the next one.
    wx = (xs == x0[..., None]) * (1 - fx[..., None]) + (xs == x0[..., None] + 1) * fx[..., None]
    wy = (ys == y0[..., None]) * (1 - fy[..., None]) + (ys == y0[..., None] + 1) * fy[..., None]
    maps = wy[..., :, None] * wx[..., None, :]
    total = maps.sum((-2, -1), keepdim=True)
    maps = maps / torch.where(total > 0, total, torch.ones_like(total))
    return maps * finite[..., None, None]


@CODEC_REGISTRY.register()
class SoftArgmaxCodec(KeypointCodec):
    """Softmax-expectation keypoints at a fixed stride of the crop; registered as
    ``"SoftArgmaxCodec"``. Targets: ``heatmaps`` (bilinear one-hot, the cross-entropy target),
    ``coords`` (cells, the L1 target) and ``target_weight``."""

    score_scale = "softmax_probability"  # decode's scores: the peak's softmax probability
    target_keys = ("heatmaps", "coords", "target_weight")  # encode's keys

    def __init__(self, input_size: Sequence[int], heatmap_size: Sequence[int]):
        """
        Args:
            input_size, heatmap_size: (W, H) of the crop and of the maps; the strides must agree.
        """
        self.input_size, self.heatmap_size, self.stride = crop_stride(input_size, heatmap_size)

    @classmethod
    def from_config(cls, cfg):
        """``MODEL.TOPDOWN.{INPUT_SIZE, HEATMAP_SIZE}``."""
        return cls(cfg.MODEL.TOPDOWN.INPUT_SIZE, cfg.MODEL.TOPDOWN.HEATMAP_SIZE)

    def encode(self, keypoints) -> Dict[str, torch.Tensor]:
        """(N, K, 3) crop-pixel keypoints (x, y, v; v > 0 labelled) -> ``{"heatmaps": (N, K, h, w),
        "coords": (N, K, 2) cells, "target_weight": (N, K)}``, float32 tensors."""
        kp = torch.as_tensor(keypoints, dtype=torch.float64)
        if kp.dim() != 3 or kp.shape[-1] < 3:
            raise ValueError(f"encode expects (N, K, 3) keypoints, got shape {tuple(kp.shape)}")
        w, h = self.input_size
        x, y = kp[..., 0], kp[..., 1]
        weight = (kp[..., 2] > 0) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
        mu = kp[..., :2] / self.stride
        mu = torch.where(weight[..., None], mu, torch.zeros_like(mu))
        heatmaps = bilinear_onehot(mu, self.heatmap_size) * weight[..., None, None]
        return {"heatmaps": heatmaps.float(), "coords": mu.float(), "target_weight": weight.float()}

    def decode(self, heatmaps) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, K, h, w) logits -> crop-pixel coordinates (N, K, 2) and peak probabilities (N, K)."""
        hm = torch.as_tensor(heatmaps)
        if hm.dim() != 4:
            raise ValueError(f"decode expects (N, K, h, w) maps, got shape {tuple(hm.shape)}")
        hm = hm.detach().float()
        scores = torch.softmax(hm.flatten(-2), -1).amax(-1)
        return soft_argmax(hm) * self.stride, scores
