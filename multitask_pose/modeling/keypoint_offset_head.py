"""KeypointOffsetHead: detectron2's Keypoint R-CNN head plus 2K sub-pixel offset maps.

detectron2's head predicts K spatial-softmax heatmaps on a 56x56 RoI grid and decodes them one RoI
at a time (bicubic upsampling to the box size, then argmax). At 56 cells per box side a cell is
about 2% of the person's height, and COCO's OKS for eyes and nose tolerates less than that. The
multitask report adds an x/y offset per keypoint and cell, regressed to the true location near the
keypoint; decoding takes the argmax cell and adds the offset read there. This module holds:

- ``RoIHeatmapCodec``: one object that makes the training targets (detectron2's spatial labels,
  optional Gaussian targets, offset targets) and decodes predictions, vectorised over all RoIs and
  keypoints, so training and inference cannot drift apart.
- ``KeypointOffsetHead``: a subclass of detectron2's ``KRCNNConvDeconvUpsampleHead`` with the same
  layers and parameter names (detectron2 checkpoints load; only ``offset_lowres.*`` is new) and a
  parallel deconvolution for the offsets, zero-initialised so that a fresh head decodes exactly as
  without offsets. Switched on by ``MODEL.ROI_KEYPOINT_HEAD.NAME: "KeypointOffsetHead"``; its keys
  are ``MODEL.ROI_KEYPOINT_HEAD.{OFFSET_ON, OFFSET_LOSS_WEIGHT, OFFSET_RADIUS, HEATMAP_LOSS,
  GAUSSIAN_SIGMA, HEATMAP_SIZE, BALANCED_LOSS, DEFORM_CONVS}`` (see ``multitask_pose/config.py``).
"""
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ConvTranspose2d, cat, interpolate
from detectron2.modeling import ROI_KEYPOINT_HEAD_REGISTRY
from detectron2.modeling.roi_heads.keypoint_head import KRCNNConvDeconvUpsampleHead
from detectron2.structures import Instances

from .balanced_keypoint_loss import keypoint_type_weights
from .deform_conv import DeformConv2d

__all__ = ["RoIHeatmapCodec", "KeypointOffsetHead"]

HEATMAP_LOSSES = ("softmax", "gaussian_mse")


class RoIHeatmapCodec:
    """Keypoints in image coordinates <-> heatmaps (and offsets) on an S x S grid over each RoI.

    Coordinates follow detectron2's convention (Heckbert 1990): the RoI [x1, x2) maps to [0, S)
    continuous heatmap coordinates, cell j covers [j, j + 1) and has its centre at j + 0.5.
    Offsets are in heatmap cells: the true location minus the cell centre.
    """

    def __init__(self, heatmap_size: int, heatmap_loss: str = "softmax", gaussian_sigma: float = 2.0,
                 offset_radius: float = 2.0):
        if heatmap_loss not in HEATMAP_LOSSES:
            raise ValueError(f"MODEL.ROI_KEYPOINT_HEAD.HEATMAP_LOSS must be one of {HEATMAP_LOSSES}, got {heatmap_loss!r}")
        if gaussian_sigma <= 0 or offset_radius <= 0:
            raise ValueError("MODEL.ROI_KEYPOINT_HEAD.GAUSSIAN_SIGMA and OFFSET_RADIUS must be positive, "
                             f"got {gaussian_sigma} and {offset_radius}")
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
        """(V, 2) heatmap coords -> (V, S, S) unnormalised Gaussians centred at the sub-cell location."""
        d = self._cell_deltas(coords)
        return torch.exp(-(d ** 2).sum(dim=1) / (2 * self.sigma ** 2))

    def offset_targets(self, coords: torch.Tensor):
        """(V, 2) heatmap coords -> offsets (V, 2, S, S) and the (V, S, S) bool mask of cells within
        ``offset_radius`` cells of the true location, the only cells the offset loss sees."""
        d = self._cell_deltas(coords)
        return d, (d ** 2).sum(dim=1) <= self.radius ** 2

    # ---------------------------------------------------------------- decoding (inference)
    def decode(self, heatmaps: torch.Tensor, rois: torch.Tensor,
               offsets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Heatmaps (R, K, S, S) (+ offsets (R, 2K, S, S)) and rois (R, 4) -> (R, K, 3) image x, y, score.

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
            return heatmaps.new_zeros(0, K, 3)
        heatmaps = heatmaps.detach()
        rois = rois.detach().to(heatmaps.dtype)
        widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
        heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
        out_w, out_h = widths.ceil(), heights.ceil()  # detectron2's upsampled size, in pixels

        coarse = heatmaps.flatten(2).argmax(dim=2)
        fy, wy, row_ok = _bicubic_window(coarse // S, out_h, S)  # (R, K, n), (R, K, n, S), (R, K, n)
        fx, wx, col_ok = _bicubic_window(coarse % S, out_w, S)
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
            dx, dy = _bilinear_at(offsets.detach().view(R, K, 2, S, S), x_hm - 0.5, y_hm - 0.5)
            x_hm, y_hm = x_hm + dx, y_hm + dy

        if self.heatmap_loss == "softmax":
            score = 1.0 / (heatmaps.flatten(2) - peak.unsqueeze(2)).exp().sum(dim=2)
        else:
            score = peak
        x = rois[:, 0:1] + x_hm * widths[:, None] / S
        y = rois[:, 1:2] + y_hm * heights[:, None] / S
        return torch.stack([x, y, score], dim=2)


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """PyTorch's bicubic kernel (A = -0.75) for taps at -1, 0, 1, 2 around a fraction t: (..., 4)."""
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


def _bilinear_at(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """Sample (R, K, C, S, S) maps at fractional cell indices x, y (R, K) bilinearly (clamped at
    the border); returns the C channels as a tuple of (R, K) tensors."""
    S = maps.shape[-1]
    x = x.clamp(0, S - 1)
    y = y.clamp(0, S - 1)
    x0, y0 = x.floor().long().clamp(max=S - 2), y.floor().long().clamp(max=S - 2)
    ax, ay = x - x0, y - y0
    flat = maps.flatten(3)  # (R, K, C, S*S)

    def tap(yy, xx):
        return flat.gather(3, (yy * S + xx)[:, :, None, None].expand(-1, -1, flat.shape[2], 1)).squeeze(3)

    value = (tap(y0, x0) * ((1 - ay) * (1 - ax))[..., None] + tap(y0, x0 + 1) * ((1 - ay) * ax)[..., None]
             + tap(y0 + 1, x0) * (ay * (1 - ax))[..., None] + tap(y0 + 1, x0 + 1) * (ay * ax)[..., None])
    return value.unbind(dim=2)


@ROI_KEYPOINT_HEAD_REGISTRY.register()
class KeypointOffsetHead(KRCNNConvDeconvUpsampleHead):
    """detectron2's conv-deconv-upsample keypoint head with optional offsets, Gaussian heatmap
    targets and the balanced keypoint loss. With ``offset_on=False`` and the softmax loss its
    heatmaps equal detectron2's for the same weights and decode to detectron2's keypoints
    (vectorised; see ``RoIHeatmapCodec.decode`` for the one case where they can differ).
    """

    @configurable
    def __init__(self, input_shape, *, num_keypoints, conv_dims, offset_on: bool = True,
                 offset_loss_weight: float = 1.0, offset_radius: float = 2.0,
                 heatmap_loss: str = "softmax", gaussian_sigma: float = 2.0, heatmap_size: int = 0,
                 balanced_loss: bool = False, deform_convs=(), **kwargs):
        super().__init__(input_shape, num_keypoints=num_keypoints, conv_dims=conv_dims, **kwargs)
        bad = [i for i in deform_convs if not 1 <= i <= len(conv_dims)]
        if bad:
            raise ValueError(f"MODEL.ROI_KEYPOINT_HEAD.DEFORM_CONVS={tuple(deform_convs)}: the head has convs "
                             f"1..{len(conv_dims)} (MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS), not {bad}")
        for i in deform_convs:  # DCNv2 in place of conv_fcn<i>, same weights (DeformConv2d)
            setattr(self, f"conv_fcn{i}", DeformConv2d.from_conv(getattr(self, f"conv_fcn{i}")))
        deconv_size = 2 * input_shape.height  # the deconvolution doubles the pooled RoI grid
        heatmap_size = heatmap_size or 2 * deconv_size
        if heatmap_size % deconv_size:
            raise ValueError(
                f"MODEL.ROI_KEYPOINT_HEAD.HEATMAP_SIZE={heatmap_size} must be a multiple of twice "
                f"MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION ({input_shape.height}), i.e. of {deconv_size}")
        self.up_scale = heatmap_size // deconv_size
        self.codec = RoIHeatmapCodec(heatmap_size, heatmap_loss, gaussian_sigma, offset_radius)
        self.offset_on = offset_on
        self.offset_loss_weight = offset_loss_weight
        self.balanced_loss = balanced_loss
        if offset_on:
            in_channels = conv_dims[-1] if len(conv_dims) else input_shape.channels
            self.offset_lowres = ConvTranspose2d(in_channels, 2 * num_keypoints, 4, stride=2, padding=1)
            # Zero offsets at the start: a fresh head decodes as the plain one and the offsets
            # only ever add to it.
            nn.init.zeros_(self.offset_lowres.weight)
            nn.init.zeros_(self.offset_lowres.bias)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        head = cfg.MODEL.ROI_KEYPOINT_HEAD
        ret.update(offset_on=head.OFFSET_ON, offset_loss_weight=head.OFFSET_LOSS_WEIGHT,
                   offset_radius=head.OFFSET_RADIUS, heatmap_loss=head.HEATMAP_LOSS,
                   gaussian_sigma=head.GAUSSIAN_SIGMA, heatmap_size=head.HEATMAP_SIZE,
                   balanced_loss=head.BALANCED_LOSS, deform_convs=tuple(head.DEFORM_CONVS))
        return ret

    def layers(self, x):
        """RoI features -> heatmaps (R, K, S, S) and offsets (R, 2K, S, S) or None."""
        for name, layer in self.named_children():
            if name not in ("score_lowres", "offset_lowres"):
                x = layer(x)
        heatmaps = interpolate(self.score_lowres(x), scale_factor=self.up_scale, mode="bilinear", align_corners=False)
        offsets = None
        if self.offset_on:
            offsets = interpolate(self.offset_lowres(x), scale_factor=self.up_scale, mode="bilinear", align_corners=False)
        return heatmaps, offsets

    def forward(self, x, instances: List[Instances]):
        heatmaps, offsets = self.layers(x)
        if self.training:
            return self.losses(heatmaps, offsets, instances)
        self.inference(heatmaps, offsets, instances)
        return instances

    def losses(self, heatmaps, offsets, instances: List[Instances]) -> Dict[str, torch.Tensor]:
        num_images = len(instances)
        instances = [i for i in instances if len(i)]
        N, K, S, _ = heatmaps.shape
        zero = heatmaps.sum() * 0 + (offsets.sum() * 0 if offsets is not None else 0)
        if not instances:
            return self._loss_dict(zero, zero)
        rois = cat([i.proposal_boxes.tensor for i in instances], dim=0)
        keypoints = cat([i.gt_keypoints.tensor for i in instances], dim=0)
        targets = self.codec.encode(keypoints, rois)
        valid = targets["valid"]
        if not valid.any():
            return self._loss_dict(zero, zero)
        type_weight = keypoint_type_weights(valid) if self.balanced_loss else heatmaps.new_ones(K)
        weight = type_weight.to(heatmaps.dtype).expand(N, K)[valid]  # (V,)
        coords = targets["coords"][valid]

        if self.codec.heatmap_loss == "softmax":
            per_keypoint = F.cross_entropy(heatmaps.flatten(2)[valid], targets["index"][valid], reduction="none")
        else:
            per_keypoint = ((heatmaps[valid] - self.codec.gaussian_targets(coords)) ** 2).sum(dim=(1, 2))
        # detectron2's normalisation: by the visible keypoints, or by a constant per image.
        normalizer = valid.sum() if self.loss_normalizer == "visible" else num_images * self.loss_normalizer
        heatmap_loss = (per_keypoint * weight).sum() / normalizer

        offset_loss = zero
        if offsets is not None:
            target, near = self.codec.offset_targets(coords)
            pred = offsets.view(N, K, 2, S, S)[valid]
            per_cell = F.smooth_l1_loss(pred, target, reduction="none", beta=1.0).sum(dim=1)
            cell_weight = near.to(pred.dtype) * weight[:, None, None]
            offset_loss = (per_cell * cell_weight).sum() / near.sum().clamp(min=1)
        return self._loss_dict(heatmap_loss, offset_loss)

    def _loss_dict(self, heatmap_loss, offset_loss):
        out = {"loss_keypoint": heatmap_loss * self.loss_weight}
        if self.offset_on:
            out["loss_keypoint_offset"] = offset_loss * self.offset_loss_weight
        return out

    def inference(self, heatmaps, offsets, instances: List[Instances]) -> None:
        """Adds ``pred_keypoints`` (R, K, 3) and, as detectron2, ``pred_keypoint_heatmaps``; with
        offsets also ``pred_keypoint_offsets`` (R, 2K, S, S) (test-time augmentation averages them)."""
        boxes = cat([i.pred_boxes.tensor for i in instances], dim=0)
        keypoints = self.codec.decode(heatmaps, boxes, offsets)
        counts = [len(i) for i in instances]
        for i, (kp, hm) in enumerate(zip(keypoints.split(counts), heatmaps.split(counts))):
            instances[i].pred_keypoints = kp
            instances[i].pred_keypoint_heatmaps = hm
        if offsets is not None:
            for inst, off in zip(instances, offsets.split(counts)):
                inst.pred_keypoint_offsets = off
