"""KeypointOffsetHead: detectron2's Keypoint R-CNN head plus 2K sub-pixel offset maps.

detectron2's head predicts K spatial-softmax heatmaps on a 56x56 RoI grid and decodes them one RoI
at a time (bicubic upsampling to the box size, then argmax). At 56 cells per box side a cell is
about 2% of the person's height, and COCO's OKS for eyes and nose tolerates less than that. The
multitask report adds an x/y offset per keypoint and cell, regressed to the true location near the
keypoint; decoding takes the argmax cell and adds the offset read there.

Targets and decoding are ``multitask_pose.codecs.RoIHeatmapCodec`` (detectron2's spatial labels,
optional Gaussian targets, offset targets; vectorised over all RoIs and keypoints).
``KeypointOffsetHead`` is a subclass of detectron2's ``KRCNNConvDeconvUpsampleHead`` with the
same layers and parameter names (detectron2 checkpoints load; only ``offset_lowres.*`` is new) and
a parallel deconvolution for the offsets, zero-initialised so that a fresh head decodes exactly as
without offsets. Switched on by ``MODEL.ROI_KEYPOINT_HEAD.NAME: "KeypointOffsetHead"``; its keys
are ``MODEL.ROI_KEYPOINT_HEAD.{OFFSET_ON, OFFSET_LOSS_WEIGHT, OFFSET_RADIUS, HEATMAP_LOSS,
GAUSSIAN_SIGMA, HEATMAP_SIZE, BALANCED_LOSS, DEFORM_CONVS}`` (see ``multitask_pose/config.py``).
"""

from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.layers import ConvTranspose2d, cat, interpolate
from detectron2.modeling import ROI_KEYPOINT_HEAD_REGISTRY
from detectron2.modeling.roi_heads.keypoint_head import KRCNNConvDeconvUpsampleHead
from detectron2.structures import Instances
from torch import nn
from torch.nn import functional as F

from ..codecs import RoIHeatmapCodec
from ..layers import DeformConv2d
from ..shared import heatmap_squared_error, keypoint_type_weights

__all__ = ["KeypointOffsetHead"]


@ROI_KEYPOINT_HEAD_REGISTRY.register()
class KeypointOffsetHead(KRCNNConvDeconvUpsampleHead):
    """detectron2's conv-deconv-upsample keypoint head with optional offsets, Gaussian heatmap
    targets and the balanced keypoint loss. With ``offset_on=False`` and the softmax loss its
    heatmaps equal detectron2's for the same weights and decode to detectron2's keypoints
    (vectorised; see ``RoIHeatmapCodec.decode`` for the one case where they can differ).
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        num_keypoints,
        conv_dims,
        offset_on: bool = True,
        offset_loss_weight: float = 1.0,
        offset_radius: float = 2.0,
        heatmap_loss: str = "softmax",
        gaussian_sigma: float = 2.0,
        heatmap_size: int = 0,
        balanced_loss: bool = False,
        deform_convs=(),
        **kwargs,
    ):
        super().__init__(input_shape, num_keypoints=num_keypoints, conv_dims=conv_dims, **kwargs)
        bad = [i for i in deform_convs if not 1 <= i <= len(conv_dims)]
        if bad:
            raise ValueError(
                f"MODEL.ROI_KEYPOINT_HEAD.DEFORM_CONVS={tuple(deform_convs)}: the head has convs "
                f"1..{len(conv_dims)} (MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS), not {bad}"
            )
        for i in deform_convs:  # DCNv2 in place of conv_fcn<i>, same weights (DeformConv2d)
            setattr(self, f"conv_fcn{i}", DeformConv2d.from_conv(getattr(self, f"conv_fcn{i}")))
        deconv_size = 2 * input_shape.height  # the deconvolution doubles the pooled RoI grid
        heatmap_size = heatmap_size or 2 * deconv_size
        if heatmap_size % deconv_size:
            raise ValueError(
                f"MODEL.ROI_KEYPOINT_HEAD.HEATMAP_SIZE={heatmap_size} must be a multiple of twice "
                f"MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION ({input_shape.height}), "
                f"i.e. of {deconv_size}"
            )
        self.up_scale = heatmap_size // deconv_size
        self.codec = RoIHeatmapCodec(heatmap_size, heatmap_loss, gaussian_sigma, offset_radius)
        self.offset_on = offset_on
        self.offset_loss_weight = offset_loss_weight
        self.balanced_loss = balanced_loss
        if offset_on:
            in_channels = conv_dims[-1] if len(conv_dims) else input_shape.channels
            self.offset_lowres = ConvTranspose2d(
                in_channels, 2 * num_keypoints, 4, stride=2, padding=1
            )
            # Zero offsets at the start: a fresh head decodes as the plain one and the offsets
            # only ever add to it.
            nn.init.zeros_(self.offset_lowres.weight)
            nn.init.zeros_(self.offset_lowres.bias)

    @classmethod
    def from_config(cls, cfg, input_shape):
        """
        Args:
            cfg: the config: detectron2's MODEL.ROI_KEYPOINT_HEAD keys and this head's
                (``OFFSET_ON``, ``OFFSET_LOSS_WEIGHT``, ``OFFSET_RADIUS``, ``HEATMAP_LOSS``,
                ``GAUSSIAN_SIGMA``, ``HEATMAP_SIZE``, ``BALANCED_LOSS``, ``DEFORM_CONVS``).
            input_shape: the pooled RoI features' ShapeSpec.

        Returns:
            the constructor's keyword arguments.
        """
        ret = super().from_config(cfg, input_shape)
        head = cfg.MODEL.ROI_KEYPOINT_HEAD
        ret.update(
            offset_on=head.OFFSET_ON,
            offset_loss_weight=head.OFFSET_LOSS_WEIGHT,
            offset_radius=head.OFFSET_RADIUS,
            heatmap_loss=head.HEATMAP_LOSS,
            gaussian_sigma=head.GAUSSIAN_SIGMA,
            heatmap_size=head.HEATMAP_SIZE,
            balanced_loss=head.BALANCED_LOSS,
            deform_convs=tuple(head.DEFORM_CONVS),
        )
        return ret

    @classmethod
    def keypoint_score_scale_from_config(cls, cfg) -> str:
        """The scale of the keypoint scores this head decodes (its codec's, by HEATMAP_LOSS)."""
        return RoIHeatmapCodec.SCORE_SCALE_OF_LOSS[cfg.MODEL.ROI_KEYPOINT_HEAD.HEATMAP_LOSS]

    def layers(self, x):
        """RoI features -> heatmaps (R, K, S, S) and offsets (R, 2K, S, S) or None."""
        for name, layer in self.named_children():
            if name not in ("score_lowres", "offset_lowres"):
                x = layer(x)
        heatmaps = interpolate(
            self.score_lowres(x), scale_factor=self.up_scale, mode="bilinear", align_corners=False
        )
        offsets = None
        if self.offset_on:
            offsets = interpolate(
                self.offset_lowres(x),
                scale_factor=self.up_scale,
                mode="bilinear",
                align_corners=False,
            )
        return heatmaps, offsets

    def forward(self, x, instances: List[Instances]):
        """
        Args:
            x: (R, C, P, P) pooled features of the RoIs of ``instances``, in order.
            instances: per image, the sampled proposals (training, with ``gt_keypoints``) or the
                detections (inference, with ``pred_boxes``).

        Returns:
            in training, ``loss_keypoint`` (and ``loss_keypoint_offset`` with offsets); in
            inference, ``instances`` with ``pred_keypoints`` (R, K, 3) and the maps added.
        """
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
            per_keypoint = F.cross_entropy(
                heatmaps.flatten(2)[valid], targets["index"][valid], reduction="none"
            )
        else:
            per_keypoint = heatmap_squared_error(
                heatmaps[valid], self.codec.gaussian_targets(coords)
            ).sum(dim=(1, 2))
        # detectron2's normalisation: by the visible keypoints, or by a constant per image.
        normalizer = (
            valid.sum() if self.loss_normalizer == "visible" else num_images * self.loss_normalizer
        )
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
        offsets also ``pred_keypoint_offsets`` (R, 2K, S, S) (test-time augmentation averages
        them)."""
        boxes = cat([i.pred_boxes.tensor for i in instances], dim=0)
        xy, scores = self.codec.decode(heatmaps, boxes, offsets)
        keypoints = torch.cat([xy, scores[..., None]], dim=2)
        # (shape[0], not len(), which a trace would freeze to the traced image's count)
        counts = [i.pred_boxes.tensor.shape[0] for i in instances]
        for i, (kp, hm) in enumerate(zip(keypoints.split(counts), heatmaps.split(counts))):
            instances[i].pred_keypoints = kp
            instances[i].pred_keypoint_heatmaps = hm
        if offsets is not None:
            for inst, off in zip(instances, offsets.split(counts)):
                inst.pred_keypoint_offsets = off
