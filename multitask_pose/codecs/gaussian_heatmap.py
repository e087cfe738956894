"""Gaussian heatmap codec of the top-down models (the MSRA heatmap of HRNet / SimpleBaseline):
one object makes the training targets and decodes the predictions.

Coordinates in and out are crop pixels; heatmap cell ``(i, j)`` sits at crop pixel
``(j * stride, i * stride)`` (the official HRNet convention, see :mod:`pose_topdown.affine`).

Encoding: one Gaussian of ``sigma`` cells per labelled keypoint, peak 1, truncated at 3 sigma.
``subpixel_center=True`` centres it at the exact keypoint; ``False`` rounds the centre to the
nearest cell, as the official HRNet does (so its recipes reproduce). Target weights are 0 for
unlabelled keypoints and for those whose 3-sigma window lies wholly outside the heatmap (the
official rule).

Decoding: per map the argmax, then either the official quarter-cell shift toward the higher
neighbour (``"quarter"``) or DARK's Taylor refinement of the log heatmap (``"dark"``, Zhang et al.
2020), whose optional Gaussian blur first smooths a predicted map. Scores are the maps' maxima.
Both are batched over all maps (:mod:`multitask_pose.codecs.utils`).
"""

from typing import Dict, Sequence, Tuple

import torch

from .base import CODEC_REGISTRY, KeypointCodec, crop_stride
from .utils import argmax_2d, gaussian_blur, gaussian_heatmaps, quarter_offsets, taylor_offsets

__all__ = ["GaussianHeatmapCodec"]


@CODEC_REGISTRY.register()
class GaussianHeatmapCodec(KeypointCodec):
    """Gaussian heatmaps at a fixed stride of the crop; registered as ``"GaussianHeatmapCodec"``."""

    score_scale = "heatmap_peak"  # decode's scores: the maps' maxima
    target_keys = ("heatmaps", "target_weight")  # encode's keys

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float = 2.0,
        subpixel_center: bool = True,
        decode: str = "quarter",
        blur_kernel: int = 11,
    ):
        """
        Args:
            input_size, heatmap_size: (W, H) of the crop and of the heatmap; the strides must agree.
            sigma: Gaussian sigma in heatmap cells (official: 2 at 64x48, 3 at 96x72).
            subpixel_center: centre targets at the exact keypoint (else rounded, official HRNet).
            decode: "quarter" (official shift) or "dark" (Taylor refinement).
            blur_kernel: odd Gaussian blur size applied before "dark" decoding (DARK's 11 for
                sigma 2); 0 or 1 disables the blur (for maps that already are Gaussians).
        """
        self.input_size, self.heatmap_size, self.stride = crop_stride(input_size, heatmap_size)
        if decode not in ("quarter", "dark"):
            raise ValueError(f"decode must be 'quarter' or 'dark', got {decode!r}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if blur_kernel > 1 and blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd, got {blur_kernel}")
        self.sigma = float(sigma)
        self.subpixel_center = bool(subpixel_center)
        self.decode_mode = decode
        self.blur_kernel = int(blur_kernel)

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: the config: ``MODEL.TOPDOWN.{INPUT_SIZE, HEATMAP_SIZE, CODEC.*}``.

        Returns:
            the codec.
        """
        td = cfg.MODEL.TOPDOWN
        return cls(
            td.INPUT_SIZE,
            td.HEATMAP_SIZE,
            sigma=td.CODEC.SIGMA,
            subpixel_center=td.CODEC.SUBPIXEL_CENTER,
            decode=td.CODEC.DECODE,
            blur_kernel=td.CODEC.BLUR_KERNEL,
        )

    # ------------------------------------------------------------------ encode
    def encode(self, keypoints) -> Dict[str, torch.Tensor]:
        """(N, K, 3) crop-pixel keypoints (x, y, v; v > 0 labelled; array or tensor) ->
        ``{"heatmaps": (N, K, h, w), "target_weight": (N, K)}``, float32 tensors."""
        kp = torch.as_tensor(keypoints, dtype=torch.float64)
        if kp.dim() != 3 or kp.shape[-1] < 3:
            raise ValueError(f"encode expects (N, K, 3) keypoints, got shape {tuple(kp.shape)}")
        w, h = self.heatmap_size
        mu = kp[..., :2] / self.stride
        if not self.subpixel_center:
            mu = torch.floor(mu + 0.5)
        radius = 3 * self.sigma
        # The official rule: a keypoint whose 3-sigma window (of the rounded centre) misses the map
        # entirely teaches nothing.
        c = torch.floor(mu + 0.5)
        outside = (
            (c[..., 0] + radius + 1 < 0)
            | (c[..., 1] + radius + 1 < 0)
            | (c[..., 0] - radius >= w)
            | (c[..., 1] - radius >= h)
        )
        weight = (kp[..., 2] > 0) & ~outside & torch.isfinite(mu).all(-1)
        heatmaps = gaussian_heatmaps(mu, (w, h), self.sigma, radius) * weight[..., None, None]
        return {"heatmaps": heatmaps.float(), "target_weight": weight.float()}

    # ------------------------------------------------------------------ decode
    def decode(self, heatmaps) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, K, h, w) heatmaps (tensor or array) -> crop-pixel coordinates (N, K, 2) and
        scores (N, K)."""
        hm = torch.as_tensor(heatmaps)
        if hm.dim() != 4:
            raise ValueError(f"decode expects (N, K, h, w) heatmaps, got shape {tuple(hm.shape)}")
        hm = hm.detach().float()
        scores, x, y = argmax_2d(hm)
        coords = torch.stack([x, y], dim=-1).float()
        if self.decode_mode == "quarter":
            coords = coords + quarter_offsets(hm, x, y)
        else:
            log = torch.log(gaussian_blur(hm, self.blur_kernel).clamp_min(1e-10))
            coords = coords + taylor_offsets(log, x, y)
        # The official code zeroes maps whose maximum is not positive: no keypoint was found.
        coords = torch.where((scores > 0)[..., None], coords, torch.zeros_like(coords))
        return coords * self.stride, scores
