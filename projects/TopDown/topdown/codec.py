"""Gaussian heatmap codec of the top-down models: one object makes the training targets and decodes
the predictions, so the two cannot drift apart (MMPose's codec design).

Coordinates in and out are crop pixels; heatmap cell ``(i, j)`` sits at crop pixel
``(j * stride, i * stride)`` (the official HRNet convention, see :mod:`topdown.affine`).

Encoding: one Gaussian of ``sigma`` cells per labelled keypoint, peak 1, truncated at 3 sigma.
``subpixel_center=True`` centres it at the exact keypoint; ``False`` rounds the centre to the nearest
cell, as the official HRNet does (so its recipes reproduce). Target weights are 0 for unlabelled
keypoints and for those whose 3-sigma window lies wholly outside the heatmap (the official rule).

Decoding: per map the argmax, then either the official quarter-cell shift toward the higher
neighbour (``"quarter"``) or DARK's Taylor refinement of the log heatmap (``"dark"``, Zhang et al.
2020), whose optional Gaussian blur first smooths a predicted map. Scores are the maps' maxima.
Both are batched over all maps; no loop per instance.
"""
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["GaussianHeatmapCodec"]


class GaussianHeatmapCodec:
    def __init__(self, input_size: Sequence[int], heatmap_size: Sequence[int], sigma: float = 2.0,
                 subpixel_center: bool = True, decode: str = "quarter", blur_kernel: int = 11):
        """
        Args:
            input_size, heatmap_size: (W, H) of the crop and of the heatmap; the strides must agree.
            sigma: Gaussian sigma in heatmap cells (official: 2 at 64x48, 3 at 96x72).
            subpixel_center: centre targets at the exact keypoint (else rounded, official HRNet).
            decode: "quarter" (official shift) or "dark" (Taylor refinement).
            blur_kernel: odd Gaussian blur size applied before "dark" decoding (DARK's 11 for
                sigma 2); 0 or 1 disables the blur (for maps that already are Gaussians).
        """
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        sx = self.input_size[0] / self.heatmap_size[0]
        sy = self.input_size[1] / self.heatmap_size[1]
        if abs(sx - sy) > 1e-6:
            raise ValueError(f"input size {self.input_size} and heatmap size {self.heatmap_size} have different strides"
                             f" in x ({sx}) and y ({sy})")
        if decode not in ("quarter", "dark"):
            raise ValueError(f"decode must be 'quarter' or 'dark', got {decode!r}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if blur_kernel > 1 and blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd, got {blur_kernel}")
        self.stride = sx
        self.sigma = float(sigma)
        self.subpixel_center = bool(subpixel_center)
        self.decode_mode = decode
        self.blur_kernel = int(blur_kernel)

    @classmethod
    def from_config(cls, cfg):
        td = cfg.MODEL.TOPDOWN
        return cls(td.INPUT_SIZE, td.HEATMAP_SIZE, sigma=td.CODEC.SIGMA, subpixel_center=td.CODEC.SUBPIXEL_CENTER,
                   decode=td.CODEC.DECODE, blur_kernel=td.CODEC.BLUR_KERNEL)

    # ------------------------------------------------------------------ encode
    def encode(self, keypoints: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(N, K, 3) crop-pixel keypoints (x, y, v; v > 0 labelled) -> heatmaps (N, K, h, w) float32
        and target weights (N, K) float32."""
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.ndim != 3 or kp.shape[-1] < 3:
            raise ValueError(f"encode expects (N, K, 3) keypoints, got shape {kp.shape}")
        w, h = self.heatmap_size
        mu = kp[..., :2] / self.stride
        if not self.subpixel_center:
            mu = np.floor(mu + 0.5)
        radius = 3 * self.sigma
        # The official rule: a keypoint whose 3-sigma window (of the rounded centre) misses the map
        # entirely teaches nothing.
        c = np.floor(mu + 0.5)
        outside = (c[..., 0] + radius + 1 < 0) | (c[..., 1] + radius + 1 < 0) | \
                  (c[..., 0] - radius >= w) | (c[..., 1] - radius >= h)
        weight = ((kp[..., 2] > 0) & ~outside & np.isfinite(mu).all(-1)).astype(np.float32)
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        dx = xs[None, None, :] - mu[..., 0:1]  # (N, K, w)
        dy = ys[None, None, :] - mu[..., 1:2]  # (N, K, h)
        gx = np.where(np.abs(dx) <= radius, np.exp(-dx ** 2 / (2 * self.sigma ** 2)), 0.0)
        gy = np.where(np.abs(dy) <= radius, np.exp(-dy ** 2 / (2 * self.sigma ** 2)), 0.0)
        heatmaps = gy[..., :, None] * gx[..., None, :]
        heatmaps *= weight[..., None, None]
        return heatmaps.astype(np.float32), weight

    # ------------------------------------------------------------------ decode
    def decode(self, heatmaps) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, K, h, w) heatmaps (tensor or array) -> crop-pixel coordinates (N, K, 2) and scores (N, K)."""
        hm = torch.as_tensor(heatmaps)
        if hm.dim() != 4:
            raise ValueError(f"decode expects (N, K, h, w) heatmaps, got shape {tuple(hm.shape)}")
        hm = hm.detach().float()
        n, k, h, w = hm.shape
        flat = hm.reshape(n, k, -1)
        scores, idx = flat.max(dim=-1)
        px = (idx % w).float()
        py = torch.div(idx, w, rounding_mode="floor").float()
        coords = torch.stack([px, py], dim=-1)
        if self.decode_mode == "quarter":
            coords = coords + 0.25 * self._neighbour_sign(hm, idx)
        else:
            coords = coords + self._taylor_offset(hm, idx)
        # The official code zeroes maps whose maximum is not positive: no keypoint was found.
        coords = torch.where((scores > 0)[..., None], coords, torch.zeros_like(coords))
        return coords * self.stride, scores

    @staticmethod
    def _gather(hm: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Values of (N, K, h, w) maps at integer (N, K) positions, clamped to the map."""
        h, w = hm.shape[-2:]
        x = x.clamp(0, w - 1)
        y = y.clamp(0, h - 1)
        return hm.reshape(*hm.shape[:2], -1).gather(-1, (y * w + x).unsqueeze(-1)).squeeze(-1)

    def _neighbour_sign(self, hm, idx):
        h, w = hm.shape[-2:]
        x = idx % w
        y = torch.div(idx, w, rounding_mode="floor")
        g = self._gather
        ddx = g(hm, x + 1, y) - g(hm, x - 1, y)
        ddy = g(hm, x, y + 1) - g(hm, x, y - 1)
        # The official code shifts only strictly inside the map (1 < x < w-1, 1 < y < h-1).
        inside = ((x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)).float()
        return torch.stack([torch.sign(ddx), torch.sign(ddy)], dim=-1) * inside[..., None]

    def _blur(self, hm):
        k = self.blur_kernel
        if k <= 1:
            return hm
        n, c, h, w = hm.shape
        # The kernel's sigma from its size, as cv2.GaussianBlur(ksize, 0) does.
        s = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
        t = torch.arange(k, dtype=hm.dtype, device=hm.device) - (k - 1) / 2
        g = torch.exp(-t ** 2 / (2 * s * s))
        g = g / g.sum()
        x = hm.reshape(n * c, 1, h, w)
        # Separable blur with border replication; then restore each map's maximum (DARK).
        x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, k))
        x = F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="replicate"), g.view(1, 1, k, 1))
        x = x.reshape(n, c, h, w)
        orig_max = hm.amax(dim=(-2, -1), keepdim=True)
        new_max = x.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        return x * (orig_max / new_max)

    def _taylor_offset(self, hm, idx):
        """Second-order Taylor step on log(heatmap) at the argmax: offset = -H^-1 grad."""
        h, w = hm.shape[-2:]
        lg = torch.log(self._blur(hm).clamp_min(1e-10))
        x = idx % w
        y = torch.div(idx, w, rounding_mode="floor")
        g = lambda dx, dy: self._gather(lg, x + dx, y + dy)  # noqa: E731
        c = g(0, 0)
        dx = 0.5 * (g(1, 0) - g(-1, 0))
        dy = 0.5 * (g(0, 1) - g(0, -1))
        dxx = g(1, 0) - 2 * c + g(-1, 0)
        dyy = g(0, 1) - 2 * c + g(0, -1)
        dxy = 0.25 * (g(1, 1) - g(1, -1) - g(-1, 1) + g(-1, -1))
        det = dxx * dyy - dxy * dxy
        # Refine only a proper maximum (negative-definite Hessian) away from the border, where the
        # stencil is complete; elsewhere keep the argmax.
        ok = (det > 1e-12) & (dxx < 0) & (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
        safe = torch.where(ok, det, torch.ones_like(det))
        ox = -(dyy * dx - dxy * dy) / safe
        oy = -(dxx * dy - dxy * dx) / safe
        off = torch.stack([ox, oy], dim=-1)
        # A step beyond one cell means the quadratic model does not hold there.
        ok = ok & (off.abs() <= 1.0).all(-1)
        return torch.where(ok[..., None], off, torch.zeros_like(off))
