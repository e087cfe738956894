"""PoseFix-style refinement: a model-agnostic network that takes an image crop and an input pose
(another model's) and outputs corrected heatmaps.

- :class:`PoseCue` (``MODEL.TOPDOWN.CUE "PoseCue"``): the input pose rendered as K cue channels,
  one Gaussian per keypoint (``MODEL.TOPDOWN.HINT.SIGMA`` crop pixels; a missing or low-scored
  keypoint leaves its channel empty). In training the pose is the person's ground truth with
  synthesised errors (:func:`synthesize_pose_errors`, rates ``MODEL.TOPDOWN.POSEFIX.*``); at
  inference it is the box's keypoints from a keypoint results file (``TEST.TOPDOWN.HINT.SOURCE
  "keypoints"``), so the refiner post-processes any model's results (``posefix_refine.py``).
- :class:`PoseFixHRNet` (``MODEL.TOPDOWN.POSE_NET "PoseFixHRNet"``): HRNet whose first conv takes
  the 3 image channels and the K pose channels (``MODEL.HRNET.*``).

The training poses: each labelled keypoint of the target person becomes, with the configured
rates (the error taxonomy of ``multitask_pose.evaluation.error_analysis``, Ronchi & Perona),

- good: on its own joint, at a keypoint similarity ks drawn from [0.9, 1);
- jitter: on its own joint at ks in [0.55, 0.8] (the taxonomy's jitter is [0.5, 0.85));
- inversion: on the same person's mirror joint (left for right), at ks in [0.9, 1) of it;
- swap: on the same joint of another person of the image, at ks in [0.9, 1) of it;
- miss: at a point whose ks to every labelled joint of everyone (plain and mirrored) is below
  0.4 (the taxonomy's miss: below 0.5).

Distances come from ks = exp(-d^2 / (2 area (2 sigma_k)^2)), the taxonomy's own similarity, so
``classify_keypoints`` labels each synthesised keypoint with the type drawn (tested). Where a type
cannot be made (an inversion of the nose, a swap in a one-person image, a mirror or other joint
not labelled) the keypoint becomes jitter instead. A drawn keypoint that the classifier labels
otherwise (a jittered eye nearer the other eye, a miss with no free place) is drawn again, up to
10 times, then becomes jitter; the types returned are what was made. Unlabelled ground-truth
keypoints are NaN.
"""

import math
from typing import Dict, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from torch import nn

from multitask_pose.codecs.utils import gaussian_heatmaps
from multitask_pose.data.keypoints import keypoint_spec_of
from multitask_pose.evaluation.error_analysis import (
    ERROR_TYPES,
    GOOD,
    INVERSION,
    JITTER,
    MISS,
    SWAP,
    UNLABELLED,
    classify_keypoints,
)

from .affine import apply_affine
from .data.cues import CUE_REGISTRY
from .modeling.build import POSE_NET_REGISTRY
from .modeling.hrnet import PoseHighResolutionNet

__all__ = ["PoseCue", "PoseFixHRNet", "synthesize_pose_errors"]

_KS_RANGES = {GOOD: (0.9, 1.0), JITTER: (0.55, 0.8), INVERSION: (0.9, 1.0), SWAP: (0.9, 1.0)}
_MISS_KS = 0.4


def _offsets(ks_lo, ks_hi, var, area, rng, shape):
    """Random displacements (shape + (2,)) at a ks drawn uniformly in [ks_lo, ks_hi)."""
    ks = rng.uniform(ks_lo, ks_hi, shape)
    d = np.sqrt(-2.0 * np.log(ks) * var * area)
    angle = rng.uniform(0, 2 * math.pi, shape)
    return np.stack([d * np.cos(angle), d * np.sin(angle)], -1)


def synthesize_pose_errors(
    gt_keypoints, gt_areas, sigmas, flip_indices, rates: Dict[str, float], rng
) -> Tuple[np.ndarray, np.ndarray]:
    """Erroneous versions of every person of one image (module docstring).

    Args:
        gt_keypoints: (G, K, 3) the image's annotated persons (x, y, v).
        gt_areas: (G,) their areas (COCO ``area``, the OKS scale).
        sigmas: (K,) OKS sigmas; flip_indices: (K,) mirror keypoint of each keypoint.
        rates: probability of "jitter", "inversion", "swap", "miss" per labelled keypoint (the
            rest is "good"); unknown names or a sum above 1 are errors.
        rng: a numpy Generator.

    Returns:
        (G, K, 2) the input poses; (G, K) the type made per keypoint (ERROR_TYPES index, or
        UNLABELLED where the ground truth is not labelled).
    """
    unknown = set(rates) - set(ERROR_TYPES[1:])
    if unknown or sum(rates.values()) > 1 + 1e-9 or min(rates.values(), default=0) < 0:
        raise ValueError(
            f"error rates {rates}: non-negative rates of {ERROR_TYPES[1:]} summing to at most 1"
        )
    gt = np.asarray(gt_keypoints, dtype=np.float64)
    g, k = gt.shape[:2]
    areas = np.asarray(gt_areas, dtype=np.float64)[:, None]  # (G, 1)
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2  # (K,)
    flip = np.asarray(flip_indices, dtype=np.int64)
    labelled = gt[..., 2] > 0
    probs = [1 - sum(rates.values())] + [rates.get(t, 0.0) for t in ERROR_TYPES[1:]]
    types = rng.choice(len(ERROR_TYPES), size=(g, k), p=np.asarray(probs) / sum(probs))

    # Feasibility: a distinct, labelled mirror joint; another person with this joint labelled.
    can_invert = (flip != np.arange(k))[None] & labelled[:, flip]
    others = labelled.sum(0, keepdims=True) - labelled  # (G, K) other persons labelling joint k
    types = np.where((types == INVERSION) & ~can_invert, JITTER, types)
    types = np.where((types == SWAP) & (others == 0), JITTER, types)

    candidates = np.concatenate([gt, gt[:, flip]])  # (2G, K, 3): plain and mirrored
    cand_areas = np.concatenate([areas[:, 0], areas[:, 0]])
    score = rng.random((g, g, k)) * labelled[None, :, :]  # (target, other, K)
    score[np.arange(g), np.arange(g)] = -1
    other = score.argmax(1)  # (G, K): a random other person with joint k labelled

    def draw(kind):
        """(G, K, 2) fresh positions of error type ``kind`` for every keypoint."""
        if kind == MISS:  # anywhere within about a body of the person, away from every joint
            out = np.full((g, k, 2), np.nan)
            for _ in range(20):
                trial = gt[..., :2] + rng.uniform(-1.5, 1.5, (g, k, 2)) * np.sqrt(areas)[..., None]
                d2 = ((trial[:, None] - candidates[None, ..., :2]) ** 2).sum(-1)  # (G, 2G, K)
                ks = np.exp(-d2 / (2 * var[None, None] * cand_areas[None, :, None]))
                free = np.where(candidates[None, ..., 2] > 0, ks, 0.0).max(1) < _MISS_KS
                out = np.where(free[..., None] & np.isnan(out), trial, out)
                if not np.isnan(out).any():
                    break
            return out  # NaN where no free place was found
        lo, hi = _KS_RANGES[kind]
        if kind == INVERSION:
            return gt[:, flip, :2] + _offsets(lo, hi, var, areas, rng, (g, k))
        if kind == SWAP:
            return gt[other, np.arange(k)[None], :2] + _offsets(
                lo, hi, var, areas[other, 0], rng, (g, k)
            )
        return gt[..., :2] + _offsets(lo, hi, var, areas, rng, (g, k))

    # Draw, then redraw what the taxonomy's classifier labels otherwise (a jittered eye closer to
    # the other eye, a swap onto a joint nearer the person's own): up to 10 rounds.
    xy = np.full((g, k, 2), np.nan)
    todo = labelled.copy()
    for _ in range(10):
        for t in np.unique(types[todo]):
            mask = todo & (types == t)
            xy = np.where(mask[..., None], draw(int(t)), xy)
        made = classify_keypoints(np.nan_to_num(xy), gt, areas[:, 0], np.arange(g), sigmas, flip)
        todo = labelled & ((made.labels != types) | np.isnan(xy).any(-1))
        if not todo.any():
            break
    # What could not be made in 10 rounds becomes a jitter (drawn until the classifier agrees).
    for _ in range(10):
        if not todo.any():
            break
        types = np.where(todo, JITTER, types)
        xy = np.where(todo[..., None], draw(JITTER), xy)
        made = classify_keypoints(xy, gt, areas[:, 0], np.arange(g), sigmas, flip)
        todo = labelled & (made.labels != types)
    types = np.where(todo, made.labels, types)  # the rare rest: what the classifier says
    types = np.where(labelled, types, UNLABELLED)
    xy = np.where(labelled[..., None], xy, np.nan)
    return xy, types.astype(np.int8)


@CUE_REGISTRY.register()
class PoseCue:
    """An input pose as K cue channels, one Gaussian per keypoint (module docstring). Hints are
    the whole pose, (N, K, 3) in keypoint order; a NaN row (missing) leaves its channel zero."""

    uses_hints = True
    expands = False  # the K hints of a box are one crop's pose
    keypoint_channels = True  # channel k is keypoint k: a mirrored crop swaps them (flip test)

    @configurable
    def __init__(self, *, num_keypoints, sigma, rates, oks_sigmas, flip_indices):
        """
        Args:
            num_keypoints: K, the channels.
            sigma: Gaussian standard deviation in crop pixels (MODEL.TOPDOWN.HINT.SIGMA).
            rates: training error rates, {"jitter", "inversion", "swap", "miss"}.
            oks_sigmas, flip_indices: the dataset's, for the error synthesis.
        """
        self.channels = int(num_keypoints)
        self.sigma = float(sigma)
        self.rates = dict(rates)
        self.oks_sigmas = np.asarray(oks_sigmas, dtype=np.float64)
        self.flip_indices = np.asarray(flip_indices)
        if len(self.oks_sigmas) != self.channels:
            raise ValueError(
                f"PoseCue: {len(self.oks_sigmas)} OKS sigmas for {self.channels} keypoints"
            )
        synthesize_pose_errors(np.zeros((1, self.channels, 3)), [1.0], self.oks_sigmas,
                               self.flip_indices, self.rates, np.random.default_rng(0))  # fmt: skip

    @classmethod
    def from_config(cls, cfg):
        names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
        if not names:
            raise ValueError("PoseCue needs DATASETS.TRAIN or TEST for the OKS sigmas and flip map")
        spec = keypoint_spec_of(names[0])
        r = cfg.MODEL.TOPDOWN.POSEFIX
        return dict(
            num_keypoints=cfg.MODEL.TOPDOWN.NUM_KEYPOINTS,
            sigma=cfg.MODEL.TOPDOWN.HINT.SIGMA,
            rates={"jitter": r.JITTER, "inversion": r.INVERSION, "swap": r.SWAP, "miss": r.MISS},
            oks_sigmas=spec.oks_sigmas,
            flip_indices=spec.flip_indices,
        )

    def training_hints(self, person: Dict) -> np.ndarray:
        """The person's ground truth with synthesised errors, (K, 3): x, y, 1 (NaN unlabelled).
        ``person``: "keypoints" (K, 3), "area", "others" (M, K, 3) and "other_areas" (M,), all
        in the crop affine's frame; drawn with ``np.random`` (seeded per sample in training)."""
        gt = np.concatenate([person["keypoints"][None], person["others"]])
        areas = np.r_[person["area"], person["other_areas"]]
        rng = np.random.default_rng(np.random.randint(2**31))
        xy, _ = synthesize_pose_errors(gt, areas, self.oks_sigmas, self.flip_indices,
                                       self.rates, rng)  # fmt: skip
        out = np.concatenate([xy[0], np.ones((len(xy[0]), 1))], 1)
        out[~np.isfinite(xy[0]).all(1)] = np.nan
        return out

    def __call__(self, boxes, affine, input_size, hints=None) -> torch.Tensor:
        n = len(np.asarray(boxes).reshape(-1, 4))
        if hints is None:
            raise ValueError("PoseCue renders an input pose: it needs hints (N, K, 3)")
        hints = np.asarray(hints, dtype=np.float64).reshape(n, -1, 3)
        if hints.shape[1] != self.channels:
            raise ValueError(
                f"PoseCue takes {self.channels} keypoints per box, got {hints.shape[1]}"
            )
        present = np.isfinite(hints[..., :2]).all(-1)
        uv = apply_affine(np.nan_to_num(hints[..., :2]), np.asarray(affine))  # (N, K, 2)
        maps = gaussian_heatmaps(torch.as_tensor(uv, dtype=torch.float32), input_size, self.sigma)
        return maps * torch.as_tensor(present, dtype=torch.float32)[..., None, None]


@POSE_NET_REGISTRY.register()
class PoseFixHRNet(PoseHighResolutionNet):
    """HRNet taking the image and a K-channel input pose (:class:`PoseCue`) at its first conv;
    every other layer keeps HRNet's name and shape, so an HRNet checkpoint loads into all of them
    (``conv1`` is reported as of another shape)."""

    @configurable
    def __init__(self, **hrnet_kwargs):
        super().__init__(**hrnet_kwargs)
        self.cue_channels = int(hrnet_kwargs.get("num_keypoints", 17))
        self.conv1 = nn.Conv2d(3 + self.cue_channels, 64, 3, 2, 1, bias=False)
        if hrnet_kwargs.get("init", "normal") == "kaiming":
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        else:
            nn.init.normal_(self.conv1.weight, std=0.001)

    def forward(self, x: torch.Tensor, cues=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (N, 3, H, W) normalised crops.
            cues: (N, K, H, W) the input pose (PoseCue).

        Returns:
            {"heatmap": (N, K, H / 4, W / 4)}, the corrected pose.
        """
        if cues is None or cues.shape[1] != self.cue_channels:
            raise ValueError(
                f"PoseFixHRNet needs the input pose as {self.cue_channels} cue channels"
                " (MODEL.TOPDOWN.CUE 'PoseCue')"
            )
        return super().forward(torch.cat([x, cues.to(x.dtype)], 1))
