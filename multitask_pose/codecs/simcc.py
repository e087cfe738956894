"""SimCC codec (Li et al., ECCV 2022, "SimCC: a Simple Coordinate Classification Perspective for
Human Pose Estimation"), as MMPose 1.x implements it (open-mmlab/mmpose @759b39c,
``mmpose/codecs/simcc_label.py`` and ``mmpose/codecs/utils/post_processing.py``; file:line below).

A keypoint is two classifications, of its x among ``W * ratio`` bins and of its y among
``H * ratio`` bins of the (W, H) crop (``ratio`` = ``simcc_split_ratio``, bins per pixel).

Encoding (Gaussian label smoothing, simcc_label.py:202-309): the keypoint's bin is its crop-pixel
coordinate times the ratio, rounded (:210); each axis' label is ``exp(-(i - mu)^2 / (2 sigma^2))``
over the bins i (:303-304), divided by ``sigma sqrt(2 pi)`` (:307-309). The weight is 0 for an
unlabelled keypoint and for one whose 3-sigma window (:280) lies wholly outside the bins
(:294-298); its labels are then all zero.

Decoding (simcc_label.py:156-200, post_processing.py:41-110): each axis' argmax bin divided by the
ratio; the score is the smaller of the two axes' maxima of the network's raw outputs, and a
keypoint scoring <= 0 is placed at bin -1.

Coordinates in and out are crop pixels in the official pixel-index frame, as the other top-down
codecs'. SimCC has no heatmaps of its own: ``heatmap_size`` and ``stride`` are those of the pose
network's K maps that the head flattens (``pose_topdown/modeling/simcc_head.py``).
"""

from typing import Dict, Sequence, Tuple

import torch

from .base import CODEC_REGISTRY, KeypointCodec, crop_stride

__all__ = ["SimCCCodec"]


@CODEC_REGISTRY.register()
class SimCCCodec(KeypointCodec):
    """x / y bin classification labels; registered as ``"SimCCCodec"``. Targets: ``x_labels``
    (N, K, W * ratio), ``y_labels`` (N, K, H * ratio), ``target_weight`` (N, K)."""

    score_scale = "simcc_maximum"  # decode's scores: min over x, y of the outputs' maxima
    target_keys = ("x_labels", "y_labels", "target_weight")

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        split_ratio: float = 2.0,
        sigma: float = 6.0,
    ):
        """
        Args:
            input_size: (W, H) of the crop.
            heatmap_size: (W, H) of the pose network's maps the head flattens (their stride must
                agree in x and y).
            split_ratio: bins per crop pixel (MMPose's ``simcc_split_ratio``, default 2.0).
            sigma: the Gaussian label's standard deviation, in bins (MMPose's default 6.0).
        """
        self.input_size, self.heatmap_size, self.stride = crop_stride(input_size, heatmap_size)
        if split_ratio <= 0 or sigma <= 0:
            raise ValueError(
                f"SimCCCodec: split_ratio ({split_ratio}) and sigma ({sigma}) must be positive"
            )
        self.split_ratio, self.sigma = float(split_ratio), float(sigma)
        # simcc_label.py:270-271: the bin counts are rounded
        self.bins = tuple(int(round(s * self.split_ratio)) for s in self.input_size)

    @classmethod
    def from_config(cls, cfg):
        """``MODEL.TOPDOWN.{INPUT_SIZE, HEATMAP_SIZE}`` and
        ``MODEL.TOPDOWN.CODEC.{SIMCC_SPLIT_RATIO, SIMCC_SIGMA}``."""
        td = cfg.MODEL.TOPDOWN
        return cls(td.INPUT_SIZE, td.HEATMAP_SIZE, td.CODEC.SIMCC_SPLIT_RATIO,
                   td.CODEC.SIMCC_SIGMA)  # fmt: skip

    def encode(self, keypoints) -> Dict[str, torch.Tensor]:
        """(N, K, 3) crop-pixel keypoints (x, y, v; v > 0 labelled) -> ``{"x_labels",
        "y_labels", "target_weight"}``, float32 tensors (see the module docstring)."""
        kp = torch.as_tensor(keypoints, dtype=torch.float64)
        if kp.dim() != 3 or kp.shape[-1] < 3:
            raise ValueError(f"encode expects (N, K, 3) keypoints, got shape {tuple(kp.shape)}")
        finite = torch.isfinite(kp[..., :2]).all(-1)
        mu = torch.round(torch.where(finite[..., None], kp[..., :2], 0.0) * self.split_ratio)
        radius = 3 * self.sigma
        nx, ny = self.bins
        outside = (
            (mu[..., 0] - radius >= nx)
            | (mu[..., 1] - radius >= ny)
            | (mu[..., 0] + radius + 1 < 0)
            | (mu[..., 1] + radius + 1 < 0)
        )
        weight = (kp[..., 2] > 0) & finite & ~outside
        norm = self.sigma * (2 * torch.pi) ** 0.5
        labels = []
        for axis, n in ((0, nx), (1, ny)):
            bins = torch.arange(n, dtype=torch.float64)
            d = bins - mu[..., axis, None]
            g = torch.exp(-(d**2) / (2 * self.sigma**2)) / norm
            labels.append((g * weight[..., None]).float())
        return {"x_labels": labels[0], "y_labels": labels[1], "target_weight": weight.float()}

    def decode(self, outputs) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(x (N, K, W * ratio), y (N, K, H * ratio))`` outputs -> crop-pixel coordinates
        (N, K, 2) and scores (N, K)."""
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
            raise ValueError("SimCCCodec.decode takes the (x, y) outputs of a SimCC head")
        x, y = (torch.as_tensor(o).detach().float() for o in outputs)
        if x.dim() != 3 or y.dim() != 3 or (x.shape[-1], y.shape[-1]) != self.bins:
            raise ValueError(
                f"SimCCCodec.decode expects (N, K, {self.bins[0]}) and (N, K, {self.bins[1]})"
                f" outputs, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        vx, ix = x.max(-1)
        vy, iy = y.max(-1)
        scores = torch.minimum(vx, vy)
        locs = torch.stack([ix, iy], -1).float()
        locs = torch.where(scores[..., None] > 0, locs, torch.full_like(locs, -1.0))
        return locs / self.split_ratio, scores
