"""Top-down heads: what turns a pose network's prediction into keypoints, in one object (the design
of MMPose 1.x's heads, ``mmpose/models/heads``).

A head owns

- its ``codec`` (``multitask_pose.codecs``): the training mapper encodes each person with it and
  the head decodes with it, so targets and decoding cannot drift apart;
- ``forward(maps)``: the pose network's (N, K, h, w) output -> the head's outputs (the maps
  themselves for a heatmap head; a learned layer may follow, e.g. SimCC's x / y classifiers);
- ``loss(outputs, targets)``: the loss ``MODEL.TOPDOWN.LOSS_NAME`` names, which must read targets
  the codec makes (checked when the head is built);
- ``decode(outputs, mirrored=None)``: crop-pixel keypoints (n, K, 2) and scores (n, K), with the
  flip test merged the head's way when the outputs of the mirrored crops are given.

The meta-architecture (``TopDownPoseEstimator``) calls only these, so a new output family is one
codec file (``multitask_pose/codecs``) plus one head registered in ``TOPDOWN_HEAD_REGISTRY``
(``MODEL.TOPDOWN.HEAD.NAME``), e.g. ``simcc_head.py``.
"""

from typing import Sequence, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.utils.registry import Registry
from torch import nn

from multitask_pose.codecs import GaussianHeatmapCodec, KeypointCodec
from multitask_pose.data.keypoints import keypoint_spec_of
from multitask_pose.shared import flip_heatmaps

from ..codec import build_topdown_codec
from .losses import build_topdown_loss

__all__ = ["HeatmapHead", "TOPDOWN_HEAD_REGISTRY", "TopDownHead", "build_topdown_head"]

TOPDOWN_HEAD_REGISTRY = Registry("TOPDOWN_HEAD")
TOPDOWN_HEAD_REGISTRY.__doc__ = """
Top-down heads (subclasses of ``TopDownHead``), selected by MODEL.TOPDOWN.HEAD.NAME and built
with ``from_config(cfg, flip_indices=...)``.
"""


class TopDownHead(nn.Module):
    """Base of the top-down heads (module docstring). A subclass sets ``codec_types``, the codec
    classes it decodes, and implements ``decode``; ``forward`` defaults to the identity."""

    codec_types: Tuple[type, ...] = ()

    def __init__(self, *, codec: KeypointCodec, loss: nn.Module, flip_indices: Sequence[int]):
        """
        Args:
            codec: the codec the mapper encodes targets with (one of ``codec_types``).
            loss: called as ``loss(outputs, targets)``; its ``target_keys`` (if it states them)
                must all be made by the codec.
            flip_indices: (K,) the mirror keypoint of each keypoint (the dataset's flip map).
        """
        super().__init__()
        name = type(self).__name__
        if self.codec_types and not isinstance(codec, self.codec_types):
            raise ValueError(
                f"MODEL.TOPDOWN.HEAD.NAME {name!r} decodes"
                f" {' or '.join(c.__name__ for c in self.codec_types)} outputs, but"
                f" MODEL.TOPDOWN.CODEC.NAME is {type(codec).__name__!r}"
            )
        made = set(getattr(codec, "target_keys", ()))
        needed = set(getattr(loss, "target_keys", ()))
        if made and needed - made:
            raise ValueError(
                f"MODEL.TOPDOWN.LOSS_NAME {type(loss).__name__!r} reads the targets"
                f" {sorted(needed - made)}, which {type(codec).__name__} does not make (it makes"
                f" {sorted(made)}): choose the loss of head {name!r}"
            )
        self.codec = codec
        self.loss_fn = loss
        self.register_buffer(
            "flip_indices", torch.as_tensor(np.asarray(flip_indices), dtype=torch.long), False
        )

    @classmethod
    def from_config(cls, cfg, flip_indices=None):
        """The codec and loss of the config; the flip map of its datasets unless given."""
        if flip_indices is None:
            names = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)[:1]
            if not names:
                raise ValueError(
                    f"{cls.__name__} needs DATASETS.TEST or DATASETS.TRAIN for the flip map"
                )
            flip_indices = keypoint_spec_of(names[0]).flip_indices
        return {
            "codec": build_topdown_codec(cfg),
            "loss": build_topdown_loss(cfg),
            "flip_indices": flip_indices,
        }

    def forward(self, maps: torch.Tensor):
        """The pose network's (N, K, h, w) output -> this head's outputs (default: the maps)."""
        return maps

    def loss(self, outputs, targets) -> torch.Tensor:
        """The scalar loss of ``forward``'s outputs against the codec's targets (a dict of
        stacked tensors)."""
        return self.loss_fn(outputs, targets)

    def decode(self, outputs, mirrored=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Crop-pixel coordinates (n, K, 2) and scores (n, K) of n crops from ``forward``'s
        outputs, merged with ``mirrored``, the outputs of the n mirrored crops (the flip test),
        when given."""
        raise NotImplementedError


@TOPDOWN_HEAD_REGISTRY.register()
class HeatmapHead(TopDownHead):
    """Heatmaps decoded by their codec; the flip test averages the maps with the mirrored crops'
    maps, mirrored back (channels to their mirror keypoints, columns reversed) and shifted one
    column right when ``shift_heatmap`` (the official HRNet / SimpleBaseline test)."""

    codec_types = (GaussianHeatmapCodec,)

    @configurable
    def __init__(self, *, shift_heatmap: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.shift_heatmap = shift_heatmap

    @classmethod
    def from_config(cls, cfg, flip_indices=None):
        return {
            **super().from_config(cfg, flip_indices),
            "shift_heatmap": cfg.TEST.TOPDOWN.SHIFT_HEATMAP,
        }

    def decode(self, outputs, mirrored=None):
        heatmaps = outputs
        if mirrored is not None:
            flip = self.flip_indices.cpu().numpy()
            heatmaps = 0.5 * (heatmaps + flip_heatmaps(mirrored, flip, self.shift_heatmap))
        return self.codec.decode(heatmaps)


def build_topdown_head(cfg, flip_indices=None) -> TopDownHead:
    """The head ``MODEL.TOPDOWN.HEAD.NAME`` names, with the config's codec and loss."""
    return TOPDOWN_HEAD_REGISTRY.get(cfg.MODEL.TOPDOWN.HEAD.NAME)(cfg, flip_indices=flip_indices)

