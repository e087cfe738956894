"""Pseudo-labels: a trained model's confident keypoints on unlabelled images as annotations.

From a COCO keypoint results list (``image_id``, ``bbox`` XYWH, ``score``, ``keypoints`` x, y,
score per keypoint), e.g. the top-down evaluator's ``coco_instances_results.json`` on a
detector's boxes (the report's producer) or ``tools/detect_persons.py``'s output for the R-CNN:
each detection scoring at least ``box_thresh`` becomes a person whose keypoints scoring above
``kp_thresh`` are labelled (v = 2) and the rest unlabelled; persons with fewer than
``min_keypoints`` labelled ones are dropped. The area is the box area x 0.53 (the evaluation's
rule for files without areas). The detection score is kept as ``pseudo_score``.

The threshold has a scale. The PCR report (section 2.3) trains "a keypoint detector using a
ResNet-152 backbone" (its top-down network) and keeps "all keypoints with scores above 0.9":
heatmap peaks. An R-CNN's keypoint scores are another scale, detectron2's softmax probabilities
(which it draws above 0.05). :func:`threshold_scale` checks the results file's record
(``multitask_pose/evaluation/results_record.py``) against the threshold's scale and refuses a
mismatch or an unknown scale.
"""

import logging
from collections import Counter
from typing import Dict, List, Optional

import numpy as np

from ..evaluation.results_record import SCORE_SCALES

__all__ = ["REPORT_SCORE_SCALE", "pseudo_label", "threshold_scale"]

logger = logging.getLogger(__name__)

# The scale of the PCR report's keypoint threshold 0.9 (section 2.3): a top-down heatmap's peak.
REPORT_SCORE_SCALE = "heatmap_peak"


def threshold_scale(record: Optional[Dict], given: Optional[str], source: str) -> str:
    """The score scale a keypoint threshold applies to, checked against the results' record.

    Args:
        record: the results file's record (``read_results_record``), None without one.
        given: the scale the caller states for its threshold (``--kp-thresh-scale``), or None
            for the report's, :data:`REPORT_SCORE_SCALE`.
        source: the results file, for the messages.

    Returns:
        the scale (the record's, equal to the threshold's; or ``given`` for a file without a
        stated scale, with a logged warning).

    Raises:
        ValueError naming both scales when the record states another scale than the
        threshold's, or when neither the record nor the caller states one.
    """
    if given is not None and given not in SCORE_SCALES:
        raise ValueError(f"score scale {given!r} is not one of {sorted(SCORE_SCALES)}")
    if record is not None and record.get("score_scale") is None:
        raise ValueError(
            f"{source}: its record says it has no keypoint scores (producer"
            f" {record.get('producer')!r}); pseudo-labels need a keypoint model's results"
        )
    stated = record["score_scale"] if record is not None else "unknown"
    if stated == "unknown":
        if given is None:
            raise ValueError(
                f"{source}: the scale of its keypoint scores is unknown (no record beside it, or"
                f" its writer did not say), so the keypoint threshold cannot be checked: the"
                f" report's 0.9 is on {REPORT_SCORE_SCALE} ({SCORE_SCALES[REPORT_SCORE_SCALE]})."
                " Give a top-down model's results with their record, or state the scale of the"
                " scores and of the threshold with --kp-thresh-scale"
            )
        logger.warning("%s: no recorded keypoint score scale; taking the threshold's, %s, as"
                       " stated", source, given)  # fmt: skip
        return given
    want = given or REPORT_SCORE_SCALE
    if stated != want:
        why = f" (the report's 0.9 is on {REPORT_SCORE_SCALE})" if given is None else ""
        raise ValueError(
            f"{source}: its keypoint scores are {stated} ({SCORE_SCALES[stated]}; producer"
            f" {record.get('producer')!r}), but the keypoint threshold is on {want}{why}. Give a"
            f" top-down model's results, or choose a threshold on {stated} and pass"
            f" --kp-thresh-scale {stated}"
        )
    return stated


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
