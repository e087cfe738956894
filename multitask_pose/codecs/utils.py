"""Heatmap operations the codecs share: Gaussian targets, argmax and gathering, sub-cell refinement.

Coordinates are in heatmap cells with cell ``(i, j)`` (row, column) at ``(x, y) = (j, i)``; a codec
whose cells are centred at ``j + 0.5`` (detectron2's RoI heatmaps) shifts by 0.5 on the way in and
out. Everything is batched over leading dimensions: no loop per instance or keypoint.
"""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "argmax_2d",
    "bilinear_sample",
    "gather_2d",
    "gaussian_blur",
    "gaussian_heatmaps",
    "quarter_offsets",
    "taylor_offsets",
]


def gaussian_heatmaps(
    centres: torch.Tensor, size: Sequence[int], sigma: float, radius: Optional[float] = None
) -> torch.Tensor:
    """Unnormalised Gaussians (peak 1 at the centre) on a (h, w) grid.

    Args:
        centres: (..., 2) x, y in cells, in the tensor's dtype (float64 for exact targets).
        size: (w, h) of the grid.
        sigma: in cells.
        radius: if given, cells farther than ``radius`` along x or along y get 0 (a square
            window, as the official HRNet's 3-sigma truncation); a non-finite centre gives 0.

    Returns:
        (..., h, w), separable: the product of an x and a y profile.
    """
    w, h = int(size[0]), int(size[1])
    xs = torch.arange(w, dtype=centres.dtype, device=centres.device)
    ys = torch.arange(h, dtype=centres.dtype, device=centres.device)
    dx = xs - centres[..., 0:1]  # (..., w)
    dy = ys - centres[..., 1:2]  # (..., h)
    gx = torch.exp(-(dx**2) / (2 * sigma**2))
    gy = torch.exp(-(dy**2) / (2 * sigma**2))
    if radius is not None:
        gx = torch.where(dx.abs() <= radius, gx, torch.zeros_like(gx))
        gy = torch.where(dy.abs() <= radius, gy, torch.zeros_like(gy))
    return gy[..., :, None] * gx[..., None, :]


def argmax_2d(maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per map of (..., h, w): the maximum and its integer column x and row y (the first maximum
    in row-major order on ties, as ``argmax``)."""
    w = maps.shape[-1]
    scores, idx = maps.flatten(-2).max(dim=-1)
    return scores, idx % w, torch.div(idx, w, rounding_mode="floor")


def gather_2d(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Values of (..., h, w) maps at integer positions x, y of shape (...), clamped to the map."""
    h, w = maps.shape[-2:]
    # The row, then the column: no flattening reshape, which the ONNX exporter writes with a -1
    # that ONNX Runtime cannot infer for an empty batch.
    rows = maps.gather(-2, y.clamp(0, h - 1)[..., None, None].expand(*y.shape, 1, w))
    return rows.gather(-1, x.clamp(0, w - 1)[..., None, None]).squeeze(-1).squeeze(-1)


def bilinear_sample(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sample (..., C, h, w) maps at fractional positions x, y of shape (...) bilinearly, clamped to
    the map; returns (..., C)."""
    h, w = maps.shape[-2:]
    x = x.clamp(0, w - 1)
    y = y.clamp(0, h - 1)
    x0 = x.floor().long().clamp(max=max(w - 2, 0))
    y0 = y.floor().long().clamp(max=max(h - 2, 0))
    ax, ay = (x - x0)[..., None], (y - y0)[..., None]
    c = maps.shape[-3]

    def tap(yy, xx):
        return gather_2d(
            maps, xx[..., None].expand(*xx.shape, c), yy[..., None].expand(*yy.shape, c)
        )

    return (
        tap(y0, x0) * ((1 - ay) * (1 - ax))
        + tap(y0, x0 + 1) * ((1 - ay) * ax)
        + tap(y0 + 1, x0) * (ay * (1 - ax))
        + tap(y0 + 1, x0 + 1) * (ay * ax)
    )


def quarter_offsets(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The official HRNet / SimpleBaseline refinement: a quarter cell from the argmax (x, y) toward
    the higher neighbour on each axis, only strictly inside the map (``1 < x < w - 1``,
    ``1 < y < h - 1``, the official rule). Returns (..., 2) offsets in cells."""
    h, w = maps.shape[-2:]
    ddx = gather_2d(maps, x + 1, y) - gather_2d(maps, x - 1, y)
    ddy = gather_2d(maps, x, y + 1) - gather_2d(maps, x, y - 1)
    inside = ((x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)).to(maps.dtype)
    return 0.25 * torch.stack([torch.sign(ddx), torch.sign(ddy)], dim=-1) * inside[..., None]


def gaussian_blur(maps: torch.Tensor, kernel: int) -> torch.Tensor:
    """DARK's modulation: a separable Gaussian blur of (N, K, h, w) maps with border replication
    (the kernel's sigma from its size, as ``cv2.GaussianBlur(ksize, 0)``), then each map scaled back
    to its original maximum. ``kernel`` <= 1 returns the maps unchanged."""
    if kernel <= 1:
        return maps
    n, c, h, w = maps.shape
    s = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    t = torch.arange(kernel, dtype=maps.dtype, device=maps.device) - (kernel - 1) / 2
    g = torch.exp(-(t**2) / (2 * s * s))
    g = g / g.sum()
    x = maps.reshape(n * c, 1, h, w)
    half = kernel // 2
    x = F.conv2d(F.pad(x, (half, half, 0, 0), mode="replicate"), g.view(1, 1, 1, kernel))
    x = F.conv2d(F.pad(x, (0, 0, half, half), mode="replicate"), g.view(1, 1, kernel, 1))
    x = x.reshape(n, c, h, w)
    orig_max = maps.amax(dim=(-2, -1), keepdim=True)
    new_max = x.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return x * (orig_max / new_max)


def taylor_offsets(log_maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DARK's refinement (Zhang et al. 2020): a second-order Taylor step ``-H^-1 grad`` on the log
    heatmaps at the argmax (x, y). Only a proper maximum (negative-definite Hessian) away from the
    border, where the stencil is complete, is refined, and a step beyond one cell (where the
    quadratic model does not hold) is dropped. Returns (..., 2) offsets in cells."""
    h, w = log_maps.shape[-2:]

    def g(dx, dy):
        return gather_2d(log_maps, x + dx, y + dy)

    c = g(0, 0)
    dx = 0.5 * (g(1, 0) - g(-1, 0))
    dy = 0.5 * (g(0, 1) - g(0, -1))
    dxx = g(1, 0) - 2 * c + g(-1, 0)
    dyy = g(0, 1) - 2 * c + g(0, -1)
    dxy = 0.25 * (g(1, 1) - g(1, -1) - g(-1, 1) + g(-1, -1))
    det = dxx * dyy - dxy * dxy
    ok = (det > 1e-12) & (dxx < 0) & (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    safe = torch.where(ok, det, torch.ones_like(det))
    off = torch.stack([-(dyy * dx - dxy * dy) / safe, -(dxx * dy - dxy * dx) / safe], dim=-1)
    ok = ok & (off.abs() <= 1.0).all(-1)
    return torch.where(ok[..., None], off, torch.zeros_like(off))
