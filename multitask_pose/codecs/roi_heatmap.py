"""The R-CNN keypoint heads' codec: keypoints in image coordinates <-> heatmaps (and sub-cell
offsets) on an S x S grid over each RoI, detectron2's ``Keypoints.to_heatmap`` and
``heatmaps_to_keypoints`` conventions, vectorised over all RoIs and keypoints. Used by
``multitask_pose.modeling.KeypointOffsetHead`` (which builds it from its own keys).
"""

from typing import Dict, Optional, Tuple

import torch

from .base import CODEC_REGISTRY, KeypointCodec
from .utils import bilinear_sample, gaussian_heatmaps

__all__ = ["HEATMAP_LOSSES", "RoIHeatmapCodec"]

HEATMAP_LOSSES = ("softmax", "gaussian_mse")


@CODEC_REGISTRY.register()
class RoIHeatmapCodec(KeypointCodec):
    """Keypoints in image coordinates <-> heatmaps (and offsets) on an S x S grid over each RoI.

    Coordinates follow detectron2's convention (Heckbert 1990): the RoI [x1, x2) maps to [0, S)
    continuous heatmap coordinates, cell j covers [j, j + 1) and has its centre at j + 0.5.
    Offsets are in heatmap cells: the true location minus the cell centre.
    """

    # decode's scores by heatmap loss: detectron2's softmax probability of the peak, or the
    # peak of a Gaussian heatmap
    SCORE_SCALE_OF_LOSS = {"softmax": "softmax_probability", "gaussian_mse": "heatmap_peak"}
    target_keys = ("coords", "index", "valid")  # encode's keys

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

    @classmethod
    def from_config(cls, cfg) -> "RoIHeatmapCodec":
        """The codec the config's ``KeypointOffsetHead`` builds: ``MODEL.ROI_KEYPOINT_HEAD.
        {HEATMAP_SIZE (0: four times POOLER_RESOLUTION, the head's default), HEATMAP_LOSS,
        GAUSSIAN_SIGMA, OFFSET_RADIUS}``."""
        head = cfg.MODEL.ROI_KEYPOINT_HEAD
        size = head.HEATMAP_SIZE or 4 * head.POOLER_RESOLUTION
        return cls(size, head.HEATMAP_LOSS, head.GAUSSIAN_SIGMA, head.OFFSET_RADIUS)

    @property
    def score_scale(self) -> str:
        return self.SCORE_SCALE_OF_LOSS[self.heatmap_loss]

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
        computed for all RoIs at once: the bicubic map is evaluated only in a window of
        +-``WINDOW_CELLS`` heatmap cells (and a pixel) around each coarse argmax, from the cells
        its taps read, which holds the fine argmax unless a second, separate peak further away
        overshoots the first (on the benchmark's noisy maps 99.9% of keypoints equal
        detectron2's; on the multi-peak maps of an R-CNN trained for 80 iterations, 91%, every
        keypoint scoring 0.3 or more). The window's size is computed from the boxes as tensors,
        so that a traced decode (TorchScript, ONNX) sizes it at each run. With offsets, the fine
        argmax q (a fractional heatmap position) moves by the offset field read bilinearly at q.
        For Gaussian heatmaps the score is the peak value instead of a softmax probability.
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

        # No reshape whose size a trace takes from the maps: the ONNX exporter writes it as -1,
        # which ONNX Runtime cannot infer for R = 0 RoIs (S x S is the codec's own constant).
        flat = heatmaps.reshape(R, K, self.size * self.size)
        coarse = flat.argmax(dim=2)  # (argmax, not max: a third of the time on the CPU)
        peak, px, py = _window_argmax(heatmaps, coarse, out_w, out_h)
        px, py = px.to(heatmaps.dtype), py.to(heatmaps.dtype)
        # Fine pixel centre in heatmap cells (detectron2 puts it at (p + 0.5) * size / ceil(size)).
        x_hm = (px + 0.5) * S / out_w[:, None]
        y_hm = (py + 0.5) * S / out_h[:, None]
        if offsets is not None:
            d = bilinear_sample(offsets.detach().view(R, K, 2, S, S), x_hm - 0.5, y_hm - 0.5)
            x_hm, y_hm = x_hm + d[..., 0], y_hm + d[..., 1]

        if self.heatmap_loss == "softmax":
            # 1 / sum exp(h - peak) = exp(peak - cmax) / sum exp(h - cmax), the sum from the
            # fused softmax (its value at the coarse argmax is 1 / sum exp(h - cmax))
            cmax = flat.gather(2, coarse.unsqueeze(2)).squeeze(2)
            at_max = torch.softmax(flat, dim=2).gather(2, coarse.unsqueeze(2)).squeeze(2)
            score = at_max * (peak - cmax).exp()
        else:
            score = peak
        x = rois[:, 0:1] + x_hm * widths[:, None] / S
        y = rois[:, 1:2] + y_hm * heights[:, None] / S
        return torch.stack([x, y], dim=2), score


def _window_argmax(heatmaps: torch.Tensor, coarse: torch.Tensor, out_w, out_h):
    """The maximum of detectron2's bicubic upsampling of (R, K, S, S) heatmaps to out_h x out_w
    pixels (R,) within the window around each coarse argmax (R, K): (value, x pixel, y pixel),
    each (R, K)."""
    S = heatmaps.shape[-1]
    cx, cy = coarse % S, torch.div(coarse, S, rounding_mode="floor")
    fy, wy, row_ok, oy = _bicubic_window(cy, out_h, S)  # (R, K, n), (R, K, n, P), (R, K, n)
    fx, wx, col_ok, ox = _bicubic_window(cx, out_w, S)
    # the Py x Px cells around each coarse argmax that the window's bicubic taps read
    Py, Px = wy.shape[-1], wx.shape[-1]
    rows = (oy.unsqueeze(2) + torch.arange(Py, device=heatmaps.device)).unsqueeze(3)
    cols = (ox.unsqueeze(2) + torch.arange(Px, device=heatmaps.device)).unsqueeze(2)
    patch = heatmaps.gather(2, rows.expand(-1, -1, -1, S)).gather(3, cols.expand(-1, -1, Py, -1))
    fine = wy @ patch @ wx.transpose(2, 3)  # (R, K, n, n) bicubic values in the window
    fine = fine.masked_fill(~(row_ok[..., :, None] & col_ok[..., None, :]), float("-inf"))
    # the window's first maximum in row-major order, as an argmax over the flattened window
    row_peak, col = fine.max(dim=3)
    peak, row = row_peak.max(dim=2)
    py = fy.gather(2, row.unsqueeze(2)).squeeze(2)
    px = fx.gather(2, col.gather(2, row.unsqueeze(2))).squeeze(2)
    return peak, px, py


# RoIHeatmapCodec.decode's search window around the coarse argmax, in heatmap cells: at 1.5, 98.1%
# of the benchmark's noisy keypoints equalled detectron2's (1.5 cells and up to the largest box's
# pixel window, 99.1%, in the version before 2026-11-30); at 2.5, 99.9% (bench_keypoint_variants).
WINDOW_CELLS = 2.5


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
    ``F.interpolate(mode="bicubic", align_corners=False)``), for the output pixels within
    ``WINDOW_CELLS`` cells (and one pixel) of each coarse index, over the P cells their taps read.

    Args: coarse (R, K) cell indices; out_size (R,) output lengths. Returns the output pixel
    indices (R, K, n), their weights over P input cells (R, K, n, P), a mask (R, K, n) of the
    pixels to consider (inside [0, out_size) and the RoI's window) and the first of the P cells
    (R, K).
    """
    scale = S / out_size  # input cells per output pixel
    reach = torch.ceil(WINDOW_CELLS / scale).long() + 1  # the window's half-width in pixels
    # The window sizes stay tensors (no int(...)), so that a trace (TorchScript, ONNX) keeps them
    # computed from each run's boxes; the appended 1 covers R = 0 (max of nothing).
    one = reach.new_ones(1)
    half = torch.cat([reach, one]).max()
    steps = torch.arange(-half, half + 1, device=coarse.device)
    centre = ((coarse.to(scale.dtype) + 0.5) / scale[:, None]).floor().long()
    pixels = centre.unsqueeze(2) + steps  # (R, K, n)
    ok = (pixels >= 0) & (pixels < out_size[:, None, None]) & (steps.abs() <= reach[:, None, None])
    src = (pixels.to(scale.dtype) + 0.5) * scale[:, None, None] - 0.5
    base = src.floor()
    taps = (base.long().unsqueeze(3) + torch.arange(-1, 3, device=coarse.device)).clamp(0, S - 1)
    # The cells the taps of the considered pixels read: P around the coarse index, inside the map.
    span = torch.cat([((reach.to(scale.dtype) + 1) * scale).ceil().long(), one]).max() + 3
    P = (2 * span + 1).clamp(max=S)
    origin = torch.clamp(coarse - span, min=torch.zeros_like(P), max=S - P)
    rel = torch.clamp(taps - origin[..., None, None], min=torch.zeros_like(P), max=P - 1)
    # (pixels outside the window: masked.) Zeros of shape (R, K, n, P) by broadcasting, not
    # torch.zeros(..., P), whose P a trace would freeze; border taps clamp, as PyTorch's.
    weights = torch.zeros_like(src).unsqueeze(3) * torch.arange(P, device=coarse.device)
    weights.scatter_add_(3, rel, _cubic_weights(src - base))
    return pixels, weights, ok, origin
