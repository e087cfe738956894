"""Instance cues: extra input channels of a pose network that say which person a crop is about.

A cue is computed from the person's box, the crop affine and, for the cues that take them, hint
points (e.g. a joint of the person), by the same function in the training mapper (the augmented
box and crop, hints drawn from the person's labels by :meth:`training_hints`) and at inference
(the detected box, hints from a source of ``pose_topdown/data/hints.py``), so the two cannot differ.
``MODEL.TOPDOWN.CUE`` names a registered cue ("" for none); the pose network's ``cue_channels``
must equal the cue's ``channels`` (checked when the model is built).

A cue is a class built from the config with

- ``channels``;
- ``uses_hints``: False (the box is enough) or True;
- ``__call__(boxes, affine, input_size, hints=None)``: boxes (N, 4) XYXY in the frame the crop
  affine maps from, affines (N, 2, 3) image -> crop, input_size (W, H), hints (N, M, 3) points
  (x, y, score) in that same frame, a NaN row for "no hint"; returns (N, channels, H, W) float32;
- ``training_hints(person)`` (with ``uses_hints``): the hints of one training person, drawn with
  ``np.random`` (the training loader seeds it per sample) from its labels, all in the frame of
  the crop affine: "keypoints" (K, 3), "box" XYXY, "area" (the OKS scale), "others" (M, K, 3),
  "other_areas" (M,) and "other_ious" (M, box IoU) of the image's other annotated persons, and
  the crop's "affine" (2, 3) and "input_size" (W, H);
- ``expands`` (with ``uses_hints``): True, each hint of a box makes its own crop
  (``JointHintCue``); False, a box's hints are one crop's input (``PoseCue``,
  pose_topdown/posefix.py);
- ``keypoint_channels`` (optional, False by default): channel k belongs to keypoint k, so the
  flip test's mirrored crop also swaps the channels by the flip map (``PoseCue``);
- ``estimate_of(person)`` (optional): another model's (K, 3) pose of a training person or None;
  the training mapper moves it into the crop's frame (flipped with the crop) as the context's
  "estimate" (``PoseCue``: unlabelled joints drawn around it).
"""

import logging
from typing import Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.utils.registry import Registry

from multitask_pose.codecs.utils import gaussian_heatmaps

from ..affine import apply_affine, invert_affine

logger = logging.getLogger(__name__)

__all__ = ["BoxCue", "CUE_REGISTRY", "JointHintCue", "build_cue", "crop_sample_points"]

CUE_REGISTRY = Registry("TOPDOWN_CUE")
CUE_REGISTRY.__doc__ = "Instance cues of the top-down stage, selected by MODEL.TOPDOWN.CUE."


def crop_sample_points(affine, input_size: Sequence[int], device=None) -> torch.Tensor:
    """Image coordinates (N, H, W, 2) of every crop pixel of (N, 2, 3) image -> crop affines."""
    w, h = int(input_size[0]), int(input_size[1])
    inv = torch.as_tensor(invert_affine(np.asarray(affine)), dtype=torch.float32, device=device)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=device),
        torch.arange(w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    pix = torch.stack([xs, ys, torch.ones_like(xs)], -1)  # (h, w, 3)
    return torch.einsum("nij,hwj->nhwi", inv, pix)


@CUE_REGISTRY.register()
class BoxCue:
    """One channel: 1 on the crop pixels that map inside the person's box, 0 elsewhere."""

    channels = 1
    uses_hints = False

    @configurable
    def __init__(self):
        pass

    @classmethod
    def from_config(cls, cfg):
        return {}

    def __call__(self, boxes, affine, input_size, hints=None) -> torch.Tensor:
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        src = crop_sample_points(affine, input_size)
        b = boxes[:, None, None, :]
        inside = (
            (src[..., 0] >= b[..., 0])
            & (src[..., 0] <= b[..., 2])
            & (src[..., 1] >= b[..., 1])
            & (src[..., 1] <= b[..., 3])
        )
        return inside[:, None].float()


@CUE_REGISTRY.register()
class JointHintCue:
    """HintPose's instance cue: one channel holding a Gaussian (``MODEL.TOPDOWN.HINT.SIGMA`` crop
    pixels) peaked on one point of the target person, a joint. Each hint of a box makes its own
    crop (``expands``): several hints, several poses, which OKS-NMS deduplicates.

    Training: a random labelled joint of the person, moved by Gaussian noise of standard
    deviation ``MODEL.TOPDOWN.HINT.TRAIN_JITTER`` x the person's scale (the square root of the
    box area). Inference hints come from ``TEST.TOPDOWN.HINT.SOURCE``; ``hints=None`` cues every
    box at its centre (SOURCE "center"), and a box the source gave no hint (a NaN row) gets its
    centre too, which the log says once.
    """

    channels = 1
    uses_hints = True
    expands = True

    @configurable
    def __init__(self, *, sigma: float = 6.0, train_jitter: float = 0.05):
        if sigma <= 0:
            raise ValueError(f"MODEL.TOPDOWN.HINT.SIGMA must be > 0, got {sigma}")
        self.sigma, self.train_jitter = float(sigma), float(train_jitter)
        self.fell_back = 0  # boxes that used their centre for want of a hint

    @classmethod
    def from_config(cls, cfg):
        return {"sigma": cfg.MODEL.TOPDOWN.HINT.SIGMA,
                "train_jitter": cfg.MODEL.TOPDOWN.HINT.TRAIN_JITTER}  # fmt: skip

    def training_hints(self, person) -> np.ndarray:
        kp = np.asarray(person["keypoints"], dtype=np.float64)
        labelled = np.flatnonzero(kp[:, 2] > 0)
        if len(labelled) == 0:
            return np.full((1, 3), np.nan)
        x0, y0, x1, y1 = np.asarray(person["box"], dtype=np.float64)
        scale = np.sqrt(max(x1 - x0, 1.0) * max(y1 - y0, 1.0))
        xy = kp[np.random.choice(labelled), :2] + np.random.randn(2) * self.train_jitter * scale
        return np.array([[xy[0], xy[1], 1.0]])

    def __call__(self, boxes, affine, input_size, hints=None) -> torch.Tensor:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        centres = np.stack([boxes[:, [0, 2]].mean(1), boxes[:, [1, 3]].mean(1)], 1)
        points, missing = centres, np.zeros(len(boxes), dtype=bool)  # None: centres, as asked
        if hints is not None:
            first = np.asarray(hints, dtype=np.float64).reshape(len(boxes), -1, 3)[:, 0, :2]
            missing = ~np.isfinite(first).all(1)
            points = np.where(missing[:, None], centres, first)
        if missing.any():
            if not self.fell_back:
                logger.warning("JointHintCue: a box came without a hint (the hint source gave"
                               " none for it), so its crop is cued at the box centre; said once,"
                               " the cue's fell_back counts them")  # fmt: skip
            self.fell_back += int(missing.sum())
        uv = apply_affine(points[:, None, :], np.asarray(affine))  # (N, 1, 2) crop pixels
        return gaussian_heatmaps(torch.as_tensor(uv, dtype=torch.float32), input_size, self.sigma)


def build_cue(cfg):
    """The cue ``MODEL.TOPDOWN.CUE`` names, built from the config, or None for ""."""
    name = cfg.MODEL.TOPDOWN.CUE
    return CUE_REGISTRY.get(name)(cfg) if name else None
