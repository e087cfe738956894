"""PoseFix (Moon et al., CVPR 2019), as its official code builds it (mks0601/PoseFix_RELEASE;
file:line references below are to it): a model-agnostic refiner that takes an image crop and
another model's pose and outputs the corrected pose.

- :class:`PoseCue` (``MODEL.TOPDOWN.CUE "PoseCue"``): the input pose as K channels, one Gaussian
  per keypoint, ``POSEFIX.INPUT_SIGMA`` crop pixels wide and ``POSEFIX.INPUT_PEAK`` high
  (main/model.py:118-135, 151). In training the pose is the person's ground truth with errors
  synthesised as the official code does (:func:`synthesize_pose`, main/gen_batch.py:65-335); at
  inference it is the entry's pose from a keypoint results file, every keypoint drawn whatever its
  score (main/gen_batch.py:443-444; the recipe's ``TEST.TOPDOWN.HINT.SCORE_THRESH`` 0).
- :class:`PoseFixHRNet` (``MODEL.TOPDOWN.POSE_NET "PoseFixHRNet"``): HRNet whose first conv takes
  the 3 image channels and the K pose channels (the official concatenates them at ResNet's conv1,
  lib/nets/basemodel.py:57). Its maps are logits. Started from a pose network's weights (an
  HRNet's 3-channel conv1), the image channels of its conv1 take them and the pose channels keep
  their initialisation, as the official code loads ImageNet weights (lib/tfflat/saver.py:51-56,
  72-74: conv1 restored into all but its last num_kps input channels).
- :class:`PoseFixLoss` (``MODEL.TOPDOWN.LOSS_NAME "PoseFixLoss"``): softmax cross-entropy of each
  map against a bilinear one-hot target plus the L1 distance of the soft-argmax coordinates, in
  heatmap cells, summed with weight 1 (main/model.py:156-175); the targets and the decoding are
  ``SoftArgmaxCodec`` (``multitask_pose/codecs/soft_argmax.py``).
- :class:`SoftArgmaxHead` (``MODEL.TOPDOWN.HEAD.NAME "SoftArgmaxHead"``): decodes the logits with
  that codec; the flip test averages coordinates (main/test.py:79-97).
- :class:`PoseFixEstimator` (``MODEL.META_ARCHITECTURE "PoseFixEstimator"``): the top-down
  estimator with the official test: the crop from the input pose's extent x 1.2
  (data/COCO/dataset.py:131-148), each keypoint scored with the entry's score
  (main/test.py:103), then OKS-NMS (``TEST.TOPDOWN``).

The error synthesis, per keypoint j of the target person, in the crop (main/gen_batch.py:65-335):
distances come from the keypoint similarity ks = exp(-d^2 / (2 area (2 sigma_j)^2)), ``area``
the person's box area in the crop (main/gen_batch.py:389-393). The candidate points are the
joint itself, the same joint of the nearby persons (box IoU >= 0.1, lib/tfflat/base.py:329-335),
the mirror joint and the nearby persons' mirror joints. Each type draws points uniformly in
distance and angle around a candidate and keeps those nearer it than any other candidate:

- good: within ks 0.85 of the joint; jitter: between ks 0.85 and 0.5 of it;
- inversion: within ks 0.5 of the mirror joint; swap: within ks 0.5 of a nearby person's same
  or mirror joint;
- miss: in the ring between ks 0.5 and 0.1 around any candidate, beyond ks 0.5 of all others.

Its probability comes from the official per-joint tables (:data:`OFFICIAL_RATES`), which depend
on how many joints are labelled in the crop and how many persons overlap; types that cannot be
made are dropped and the rest renormalised. Unlabelled joints: as the official code, with
``POSEFIX.TRAIN_ESTIMATES`` (another model's keypoint results on the training images), the pose of
the entry whose box overlaps the person's most stands in for them and their errors are drawn around
it (main/gen_batch.py:76-78, lib/tfflat/base.py:321-324); without it they stay empty (a channel
of zeros).
"""

import logging
import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn
from torchvision.ops import box_iou

from multitask_pose.codecs.soft_argmax import SoftArgmaxCodec, soft_argmax
from multitask_pose.codecs.utils import gaussian_heatmaps
from multitask_pose.data.keypoints import keypoint_spec_of
from multitask_pose.evaluation.error_analysis import (
    ERROR_TYPES,
    GOOD,
    UNLABELLED,
)

from .affine import apply_affine, invert_affine
from .data.cues import CUE_REGISTRY
from .modeling.build import POSE_NET_REGISTRY
from .modeling.heads import TOPDOWN_HEAD_REGISTRY, TopDownHead
from .modeling.hrnet import PoseHighResolutionNet
from .modeling.losses import TOPDOWN_LOSS_REGISTRY
from .modeling.meta_arch import TopDownPoseEstimator

logger = logging.getLogger(__name__)

__all__ = ["OFFICIAL_RATES", "PoseCue", "PoseFixEstimator", "PoseFixHRNet", "PoseFixLoss",
           "SoftArgmaxHead", "official_rates", "pose_extent_boxes", "synthesize_pose"]  # fmt: skip

# The official per-joint error probabilities, COCO keypoint order (nose, eyes, ears, shoulders,
# elbows, wrists, hips, knees, ankles), main/gen_batch.py. Each row: the condition's name, then
# its 17 values.
_FACE, _UPPER, _LOWER = range(0, 5), range(5, 11), range(11, 17)


def _by_joint(groups):
    out = np.zeros(17)
    for joints, p in groups:
        out[list(joints)] = p
    return out


OFFICIAL_RATES = {
    # jitter (gen_batch.py:124-137): nose, knees, ankles / eyes, ears, arms / hips
    ("jitter", "<=10 labelled"): _by_joint([((0, 13, 14, 15, 16), 0.15), (range(1, 11), 0.20),
                                            ((11, 12), 0.25)]),  # fmt: skip
    ("jitter", ">10 labelled"): _by_joint([((0, 13, 14, 15, 16), 0.10), (range(1, 11), 0.15),
                                           ((11, 12), 0.20)]),  # fmt: skip
    # miss (gen_batch.py:159-179): face / shoulders, ankles / the rest
    ("miss", "<=5 labelled"): _by_joint([(_FACE, 0.15), ((5, 6, 15, 16), 0.20),
                                         (range(7, 15), 0.25)]),  # fmt: skip
    ("miss", "<=10 labelled"): _by_joint([(_FACE, 0.10), ((5, 6, 15, 16), 0.13),
                                          (range(7, 15), 0.15)]),  # fmt: skip
    ("miss", ">10 labelled"): _by_joint([(_FACE, 0.02), ((5, 6, 15, 16), 0.05),
                                         (range(7, 15), 0.10)]),  # fmt: skip
    # inversion (gen_batch.py:214-219): face / upper body / lower body
    ("inversion", "any"): _by_joint([(_FACE, 0.01), (_UPPER, 0.03), (_LOWER, 0.06)]),
    # swap (gen_batch.py:243-256): crowded is <=10 labelled and an overlapping person, or <=15
    # labelled and 3 overlapping persons
    ("swap", "crowded"): _by_joint([(_FACE, 0.02), (_UPPER, 0.15), (_LOWER, 0.10)]),
    ("swap", "not crowded"): _by_joint([(_FACE, 0.01), (_UPPER, 0.06), (_LOWER, 0.03)]),
}
# Samples drawn per type and candidate (gen_batch.py:81); "good" draws N // 4, "miss" 4 N.
_SAMPLES = 500
# The ks bounds (gen_batch.py:70-72).
_KS_GOOD, _KS_JITTER, _KS_MISS = 0.85, 0.5, 0.1
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                  "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                  "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                  "right_ankle")  # fmt: skip


def official_rates(num_labelled: int, num_overlap: int) -> Dict[str, np.ndarray]:
    """The official (17,) probabilities of "jitter", "miss", "inversion", "swap" for a person with
    ``num_labelled`` joints labelled in the crop and ``num_overlap`` overlapping persons."""
    crowded = (num_labelled <= 10 and num_overlap > 0) or (num_labelled <= 15 and num_overlap >= 3)
    miss = "<=5 labelled" if num_labelled <= 5 else "<=10 labelled" if num_labelled <= 10 else (
        ">10 labelled")  # fmt: skip
    return {
        "jitter": OFFICIAL_RATES["jitter", "<=10 labelled" if num_labelled <= 10 else (
            ">10 labelled")],  # fmt: skip
        "miss": OFFICIAL_RATES["miss", miss],
        "inversion": OFFICIAL_RATES["inversion", "any"],
        "swap": OFFICIAL_RATES["swap", "crowded" if crowded else "not crowded"],
    }


def synthesize_pose(
    joints, near, area: float, sigmas, flip_indices, rng, rates: Optional[Dict] = None,
    estimated=None,
) -> Tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One input pose drawn from a person's labels, in the crop (the module docstring).

    Args:
        joints: (K, 3) the person's keypoints (x, y, v; v > 0 labelled and inside the crop).
        near: (M, K, 3) the overlapping persons' keypoints (the swap partners).
        area: the person's box area (the ks scale).
        sigmas: (K,) OKS sigmas; flip_indices: (K,) the mirror of each keypoint.
        rng: a numpy Generator.
        rates: None for the official tables (:func:`official_rates`); else "jitter", "miss",
            "inversion", "swap" probabilities, each a scalar or (K,), the rest "good".
        estimated: (K, 3) another model's pose of the person, or None: where a joint is not
            labelled and the estimate's is (score > 0), its errors are drawn around the estimate
            (main/gen_batch.py:76-78).

    Returns:
        (K, 3) the input pose (x, y, 1; NaN and 0 where nothing is drawn: an unlabelled joint) and
        (K,) the type drawn per joint (ERROR_TYPES index, UNLABELLED where nothing).
    """
    joints = np.asarray(joints, dtype=np.float64)
    near = np.asarray(near, dtype=np.float64).reshape(-1, *joints.shape)
    k = len(joints)
    labelled = joints[:, 2] > 0
    drawn = labelled.copy()
    if estimated is not None:  # the unlabelled joints take the estimate's place (76-78)
        estimated = np.asarray(estimated, dtype=np.float64)
        drawn |= estimated[:, 2] > 0
        joints = np.where((drawn & ~labelled)[:, None], estimated, joints)
    if rates is None:
        rates = official_rates(int(labelled.sum()), len(near))
    unknown = set(rates) - set(ERROR_TYPES[1:])
    if unknown:
        raise ValueError(f"error rates {sorted(unknown)}: the types are {ERROR_TYPES[1:]}")
    prob = {t: np.broadcast_to(np.asarray(rates.get(t, 0.0), dtype=np.float64), (k,))
            for t in ERROR_TYPES[1:]}  # fmt: skip
    good = 1 - sum(prob.values())
    if (good < -1e-9).any() or min(p.min() for p in prob.values()) < 0:
        raise ValueError(f"error rates {rates}: non-negative, summing to at most 1 per keypoint")
    prob[ERROR_TYPES[GOOD]] = np.clip(good, 0, 1)
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    flip = np.asarray(flip_indices)

    def dist(ks):  # gen_batch.py:67-69
        return np.sqrt(-2 * area * var * np.log(ks))

    d10, d50, d85 = dist(_KS_MISS), dist(_KS_JITTER), dist(_KS_GOOD)
    out = np.full((k, 3), np.nan)
    out[:, 2] = 0
    types = np.full(k, UNLABELLED, dtype=np.int8)

    def around(centre, lo, hi, n):
        """n points uniform in distance [lo, hi) and angle around centre, and their distances."""
        r = rng.uniform(lo, hi, n)
        a = rng.uniform(0, 2 * math.pi, n)
        return centre + np.stack([r * np.cos(a), r * np.sin(a)], -1), r

    def beyond(pts, bound, cands, which):
        """Points farther than ``bound`` (per point or scalar) from every candidate in which."""
        ok = np.ones(len(pts), dtype=bool)
        for i in which:
            ok &= np.hypot(*(pts - cands[i]).T) > bound
        return pts[ok]

    for j in np.flatnonzero(drawn):
        # The candidates, in the official order (gen_batch.py:89-118): the joint, the nearby
        # persons' same joint, the mirror joint (if labelled), their mirror joints.
        pair = flip[j]
        swap = near[near[:, j, 2] > 0, j, :2]
        inv = joints[pair : pair + 1, :2] if pair != j and labelled[pair] else np.zeros((0, 2))
        swap_inv = near[near[:, pair, 2] > 0, pair, :2] if pair != j else np.zeros((0, 2))
        cands = np.concatenate([joints[j : j + 1, :2], swap, inv, swap_inv])
        inv_idx = 1 + len(swap)  # the official index, also when there is no inversion candidate
        others = [i for i in range(len(cands)) if i != 0]
        made = {}
        pts, r = around(cands[0], d85[j], d50[j], _SAMPLES)  # jitter, gen_batch.py:138-154
        made["jitter"] = beyond(pts, r, cands, others)
        pool = []  # miss, gen_batch.py:181-209: rings around every candidate
        for c in range(len(cands)):
            pts, _ = around(cands[c], d50[j], d10[j], 4 * _SAMPLES)
            pts = beyond(pts, d50[j], cands, [i for i in range(len(cands)) if i != c])
            if c > 0 and len(pts):
                pts = pts[rng.integers(0, len(pts), len(pts) // 4)]
            pool.append(pts)
        made["miss"] = np.concatenate(pool)
        made["inversion"] = np.zeros((0, 2))  # gen_batch.py:220-237
        if len(inv):
            pts, r = around(cands[inv_idx], 0, d50[j], _SAMPLES)
            rest = [i for i in range(len(cands)) if i != inv_idx]
            made["inversion"] = beyond(pts, r, cands, rest)
        pool = [np.zeros((0, 2))]  # swap, gen_batch.py:242-281
        if len(swap) or len(swap_inv):
            for c in range(len(cands)):
                if c in (0, inv_idx):
                    continue
                pts, r = around(cands[c], 0, d50[j], _SAMPLES)
                pool.append(beyond(pts, r, cands, [i for i in (0, inv_idx) if i < len(cands)]))
        made["swap"] = np.concatenate(pool)
        pts, r = around(cands[0], 0, d85[j], _SAMPLES // 4)  # good, gen_batch.py:288-304
        made["good"] = beyond(pts, r, cands, others)
        p = np.array([prob[t][j] if len(made[t]) else 0.0 for t in ERROR_TYPES])
        if p.sum() <= 0:  # nothing could be made (gen_batch.py:317-320)
            continue
        t = int(rng.choice(len(ERROR_TYPES), p=p / p.sum()))
        pick = made[ERROR_TYPES[t]]
        out[j] = [*pick[rng.integers(len(pick))], 1.0]
        types[j] = t
    return out, types


@CUE_REGISTRY.register()
class PoseCue:
    """An input pose as K cue channels, one Gaussian per keypoint (module docstring). Hints are
    the whole pose, (N, K, 3) in keypoint order; a NaN row (missing) leaves its channel zero."""

    uses_hints = True
    expands = False  # the K hints of a box are one crop's pose
    keypoint_channels = True  # channel k is keypoint k: a mirrored crop swaps them (flip test)

    @configurable
    def __init__(self, *, num_keypoints, sigma, oks_sigmas, flip_indices, peak=1.0,
                 swap_min_iou=0.1, rates=None, estimates_file="", dataset=""):  # fmt: skip
        """
        Args:
            num_keypoints: K, the channels (17, COCO's keypoints: the official error tables).
            sigma: Gaussian standard deviation in crop pixels (POSEFIX.INPUT_SIGMA).
            oks_sigmas, flip_indices: the dataset's, for the error synthesis.
            peak: the Gaussians' peak, in the normalised image's units (POSEFIX.INPUT_PEAK / the
                mean MODEL.PIXEL_STD).
            swap_min_iou: the box IoU with the person that makes another person a swap partner.
            rates: None for the official error tables, else fixed rates (:func:`synthesize_pose`).
            estimates_file, dataset: POSEFIX.TRAIN_ESTIMATES, another model's keypoint results
                on the training dataset's images (read at the first training sample), or "".
        """
        self.channels = int(num_keypoints)
        self.sigma, self.peak = float(sigma), float(peak)
        self.swap_min_iou = float(swap_min_iou)
        self.rates = rates
        self.estimates_file, self.dataset = estimates_file, dataset
        self._estimates = None
        self.oks_sigmas = np.asarray(oks_sigmas, dtype=np.float64)
        self.flip_indices = np.asarray(flip_indices)
        if len(self.oks_sigmas) != self.channels or self.channels != 17:
            raise ValueError(
                f"PoseCue: {len(self.oks_sigmas)} OKS sigmas for {self.channels} keypoints; the"
                " official error tables are COCO's 17 keypoints"
            )

    @classmethod
    def from_config(cls, cfg):
        names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
        if not names:
            raise ValueError("PoseCue needs DATASETS.TRAIN or TEST for the OKS sigmas and flip map")
        spec = keypoint_spec_of(names[0])
        if tuple(spec.keypoint_names) != COCO_KEYPOINTS:
            raise ValueError(
                f"PoseCue: dataset {names[0]!r} does not have COCO's 17 keypoints, in COCO's"
                " order, which the official error tables are written for"
            )
        p = cfg.MODEL.TOPDOWN.POSEFIX
        return dict(
            num_keypoints=cfg.MODEL.TOPDOWN.NUM_KEYPOINTS,
            sigma=p.INPUT_SIGMA,
            peak=p.INPUT_PEAK / float(np.mean(cfg.MODEL.PIXEL_STD)),
            swap_min_iou=p.SWAP_MIN_IOU,
            estimates_file=p.TRAIN_ESTIMATES,
            dataset=names[0],
            oks_sigmas=spec.oks_sigmas,
            flip_indices=spec.flip_indices,
        )

    def estimate_of(self, person: Dict) -> Optional[np.ndarray]:
        """Another model's (K, 3) pose of a training person (detectron2's frame, as the person's
        keypoints): the POSEFIX.TRAIN_ESTIMATES entry of its image whose box has the largest IoU
        with the person's ``bbox`` (XYXY), as the official code picks it (lib/tfflat/base.py:
        321-324); None without the file or without entries in the image."""
        if not self.estimates_file:
            return None
        if self._estimates is None:
            from detectron2.data import DatasetCatalog

            from .data.boxes import load_detection_file

            dicts = DatasetCatalog.get(self.dataset)
            self._estimates = load_detection_file(
                self.estimates_file, [d["image_id"] for d in dicts], with_keypoints=True,
                key="MODEL.TOPDOWN.POSEFIX.TRAIN_ESTIMATES", dataset=self.dataset,
                image_sizes={d["image_id"]: (d["height"], d["width"]) for d in dicts
                             if "height" in d and "width" in d},
            )  # fmt: skip
        boxes, _, keypoints = self._estimates[person["image_id"]]
        if not len(boxes):
            return None
        box = torch.as_tensor(np.asarray(person["bbox"], dtype=np.float32).reshape(1, 4))
        iou = box_iou(box, torch.from_numpy(boxes))[0]
        return keypoints[int(iou.argmax())].astype(np.float64)

    def training_hints(self, person: Dict) -> np.ndarray:
        """The person's ground truth with synthesised errors, (K, 3): x, y, 1 (NaN where nothing
        is drawn), in the frame the crop affine maps from. ``person``: "keypoints" (K, 3), "box"
        XYXY, "others" (M, K, 3), "other_ious" (M,), "affine" (2, 3), "input_size" (W, H) and
        optionally "estimate" (K, 3, another model's pose: :meth:`estimate_of`);
        drawn with ``np.random`` (seeded per sample in training). As the official code, joints
        outside the crop count as unlabelled (main/gen_batch.py:380-384)."""
        m = np.asarray(person["affine"], dtype=np.float64)
        w, h = person["input_size"]

        def in_crop(kp):
            kp = np.asarray(kp, dtype=np.float64).copy()
            kp[..., :2] = apply_affine(kp[..., :2].reshape(-1, 2)[None], m[None])[0].reshape(
                kp[..., :2].shape
            )
            x, y = kp[..., 0], kp[..., 1]
            kp[..., 2] *= (x >= 0) & (x < w) & (y >= 0) & (y < h)
            return kp

        joints = in_crop(person["keypoints"])
        ious = np.asarray(person.get("other_ious", np.ones(len(person["others"]))))
        near = in_crop(np.asarray(person["others"]).reshape(-1, *joints.shape)[
            ious >= self.swap_min_iou])  # fmt: skip
        x0, y0, x1, y1 = np.asarray(person["box"], dtype=np.float64)
        p1, p2, p3 = apply_affine(np.array([[[x0, y0], [x1, y0], [x1, y1]]]), m[None])[0]
        area = np.hypot(*(p2 - p1)) * np.hypot(*(p3 - p2))  # gen_batch.py:389-393
        rng = np.random.default_rng(np.random.randint(2**31))
        estimate = person.get("estimate")
        estimate = None if estimate is None else in_crop(estimate)
        pose, _ = synthesize_pose(joints, near, area, self.oks_sigmas, self.flip_indices, rng,
                                  self.rates, estimate)  # fmt: skip
        out = np.full_like(pose, np.nan)
        drawn = pose[:, 2] > 0
        back = apply_affine(np.nan_to_num(pose[None, :, :2]), invert_affine(m[None]))[0]
        out[drawn, :2] = back[drawn]
        out[drawn, 2] = 1.0
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
        return maps * (self.peak * torch.as_tensor(present, dtype=torch.float32))[..., None, None]


@POSE_NET_REGISTRY.register()
class PoseFixHRNet(PoseHighResolutionNet):
    """HRNet taking the image and a K-channel input pose (:class:`PoseCue`) at its first conv;
    every other layer keeps HRNet's name and shape, so an HRNet checkpoint loads into all of them,
    and its 3-channel ``conv1`` into this one's image channels (:meth:`adapt_loaded_weights`)."""

    @configurable
    def __init__(self, **hrnet_kwargs):
        super().__init__(**hrnet_kwargs)
        self.cue_channels = int(hrnet_kwargs.get("num_keypoints", 17))
        self.conv1 = nn.Conv2d(3 + self.cue_channels, 64, 3, 2, 1, bias=False)
        if hrnet_kwargs.get("init", "normal") == "kaiming":
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        else:
            nn.init.normal_(self.conv1.weight, std=0.001)

    def adapt_loaded_weights(self, state: Dict[str, torch.Tensor], prefix: str) -> Dict:
        """Called by the project's checkpointer on the weights being loaded (``prefix``: this
        module's key prefix) before their shapes are checked: an image-only ``conv1`` (3 input
        channels, otherwise this one's shape) becomes this conv1 with its image channels from
        the weights and its pose channels as they are. Other weights pass unchanged."""
        key = prefix + "conv1.weight"
        loaded, own = state.get(key), self.conv1.weight
        if loaded is None or loaded.shape[1] != 3 or own.shape[1] == 3:
            return state
        if loaded.shape[0] != own.shape[0] or loaded.shape[2:] != own.shape[2:]:
            return state  # not an HRNet stem: fvcore reports the shapes
        full = own.detach().clone()
        full[:, :3] = torch.as_tensor(loaded).to(full)
        logger.info(
            "%s: the weights' 3 image channels loaded, the %d pose channels keep their"
            " initialisation (PoseFix's way with ImageNet weights)", key, self.cue_channels,
        )  # fmt: skip
        return {**state, key: full}

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


@TOPDOWN_LOSS_REGISTRY.register()
class PoseFixLoss(nn.Module):
    """PoseFix's loss (main/model.py:156-175): the mean over (N, K) of each map's softmax
    cross-entropy against the codec's bilinear one-hot target, plus ``coord_weight`` x the mean
    over (N, K, 2) of the L1 distance between the soft-argmax and the target coordinates in
    heatmap cells; both weighted by the target weight (0: unlabelled or outside the crop). The
    targets are ``SoftArgmaxCodec``'s."""

    target_keys = ("heatmaps", "coords", "target_weight")

    @configurable
    def __init__(self, *, coord_weight: float = 1.0):
        super().__init__()
        self.coord_weight = float(coord_weight)

    @classmethod
    def from_config(cls, cfg):
        return {"coord_weight": cfg.MODEL.TOPDOWN.POSEFIX.COORD_LOSS_WEIGHT}

    def forward(self, pred: torch.Tensor, targets: Dict[str, torch.Tensor]) -> torch.Tensor:
        """pred: (N, K, h, w) logits; targets: ``heatmaps`` (N, K, h, w), ``coords`` (N, K, 2),
        ``target_weight`` (N, K)."""
        for key in ("heatmaps", "coords", "target_weight"):
            if key not in targets:
                raise ValueError(
                    f"PoseFixLoss needs the target {key!r}: MODEL.TOPDOWN.CODEC.NAME"
                    " 'SoftArgmaxCodec'"
                )
        weight = targets["target_weight"]
        logp = F.log_softmax(pred.flatten(-2), -1)
        ce = -(targets["heatmaps"].flatten(-2) * logp).sum(-1)
        l1 = (soft_argmax(pred) - targets["coords"]).abs() * weight[..., None]
        return (ce * weight).mean() + self.coord_weight * l1.mean()


@TOPDOWN_HEAD_REGISTRY.register()
class SoftArgmaxHead(TopDownHead):
    """PoseFix's output (main/model.py:44-71): the maps are logits decoded by ``SoftArgmaxCodec``'s
    softmax expectation; the flip test averages the coordinates of each crop with those of its
    mirrored crop, mirrored back (x -> W - 1 - x, left and right exchanged; main/test.py:79-97),
    and the scores likewise."""

    codec_types = (SoftArgmaxCodec,)

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def decode(self, outputs, mirrored=None):
        coords, scores = self.codec.decode(outputs)
        if mirrored is None:
            return coords, scores
        flip = self.flip_indices.to(coords.device)
        m_coords, m_scores = self.codec.decode(mirrored)
        m_coords = m_coords[:, flip]
        m_coords = torch.stack([self.codec.input_size[0] - 1 - m_coords[..., 0],
                                m_coords[..., 1]], -1)  # fmt: skip
        return 0.5 * (coords + m_coords), 0.5 * (scores + m_scores[:, flip])


def pose_extent_boxes(poses: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The official test crop's box (data/COCO/dataset.py:131-148): each pose's keypoint extent,
    x 1.2 about its centre, a side of 20 pixels where the extent is empty. ``poses`` (N, K, 3) in
    the boxes' frame (NaN rows ignored); a pose without any keypoint keeps its box (N, 4 XYXY)."""
    xy = poses[..., :2]
    ok = torch.isfinite(xy).all(-1)
    big = torch.tensor(float("inf"), dtype=xy.dtype)
    lo = torch.where(ok[..., None], xy, big).amin(1)
    hi = torch.where(ok[..., None], xy, -big).amax(1)
    size = hi - lo
    size = torch.where(size > 0, size, torch.full_like(size, 20.0)) * 1.2
    centre = (lo + hi) / 2
    out = torch.cat([centre - size / 2, centre + size / 2], -1).to(boxes.dtype)
    return torch.where(ok.any(1)[:, None], out, boxes)


@META_ARCH_REGISTRY.register()
class PoseFixEstimator(TopDownPoseEstimator):
    """The top-down estimator with PoseFix's test (module docstring): each input pose is cropped
    from its own extent (``POSEFIX.TEST_CROP "pose"``) or its entry's box (``"box"``) and each
    refined keypoint carries the entry's score; its head (:class:`SoftArgmaxHead`) decodes."""

    @configurable
    def __init__(self, *, test_crop: str = "pose", **kwargs):
        super().__init__(**kwargs)
        if test_crop not in ("pose", "box"):
            raise ValueError(
                f"MODEL.TOPDOWN.POSEFIX.TEST_CROP is 'pose' or 'box', not {test_crop!r}"
            )
        self.test_crop = test_crop

    @classmethod
    def from_config(cls, cfg):
        return {**super().from_config(cfg), "test_crop": cfg.MODEL.TOPDOWN.POSEFIX.TEST_CROP}

    @classmethod
    def keypoint_score_scale_from_config(cls, cfg) -> str:
        """Each refined keypoint carries its person's score (:meth:`estimate`), not the codec's."""
        return "person_score"

    def crop_regions(self, boxes, hints):
        """The input pose's extent x 1.2 ("pose"; a pose without keypoints: its box) or the
        entry's box ("box"); the refined pose keeps the entry's box."""
        if self.test_crop != "pose" or hints is None or not len(boxes):
            return boxes
        # hints are in detectron2's pixel-centre frame; boxes and the file in COCO's
        poses = hints.detach().float().cpu() - torch.tensor([0.5, 0.5, 0.0])
        return pose_extent_boxes(poses, boxes.detach().cpu().float()).to(boxes.device)

    def estimate(self, image, boxes, scores, hints=None):
        result = super().estimate(image, boxes, scores, hints)
        result.pred_keypoints[..., 2] = result.scores[:, None]  # main/test.py:103
        return result
