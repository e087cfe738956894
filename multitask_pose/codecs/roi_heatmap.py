"""The R-CNN keypoint heads' codec: keypoints in image coordinates <-> heatmaps (and sub-cell
offsets) on an S x S grid over each RoI, detectron2's ``Keypoints.to_heatmap`` and
``heatmaps_to_keypoints`` conventions, vectorised over all RoIs and keypoints. Used by
``multitask_pose.modeling.KeypointOffsetHead`` (which builds it from its own keys).
"""

from typing import Dict, Optional, Tuple

import torch

from .base import CODEC_REGISTRY, KeypointCodec
from .utils import argmax_2d, bilinear_sample, gaussian_heatmaps

__all__ = ["HEATMAP_LOSSES", "RoIHeatmapCodec"]

HEATMAP_LOSSES = ("softmax", "gaussian_mse")


@CODEC_REGISTRY.register()
class RoIHeatmapCodec(KeypointCodec):
    """Keypoints in image coordinates <-> heatmaps (and offsets) on an S x S grid over each RoI.

    Coordinates follow detectron2's convention (Heckbert 1990): the RoI [x1, x2) maps to [0, S)
    continuous heatmap coordinates, cell j covers [j, j + 1) and has its centre at j + 0.5.
    Offsets are in heatmap cells: the true location minus the cell centre.
    """

    def __init__(
        self,
        heatmap_size: int,
        heatmap_loss: str = "softmax",
        gaussian_sigma: float = 2.0,
        offset_radius: float = 2.0,
    ):
        if heatmap_loss not in HEATMAP_LOSSES:
            raise ValueError(
                f"MODEL.ROI_KEYPOINT_HEAD.HEATMAP_LOSS must be one of {HEATMAP_LOSSES}, "
                f"got {heatmap_loss!r}"
            )
        if gaussian_sigma <= 0 or offset_radius <= 0:
            raise ValueError(
                "MODEL.ROI_KEYPOINT_HEAD.GAUSSIAN_SIGMA and OFFSET_RADIUS must be positive, "
                f"got {gaussian_sigma} and {offset_radius}"
            )
        self.size = int(heatmap_size)
        self.heatmap_loss = heatmap_loss
        self.sigma = float(gaussian_sigma)
        self.radius = float(offset_radius)

    # ---------------------------------------------------------------- encoding (training targets)
    def encode(self, keypoints: torch.Tensor, rois: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Args: keypoints (N, K, 3) image x, y, visibility; rois (N, 4) xyxy.

        Returns a dict with ``coords`` (N, K, 2) continuous heatmap coordinates, ``index`` (N, K)
        the flat cell index detectron2's softmax loss uses as label, and ``valid`` (N, K) bool:
        labelled (v > 0) and inside the RoI, exactly as detectron2's ``Keypoints.to_heatmap``.
        """
        S = self.size
        x1, y1 = rois[:, 0:1], rois[:, 1:2]
        scale_x = S / (rois[:, 2:3] - x1)
        scale_y = S / (rois[:, 3:4] - y1)
        x = (keypoints[..., 0] - x1) * scale_x
        y = (keypoints[..., 1] - y1) * scale_y
        ix, iy = x.floor().long(), y.floor().long()
        # A keypoint exactly on the right/bottom border belongs to the last cell (as detectron2).
        ix[keypoints[..., 0] == rois[:, 2:3]] = S - 1
        iy[keypoints[..., 1] == rois[:, 3:4]] = S - 1
        valid = (ix >= 0) & (iy >= 0) & (ix < S) & (iy < S) & (keypoints[..., 2] > 0)
        index = (iy * S + ix) * valid
        return {"coords": torch.stack([x, y], dim=-1), "index": index, "valid": valid}

    def _cell_deltas(self, coords: torch.Tensor) -> torch.Tensor:
        """(V, 2) heatmap coords -> (V, 2, S, S): true location minus each cell centre."""
        centres = torch.arange(self.size, device=coords.device, dtype=coords.dtype) + 0.5
        dx = coords[:, 0, None, None] - centres[None, None, :]
        dy = coords[:, 1, None, None] - centres[None, :, None]
        S = self.size
        return torch.stack([dx.expand(-1, S, S), dy.expand(-1, S, S)], dim=1)

    def gaussian_targets(self, coords: torch.Tensor) -> torch.Tensor:
        """(V, 2) heatmap coords -> (V, S, S) unnormalised Gaussians centred at the sub-cell
        location."""
        # Cell j's centre is at j + 0.5 here, at j in the shared helper.
        return gaussian_heatmaps(coords - 0.5, (self.size, self.size), self.sigma)

    def offset_targets(self, coords: torch.Tensor):
        """(V, 2) heatmap coords -> offsets (V, 2, S, S) and the (V, S, S) bool mask of cells within
        ``offset_radius`` cells of the true location, the only cells the offset loss sees."""
        d = self._cell_deltas(coords)
        return d, (d**2).sum(dim=1) <= self.radius**2

    # ---------------------------------------------------------------- decoding (inference)
    def decode(
        self, heatmaps: torch.Tensor, rois: torch.Tensor, offsets: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps (R, K, S, S) (+ offsets (R, 2K, S, S)) and rois (R, 4) -> image coordinates
        (R, K, 2) and scores (R, K).

        Without offsets this is detectron2's ``heatmaps_to_keypoints`` (bicubic upsampling to the
        box size in pixels, argmax, score = the peak's softmax probability over the S x S grid),
        computed for all RoIs at once: the bicubic map is evaluated only in a window of +-1.5
        cells around each coarse argmax, which holds the fine argmax unless a second, separate
        peak is within a bicubic overshoot of the first. With offsets, the fine argmax q (a
        fractional heatmap position) moves by the offset field read bilinearly at q. For
        Gaussian heatmaps the score is the peak value instead of a softmax probability.
        """
        R, K, S, S2 = heatmaps.shape
        if S != self.size or S2 != self.size:
            raise ValueError(f"decode expects {self.size}x{self.size} heatmaps, got {S}x{S2}")
        if R == 0:
            return heatmaps.new_zeros(0, K, 2), heatmaps.new_zeros(0, K)
        heatmaps = heatmaps.detach()
        rois = rois.detach().to(heatmaps.dtype)
        widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
        heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
        out_w, out_h = widths.ceil(), heights.ceil()  # detectron2's upsampled size, in pixels

        _, cx, cy = argmax_2d(heatmaps)
        fy, wy, row_ok = _bicubic_window(cy, out_h, S)  # (R, K, n), (R, K, n, S), (R, K, n)
        fx, wx, col_ok = _bicubic_window(cx, out_w, S)
        fine = wy @ heatmaps @ wx.transpose(2, 3)  # (R, K, n, n) bicubic values in the window
        fine = fine.masked_fill(~(row_ok[..., :, None] & col_ok[..., None, :]), float("-inf"))
        n = fine.shape[-1]
        peak, pos = fine.flatten(2).max(dim=2)
        py = fy.gather(2, (pos // n).unsqueeze(2)).squeeze(2).to(heatmaps.dtype)
        px = fx.gather(2, (pos % n).unsqueeze(2)).squeeze(2).to(heatmaps.dtype)
        # Fine pixel centre in heatmap cells (detectron2 puts it at (p + 0.5) * size / ceil(size)).
        x_hm = (px + 0.5) * S / out_w[:, None]
        y_hm = (py + 0.5) * S / out_h[:, None]
        if offsets is not None:
            d = bilinear_sample(offsets.detach().view(R, K, 2, S, S), x_hm - 0.5, y_hm - 0.5)
            x_hm, y_hm = x_hm + d[..., 0], y_hm + d[..., 1]

        if self.heatmap_loss == "softmax":
            score = 1.0 / (heatmaps.flatten(2) - peak.unsqueeze(2)).exp().sum(dim=2)
        else:
            score = peak
        x = rois[:, 0:1] + x_hm * widths[:, None] / S
        y = rois[:, 1:2] + y_hm * heights[:, None] / S
        return torch.stack([x, y], dim=2), score


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """PyTorch's bicubic kernel (A = -0.75) for taps at -1, 0, 1, 2 around a fraction t:
    (..., 4)."""
    A = -0.75

    def near(x):  # |x| <= 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def _bicubic_window(coarse: torch.Tensor, out_size: torch.Tensor, S: int):
    """Rows of the matrix that bicubically resizes S cells to ``out_size`` pixels (as
    ``F.interpolate(mode="bicubic", align_corners=False)``), for the output pixels within 1.5
    cells of each coarse index.

    Args: coarse (R, K) cell indices; out_size (R,) output lengths. Returns the output pixel
    indices (R, K, n), their weights over the S input cells (R, K, n, S) and a mask (R, K, n) of
    pixels that exist (inside [0, out_size)).
    """
    scale = S / out_size  # input cells per output pixel
    half = int(torch.ceil(1.5 / scale.min()).item()) + 1
    steps = torch.arange(-half, half + 1, device=coarse.device)
    centre = ((coarse.to(scale.dtype) + 0.5) / scale[:, None]).floor().long()
    pixels = centre.unsqueeze(2) + steps  # (R, K, n)
    ok = (pixels >= 0) & (pixels < out_size[:, None, None])
    src = (pixels.to(scale.dtype) + 0.5) * scale[:, None, None] - 0.5
    base = src.floor()
    taps = (base.long().unsqueeze(3) + torch.arange(-1, 3, device=coarse.device)).clamp(0, S - 1)
    weights = torch.zeros(*pixels.shape, S, dtype=scale.dtype, device=coarse.device)
    weights.scatter_add_(3, taps, _cubic_weights(src - base))  # border taps clamp, as PyTorch's
    return pixels, weights, ok
