"""The contract between a top-down pose network and ``TopDownPoseEstimator``.

A pose network subclasses ``TopDownPoseNet``, registers in ``POSE_NET_REGISTRY`` and declares
what the meta-architecture needs to know; the meta-architecture reads only these, so a new network
(several supervised outputs, auxiliary outputs, extra input channels) is one module plus its keys:

- ``cue_channels``: channels appended to the image crop (``MODEL.TOPDOWN.CUE`` makes them, from
  the person box, identically in the training mapper and at inference); 0 for image-only nets.
- ``heatmap_stride``: crop size / heatmap size; ``size_divisibility``: crop sides must divide by it.
- ``prediction``: the name of the output decoded at inference (and averaged with the flip test).
- ``supervised_outputs()``: output name -> loss weight; the meta-architecture applies its loss
  (``MODEL.TOPDOWN.LOSS_NAME``) to each against the codec's targets, as ``loss_<name>``.
- ``forward(images, cues=None)`` returns a dict of (N, K, h, w) maps by name.
"""

from typing import Dict, Optional

import torch
from torch import nn

__all__ = ["TopDownPoseNet"]


class TopDownPoseNet(nn.Module):
    """Base class of the top-down pose networks (see the module docstring)."""

    cue_channels: int = 0
    heatmap_stride: int = 4
    size_divisibility: int = 1
    prediction: str = "heatmap"

    def supervised_outputs(self) -> Dict[str, float]:
        """Output name -> weight of its loss. Default: only the prediction, weight 1."""
        return {self.prediction: 1.0}

    def forward(
        self, images: torch.Tensor, cues: Optional[torch.Tensor] = None
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            images: (N, 3, H, W) normalised crops.
            cues: (N, cue_channels, H, W) or None when ``cue_channels`` is 0.

        Returns:
            name -> (N, K, H / heatmap_stride, W / heatmap_stride) maps; holds ``prediction`` and
            every name of ``supervised_outputs()``.
        """
        raise NotImplementedError
