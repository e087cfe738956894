"""Pseudo-labels: a trained model's confident keypoints on unlabelled images as annotations.

From a COCO keypoint results list (``image_id``, ``bbox`` XYWH, ``score``, ``keypoints`` x, y,
score per keypoint), e.g. ``tools/detect_persons.py``'s output for the R-CNN (a folder or a
dataset, resumable and sharded) or the top-down evaluator's ``coco_instances_results.json`` on a
detector's boxes: each detection scoring at least ``box_thresh`` becomes a person whose
keypoints scoring above ``kp_thresh`` (0.9 in the report, on heatmap peaks in [0, 1]) are
labelled (v = 2) and the rest unlabelled; persons with fewer than ``min_keypoints`` labelled
ones are dropped. The area is the box area x 0.53 (the evaluation's rule for files without
areas). The detection score is kept as ``pseudo_score``.
"""

from collections import Counter
from typing import Dict, List

import numpy as np

__all__ = ["pseudo_label"]


def pseudo_label(
    results: List[Dict],
    images: List[Dict],
    num_keypoints: int,
    kp_thresh: float = 0.9,
    min_keypoints: int = 4,
    box_thresh: float = 0.0,
):
    """The COCO dataset (images, annotations, one person category without names: the caller
    adds the layout's) and a report (detections, kept persons, labelled keypoints, dropped).

    Raises:
        ValueError naming the entry: an image ``images`` does not list, a keypoint list that is
        not ``num_keypoints`` x 3 numbers, no 4-number bbox or no score.
    """
    ids = {im["id"] for im in images}
    anns, dropped = [], Counter()
    for i, r in enumerate(results):
        where = f"result {i} (image {r.get('image_id')!r})"
        if r.get("image_id") not in ids:
            raise ValueError(f"{where}: not an image of the set (results for other images?)")
        kp = r.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 3 * num_keypoints:
            n = len(kp) if isinstance(kp, list) else "no"
            raise ValueError(f"{where}: {n} keypoint numbers, expected {3 * num_keypoints}")
        box = r.get("bbox")
        if not isinstance(box, (list, tuple)) or len(box) != 4 or "score" not in r:
            raise ValueError(f"{where}: needs a 4-number bbox (XYWH) and a score")
        if r["score"] < box_thresh:
            dropped["box score"] += 1
            continue
        k = np.asarray(kp, dtype=np.float64).reshape(num_keypoints, 3)
        keep = k[:, 2] > kp_thresh
        if keep.sum() < min_keypoints:
            dropped["too few keypoints"] += 1
            continue
        k[keep, 2] = 2
        k[~keep] = 0
        w, h = float(box[2]), float(box[3])
        anns.append({
            "id": len(anns) + 1, "image_id": r["image_id"], "category_id": 1, "iscrowd": 0,
            "bbox": [float(box[0]), float(box[1]), w, h], "area": max(1.0, 0.53 * w * h),
            "keypoints": [float(v) if j % 3 < 2 else int(v) for j, v in enumerate(k.reshape(-1))],
            "num_keypoints": int(keep.sum()), "pseudo_score": float(r["score"]),
        })  # fmt: skip
    report = {
        "detections": len(results),
        "persons": len(anns),
        "labelled_keypoints": int(sum(a["num_keypoints"] for a in anns)),
        "dropped": dict(dropped),
        "images": len(images),
        "images_with_persons": len({a["image_id"] for a in anns}),
    }
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "supercategory": "person"}]}  # fmt: skip
    return data, report
