"""Data selection by box/keypoint consistency (the OKS team's filter, COCO keypoint challenge).

For each person annotation with n labelled keypoints, the similarity between its box centre and
the centre (mean) of its labelled keypoints, on the box's scale:

    ks = exp(-||c_box - c_kps||^2 / (2 * area_box))        (area_box = box width x height)

Plotted against n, consistent annotations lie right of the line through (ks, n) = (0.45, 1) and
(0.65, K) (K: the layout's keypoint count, 17 for COCO); only those are kept:

    keep  <=>  ks > 0.45 + 0.2 * (n - 1) / (K - 1)

An annotation the keypoints say little about (one point far from its box centre) or that
disagrees with its box (many points whose centre is far off it) is dropped. Annotations without
labelled keypoints (persons for detection only) are not judged: kept.

As a loading option (``DATASETS.KEYPOINT_SELECTION``, :func:`unlabel_inconsistent`) a rejected
person keeps its box and mask and loses its keypoints (all unlabelled): the R-CNN still learns
it as a person, and the top-down stage, which crops only persons with labelled keypoints, leaves
it out.
"""

from typing import Dict, List

import numpy as np

from ..shared.oks import coco_oks

__all__ = [
    "KS_AT_ONE",
    "KS_AT_ALL",
    "consistency",
    "keep_mask",
    "select_annotations",
    "unlabel_inconsistent",
    "hard_examples",
]

KS_AT_ONE, KS_AT_ALL = 0.45, 0.65  # the line's ks at n = 1 and at n = K


def consistency(annotations: List[Dict], num_keypoints: int):
    """(ks, n) per COCO annotation: the box/keypoint-centre similarity and the number of labelled
    keypoints (ks is NaN where n = 0). Vectorised over the annotations."""
    if not annotations:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    kp = np.array([a["keypoints"] for a in annotations], dtype=np.float64)
    if kp.shape[1] != 3 * num_keypoints:
        raise ValueError(
            f"consistency: keypoint lists of {kp.shape[1]} numbers, expected {3 * num_keypoints}"
        )
    kp = kp.reshape(len(kp), num_keypoints, 3)
    box = np.array([a["bbox"] for a in annotations], dtype=np.float64)  # XYWH
    labelled = kp[..., 2] > 0
    n = labelled.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre_kps = (kp[..., :2] * labelled[..., None]).sum(1) / n[:, None]
        centre_box = box[:, :2] + box[:, 2:] / 2
        area = np.maximum(box[:, 2] * box[:, 3], 1e-12)
        ks = np.exp(-((centre_box - centre_kps) ** 2).sum(1) / (2 * area))
    ks[n == 0] = np.nan
    return ks, n


def keep_mask(ks: np.ndarray, n: np.ndarray, num_keypoints: int) -> np.ndarray:
    """True where an annotation lies right of the line (or has no labelled keypoint)."""
    line = KS_AT_ONE + (KS_AT_ALL - KS_AT_ONE) * (n - 1) / (num_keypoints - 1)
    return (n == 0) | (np.nan_to_num(ks, nan=-1.0) > line)


def select_annotations(annotations: List[Dict], num_keypoints: int):
    """The annotations kept by the filter, and (ks, n, keep) for every one of them."""
    ks, n = consistency(annotations, num_keypoints)
    keep = keep_mask(ks, n, num_keypoints)
    return [a for a, k in zip(annotations, keep) if k], (ks, n, keep)


def unlabel_inconsistent(dicts: List[Dict]):
    """detectron2 dataset dicts with the keypoints of every rejected person unlabelled (new
    annotation and record dicts; the input is not changed). Returns (dicts, judged, rejected)."""
    from detectron2.structures import BoxMode

    judged = [
        (i, j)
        for i, r in enumerate(dicts)
        for j, a in enumerate(r.get("annotations", ()))
        if a.get("keypoints") and not a.get("iscrowd", 0)
    ]
    if not judged:
        return dicts, 0, 0
    anns = []
    for i, j in judged:
        a = dicts[i]["annotations"][j]
        mode = a.get("bbox_mode", BoxMode.XYWH_ABS)
        anns.append({"bbox": BoxMode.convert(list(a["bbox"]), mode, BoxMode.XYWH_ABS),
                     "keypoints": a["keypoints"]})  # fmt: skip
    k = len(anns[0]["keypoints"]) // 3
    ks, n = consistency(anns, k)
    keep = keep_mask(ks, n, k)
    out = list(dicts)
    for (i, j), ok, cnt in zip(judged, keep, n):
        if ok or cnt == 0:
            continue
        if out[i] is dicts[i]:
            out[i] = dict(dicts[i], annotations=list(dicts[i]["annotations"]))
        out[i]["annotations"][j] = dict(out[i]["annotations"][j], keypoints=[0.0] * (3 * k))
    return out, int((n > 0).sum()), int(((n > 0) & ~keep).sum())


def hard_examples(gt: Dict, results: List[Dict], sigmas, thresh: float):
    """Hard-example selection (the OKS team's step 2): the ground-truth persons with labelled
    keypoints (not crowd) whose best OKS with any prediction on their image is below
    ``thresh`` (a person no prediction covers has OKS 0: hard).

    Args:
        gt: a COCO keypoint dataset (``images``, ``annotations`` with ``area``).
        results: a COCO keypoint results list (``image_id``, ``keypoints``), e.g. a model's
            ``coco_instances_results.json`` on these images.
        sigmas: (K,) the layout's OKS sigmas; thresh: the OKS below which a person is hard.

    Returns:
        (the hard annotations, {annotation id: best OKS} of every judged person). OKS as
        pycocotools computes it (the person's own area and labelled keypoints).
    """
    from collections import defaultdict

    k = len(sigmas)
    preds = defaultdict(list)
    for r in results:
        preds[r["image_id"]].append(r["keypoints"])
    persons = defaultdict(list)
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0) and any(v > 0 for v in a.get("keypoints", [])[2::3]):
            persons[a["image_id"]].append(a)
    best = {}
    for image_id, anns in persons.items():
        kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), k, 3)
        if preds.get(image_id):
            p = np.array(preds[image_id], dtype=np.float64).reshape(-1, k, 3)
            areas = np.array([a["area"] for a in anns], dtype=np.float64)
            oks = coco_oks(p[..., :2], kp, areas, sigmas).max(0)  # (G,)
        else:
            oks = np.zeros(len(anns))
        best.update({a["id"]: float(o) for a, o in zip(anns, oks)})
    hard = [a for anns in persons.values() for a in anns if best[a["id"]] < thresh]
    return hard, best
