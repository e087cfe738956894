"""PoseFix-style refinement (issue 14 item 3), first part: the erroneous input poses it trains on.

A PoseFix refiner takes an image crop and an input pose and outputs corrected heatmaps; it is
trained on ground-truth poses corrupted with the errors a real pose model makes, drawn from the
error taxonomy of ``multitask_pose.evaluation.error_analysis`` (Ronchi & Perona): each labelled
keypoint of the target person becomes, with the configured rates,

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

__all__ = ["synthesize_pose_errors"]

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
