"""The error taxonomy of Ronchi & Perona (see the package's docstring): the error types, their
thresholds, and the classification of each keypoint of a detection matched to a person."""

import math
from dataclasses import dataclass

import numpy as np

from ...shared.oks import keypoint_similarity

ERROR_TYPES = ("good", "jitter", "inversion", "swap", "miss")
GOOD, JITTER, INVERSION, SWAP, MISS = range(len(ERROR_TYPES))
UNLABELLED = -1
# coco-analyze's Params.jitterKsThrs (cocoanalyze.py l.945) and oksLocThrs (l.943).
GOOD_KS = 0.85
NEAR_KS = 0.5
LOCALIZATION_OKS = 0.1
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
# Corrected keypoints sit this fraction inside their target ks, so rounding cannot push them out.
_INSIDE = 1e-6


@dataclass
class KeypointErrors:
    """What :func:`classify_keypoints` finds for D matched detections with K keypoints."""

    labels: np.ndarray  # (D, K) ERROR_TYPES index; UNLABELLED where the person's keypoint is not
    best_ks: np.ndarray  # (D, K) the highest ks over all candidates
    corrected_xy: np.ndarray  # (D, K, 2) where each keypoint goes when its error is corrected
    normalised_error: np.ndarray  # (D, K) distance to the own joint / sqrt(area); NaN if unlabelled


def classify_keypoints(
    pred_xy, gt_keypoints, gt_areas, matched, sigmas, flip_indices
) -> KeypointErrors:
    """Label each keypoint of detections matched to persons of one image (see the module doc).

    Args:
        pred_xy: (D, K, 2+) keypoints of the matched detections.
        gt_keypoints: (G, K, 3) every annotated person of the image.
        gt_areas: (G,) their areas.
        matched: (D,) index into the G persons of each detection's match.
        sigmas: (K,) OKS sigmas; flip_indices: (K,) the mirror keypoint of each keypoint.
    """
    pred_xy = np.asarray(pred_xy, dtype=np.float64)[..., :2]
    gt = np.asarray(gt_keypoints, dtype=np.float64)
    areas = np.asarray(gt_areas, dtype=np.float64)
    matched = np.asarray(matched, dtype=np.int64)
    flip = np.asarray(flip_indices, dtype=np.int64)
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    g = len(gt)
    # Candidates 0..G-1: each person as annotated; G..2G-1: mirrored, so that column k of a
    # mirrored person holds the location of its joint flip[k] (the right wrist for the left one).
    candidates = np.concatenate([gt, gt[:, flip]])
    cand_areas = np.concatenate([areas, areas])
    ks = keypoint_similarity(pred_xy, candidates, cand_areas, sigmas)  # (D, 2G, K)

    # coco-analyze's row order decides ties (np.argmax keeps the first maximum): own person,
    # other persons, own mirrored, other persons mirrored (cocoanalyze.py l.255-304).
    c = np.arange(2 * g)[None, :]
    own, mirror = matched[:, None], matched[:, None] + g
    rank = np.where(c == own, 0, np.where(c < g, 1, np.where(c == mirror, 2, 3)))
    order = np.argsort(rank, axis=1, kind="stable")  # (D, 2G)
    ks_in_order = np.take_along_axis(ks, order[:, :, None], axis=1)
    pos = ks_in_order.argmax(axis=1)  # (D, K)
    best = np.take_along_axis(ks_in_order, pos[:, None, :], axis=1)[:, 0]
    best_cand = np.take_along_axis(order, pos, axis=1)  # (D, K) candidate index

    labelled = gt[matched, :, 2] > 0
    on_own = best_cand == own
    on_mirror = best_cand == mirror
    labels = np.select(
        [~labelled, best < NEAR_KS, on_own & (best >= GOOD_KS), on_own, on_mirror],
        [UNLABELLED, MISS, GOOD, JITTER, INVERSION],
        default=SWAP,
    ).astype(np.int8)

    own_xy = gt[matched, :, :2]  # (D, K, 2)
    own_area = areas[matched][:, None]  # (D, 1)
    error = pred_xy - own_xy
    dist = np.linalg.norm(error, axis=-1)
    direction = np.where(
        dist[..., None] > 0, error / np.maximum(dist, 1e-12)[..., None], [1.0, 0.0]
    )

    def at_ks(t):  # the distance from the own joint at which ks equals t
        return np.sqrt(-2.0 * math.log(t) * var[None] * own_area) * (1 - _INSIDE)

    # Inversions and swaps keep their offset from the wrong joint, rescaled to the own person.
    wrong_xy = candidates[best_cand, np.arange(pred_xy.shape[1])[None, :], :2]  # (D, K, 2)
    scale = np.sqrt(own_area / np.maximum(cand_areas[best_cand], 1e-12)) * (1 - _INSIDE)
    carried = own_xy + (pred_xy - wrong_xy) * scale[..., None]
    corrected = pred_xy.copy()
    for label, target in (
        (JITTER, own_xy + direction * at_ks(GOOD_KS)[..., None]),
        (MISS, own_xy + direction * at_ks(NEAR_KS)[..., None]),
        (INVERSION, carried),
        (SWAP, carried),
    ):
        corrected = np.where((labels == label)[..., None], target, corrected)

    norm_error = np.where(labelled, dist / np.sqrt(np.maximum(own_area, 1e-12)), np.nan)
    return KeypointErrors(labels, best, corrected, norm_error)
