"""Instance cues: extra input channels of a pose network that say which person a crop is about.

A cue is computed from the person's box and the crop affine, by the same function in the training
mapper (the augmented box and crop) and at inference (the detected box), so the two cannot differ.
``MODEL.TOPDOWN.CUE`` names a registered cue ("" for none); the pose network's ``cue_channels``
must equal the cue's ``channels`` (checked when the model is built).

A cue is a class with ``channels`` and ``__call__(boxes, affine, input_size)``: boxes (N, 4) XYXY
in the frame the crop affine maps from, affines (N, 2, 3) image -> crop, input_size (W, H);
returns (N, channels, H, W) float32.
"""
from typing import Sequence

import numpy as np
import torch
from detectron2.utils.registry import Registry

from ..affine import invert_affine

__all__ = ["BoxCue", "CUE_REGISTRY", "build_cue", "crop_sample_points"]

CUE_REGISTRY = Registry("TOPDOWN_CUE")
CUE_REGISTRY.__doc__ = "Instance cues of the top-down stage, selected by MODEL.TOPDOWN.CUE."


def crop_sample_points(affine, input_size: Sequence[int], device=None) -> torch.Tensor:
    """Image coordinates (N, H, W, 2) of every crop pixel of (N, 2, 3) image -> crop affines."""
    w, h = int(input_size[0]), int(input_size[1])
    inv = torch.as_tensor(invert_affine(np.asarray(affine)), dtype=torch.float32, device=device)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], -1)  # (h, w, 3)
    return torch.einsum("nij,hwj->nhwi", inv, pix)


@CUE_REGISTRY.register()
class BoxCue:
    """One channel: 1 on the crop pixels that map inside the person's box, 0 elsewhere."""

    channels = 1

    def __call__(self, boxes, affine, input_size) -> torch.Tensor:
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        src = crop_sample_points(affine, input_size)
        b = boxes[:, None, None, :]
        inside = (src[..., 0] >= b[..., 0]) & (src[..., 0] <= b[..., 2]) & \
                 (src[..., 1] >= b[..., 1]) & (src[..., 1] <= b[..., 3])
        return inside[:, None].float()


def build_cue(name: str):
    """The registered cue ``name``, or None for ""."""
    return CUE_REGISTRY.get(name)() if name else None
