"""Object keypoint similarity between pose candidates, and greedy OKS-NMS over them.

``keypoint_oks`` is the similarity the COCO-keypoint teams suppress duplicates with (HRNet's and
SimpleBaseline's ``oks_iou``): for two poses ``a`` and ``b`` with areas ``s_a`` and ``s_b``,

    OKS = mean over keypoints labelled in both of exp(-d^2 / (2 * ((s_a + s_b) / 2) * (2 sigma)^2))

(pycocotools' ``computeOks`` uses one ground-truth area instead of the mean and is what the
evaluator runs; this one is symmetric, as NMS needs). Both functions compute it with the same
numpy expression (``_oks``), so NMS decisions agree with ``keypoint_oks`` to the last bit; numpy
rather than torch because NMS runs it once per kept pose on a few dozen rows, where torch's
per-operation overhead (microseconds) is most of the time.

``keypoint_similarity`` and ``coco_oks`` are the evaluator's asymmetric form, against annotated
persons (their own area, their labelled keypoints), for the keypoint error analysis, data
selection and rescoring.
"""

from typing import Optional

import numpy as np
import torch

__all__ = ["coco_oks", "keypoint_oks", "keypoint_similarity", "oks_nms"]

_EPS = np.finfo(np.float64).eps
# oks_nms's choice between its two exact paths, from their costs measured on a 2-core AMD EPYC
# (numpy, one thread): one kept pose against R remaining candidates about 15 us + 55 ns x R;
# all pairs among R candidates about 30 ns x R^2 + 50 us. After _LEARN kept poses, the number
# each suppressed so far predicts how many of the remaining will be kept.
_LEARN = 4
# rows per block of the all-pairs comparison (memory: block x candidates x keypoints float64s)
_BLOCK = 256
_FAR = 1e150  # the keypoint box of a pose with no counted keypoint: far from everything


def _as_numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check(kpts_a, kpts_b, sig):
    if (
        kpts_a.ndim != 3
        or kpts_b.ndim != 3
        or kpts_a.shape[1:] != kpts_b.shape[1:]
        or kpts_a.shape[1] != len(sig)
    ):
        raise ValueError(
            f"keypoint_oks expects (N, K, 3) and (M, K, 3) keypoints with K = {len(sig)} sigmas;"
            f" got {tuple(kpts_a.shape)} and {tuple(kpts_b.shape)}"
        )


def _oks(dx, dy, scale, var, counted):
    """OKS from keypoint offsets ``dx``, ``dy`` (..., K), the pair scales (...) and the
    keypoints counted in both (..., K bool, or None for all)."""
    e = np.exp(-(dx * dx + dy * dy) / var / scale[..., None] / 2)
    if counted is None:
        return e.sum(-1) / e.shape[-1]  # (numpy's mean, without its Python-level overhead)
    n = counted.sum(-1)
    return np.where(n > 0, (e * counted).sum(-1) / np.maximum(n, 1), 0.0)


def _cheaper_all_pairs(suppressed_per_kept: float, remaining: int) -> bool:
    """Whether comparing all pairs of the ``remaining`` candidates costs less than going on one
    kept pose at a time, if each kept pose keeps suppressing ``suppressed_per_kept`` others."""
    kept = remaining / (1.0 + suppressed_per_kept)
    one_by_one = kept * (15e-6 + 55e-9 * remaining / 2)
    return one_by_one > 30e-9 * remaining * remaining + 50e-6


def keypoint_oks(
    kpts_a: torch.Tensor,
    kpts_b: torch.Tensor,
    areas_a: torch.Tensor,
    areas_b: torch.Tensor,
    sigmas,
    vis_thresh: Optional[float] = None,
) -> torch.Tensor:
    """Pairwise OKS.

    Args:
        kpts_a: (N, K, 3) keypoints (x, y, score or visibility).
        kpts_b: (M, K, 3).
        areas_a, areas_b: (N,), (M,) object areas in pixels squared.
        sigmas: (K,) the dataset's OKS sigmas (``keypoint_oks_sigmas`` in its metadata).
        vis_thresh: count only keypoints whose third value exceeds it in both poses; None counts
            all.

    Returns:
        (N, M) float64 similarities in [0, 1], on ``kpts_a``'s device (CPU for numpy inputs); 0
        for a pair with no keypoint counted.
    """
    device = kpts_a.device if isinstance(kpts_a, torch.Tensor) else torch.device("cpu")
    a, b = _as_numpy(kpts_a), _as_numpy(kpts_b)
    sig = _as_numpy(sigmas).reshape(-1)
    _check(a, b, sig)
    areas_a = _as_numpy(areas_a).reshape(-1)
    areas_b = _as_numpy(areas_b).reshape(-1)
    scale = (areas_a[:, None] + areas_b[None, :]) / 2 + _EPS
    counted = None
    if vis_thresh is not None:
        counted = (a[:, None, :, 2] > vis_thresh) & (b[None, :, :, 2] > vis_thresh)
    oks = _oks(
        a[:, None, :, 0] - b[None, :, :, 0],
        a[:, None, :, 1] - b[None, :, :, 1],
        scale,
        (2 * sig) ** 2,
        counted,
    )
    return torch.from_numpy(oks).to(device)


def oks_nms(
    keypoints: torch.Tensor,
    scores: torch.Tensor,
    areas: torch.Tensor,
    sigmas,
    thresh: float,
    vis_thresh: Optional[float] = None,
) -> torch.Tensor:
    """Greedy NMS by OKS, as the official HRNet / SimpleBaseline ``oks_nms``: keep the best-scored
    pose, drop every remaining one whose OKS with it exceeds ``thresh``, repeat (equal scores in
    input order). Returns the kept indices (into the inputs), best first, on ``scores``' device.

    Two exact ways to the same keep list, chosen by their expected cost: one kept pose at a time
    against the remaining candidates (cheap when most candidates are duplicates), or, when the
    suppressions so far say most of the rest will be kept, every pair among the remaining
    candidates at once in row blocks, then the greedy pass over the suppressing pairs. In both, a
    bound skips the pairs that cannot exceed ``thresh`` before the exact OKS: every counted
    keypoint pair is at least the gap g between the two poses' keypoint bounding boxes apart, so
    OKS <= exp(-g^2 / (2 * scale * max (2 sigma)^2)); only pairs whose bound is already
    <= ``thresh`` (so whose OKS is too) are skipped. ``benchmarks/bench_oks_nms.py`` measures it
    against the official algorithm.
    """
    device = scores.device if isinstance(scores, torch.Tensor) else torch.device("cpu")
    s = _as_numpy(scores).reshape(-1)
    n = len(s)
    sig = _as_numpy(sigmas).reshape(-1)
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=device)
    order = np.argsort(-s, kind="stable")
    kp = _as_numpy(keypoints)
    _check(kp, kp, sig)
    kp = kp[order]
    ar = _as_numpy(areas).reshape(-1)[order]
    x, y = kp[..., 0], kp[..., 1]
    var = (2 * sig) ** 2
    counted = None if vis_thresh is None else kp[..., 2] > vis_thresh
    # The keypoint boxes, over the keypoints that can be counted (none: far from everything).
    if counted is None:
        x0, x1, y0, y1 = x.min(1), x.max(1), y.min(1), y.max(1)
    else:
        x0 = np.where(counted, x, _FAR).min(1)
        x1 = np.where(counted, x, -_FAR).max(1)
        y0 = np.where(counted, y, _FAR).min(1)
        y1 = np.where(counted, y, -_FAR).max(1)
    vmax = var.max()
    if not thresh < 1.0:  # OKS never exceeds 1: nothing is suppressed
        return torch.as_tensor(order, dtype=torch.long, device=device)
    # bound > thresh  <=>  gap^2 < -2 vmax scale ln(thresh) (slightly widened: pruning must never
    # drop a pair that rounding would have kept); thresh <= 0 prunes nothing
    reach = -2 * vmax * np.log(thresh) * (1 + 1e-9) if thresh > 0 else np.inf

    alive = np.ones(n, dtype=bool)
    keep = []
    with np.errstate(over="ignore"):  # (squares of the far boxes' gaps: inf, never near)
        # Greedy, one kept pose at a time (each compared with the remaining candidates, on views
        # of the tail of the arrays): cheapest when most candidates are duplicates. Once the
        # suppressions so far say that comparing all remaining pairs at once costs less, switch
        # (_cheaper_all_pairs).
        i = suppressed = 0
        while i < n:
            if alive[i]:
                if len(keep) >= _LEARN and _cheaper_all_pairs(
                    suppressed / len(keep), int(alive[i:].sum())
                ):
                    break
                keep.append(i)
                t = i + 1
                gx = np.maximum(np.maximum(x0[t:] - x1[i], x0[i] - x1[t:]), 0.0)
                gy = np.maximum(np.maximum(y0[t:] - y1[i], y0[i] - y1[t:]), 0.0)
                scale = (ar[i] + ar[t:]) / 2 + _EPS
                near = (gx * gx + gy * gy < reach * scale) & alive[t:]
                cand = near.nonzero()[0]
                if cand.size:
                    c = cand + t
                    both = None if counted is None else counted[c] & counted[i]
                    o = _oks(x[c] - x[i], y[c] - y[i], scale[cand], var, both)
                    drop = c[o > thresh]
                    alive[drop] = False
                    suppressed += drop.size
            i += 1
        # The pairs among the remaining candidates at once (row blocks, pruned by the bound),
        # then the same greedy pass over the suppressing pairs.
        rem = np.flatnonzero(alive[i:]) + i
        if rem.size:
            X, Y, A = x[rem], y[rem], ar[rem]
            B0, B1, C0, C1 = x0[rem], x1[rem], y0[rem], y1[rem]
            V = None if counted is None else counted[rem]
            rows, cols = [], []
            for s in range(0, rem.size, _BLOCK):
                e = min(s + _BLOCK, rem.size)
                # block rows s..e against columns s.. (the pairs a < b of the upper triangle)
                scale = (A[s:e, None] + A[None, s:]) / 2 + _EPS
                gx = np.maximum(
                    np.maximum(B0[None, s:] - B1[s:e, None], B0[s:e, None] - B1[None, s:]), 0.0
                )
                gy = np.maximum(
                    np.maximum(C0[None, s:] - C1[s:e, None], C0[s:e, None] - C1[None, s:]), 0.0
                )
                near = gx * gx + gy * gy < reach * scale
                near &= np.arange(s, e)[:, None] < np.arange(s, rem.size)[None, :]
                pa, pb = np.nonzero(near)
                pa, pb = pa + s, pb + s
                both = None if V is None else V[pb] & V[pa]
                o = _oks(X[pb] - X[pa], Y[pb] - Y[pa], scale[near], var, both)
                sup = o > thresh
                rows.append(pa[sup])
                cols.append(pb[sup])
            rows, cols = np.concatenate(rows), np.concatenate(cols)
            ptr = np.searchsorted(rows, np.arange(rem.size + 1))
            alive_rem = np.ones(rem.size, dtype=bool)
            for a in range(rem.size):
                if alive_rem[a]:
                    keep.append(rem[a])
                    alive_rem[cols[ptr[a] : ptr[a + 1]]] = False
    return torch.as_tensor(order[keep], dtype=torch.long, device=device)


def keypoint_similarity(pred_xy, gt_keypoints, gt_areas, sigmas) -> np.ndarray:
    """Per-keypoint OKS terms of every prediction against every candidate person.

    Args:
        pred_xy: (D, K, 2) predicted keypoints.
        gt_keypoints: (C, K, 3) candidate keypoints (x, y, visibility).
        gt_areas: (C,) candidate areas (COCO ``area``), the scale ``s^2`` of OKS.
        sigmas: (K,) OKS sigmas.

    Returns:
        (D, C, K) ``exp(-d^2 / (2 * area * (2 sigma)^2))`` as pycocotools' ``computeOks``, and -1
        where the candidate's keypoint is not labelled (visibility 0).
    """
    pred_xy = np.asarray(pred_xy, dtype=np.float64)[..., :2]
    gt = np.asarray(gt_keypoints, dtype=np.float64)
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((pred_xy[:, None] - gt[None, :, :, :2]) ** 2).sum(-1)
    area = np.asarray(gt_areas, dtype=np.float64)[None, :, None] + np.spacing(1)
    ks = np.exp(-d2 / var / area / 2)
    return np.where(gt[None, :, :, 2] > 0, ks, -1.0)


def coco_oks(pred_xy, gt_keypoints, gt_areas, sigmas) -> np.ndarray:
    """(D, G) OKS as pycocotools computes it for persons with labelled keypoints (mean ks over the
    ground truth's labelled keypoints, its own area); 0 for a person without labelled keypoints."""
    ks = keypoint_similarity(pred_xy, gt_keypoints, gt_areas, sigmas)
    labelled = np.asarray(gt_keypoints)[None, :, :, 2] > 0
    n = labelled.sum(-1)
    return np.where(n > 0, (ks * labelled).sum(-1) / np.maximum(n, 1), 0.0)
