"""Statistics of a COCO person-keypoints dataset (a SynthPeople split or a real one): persons per
image, person heights, labelled / visible keypoint rates, how often people overlap, and the
proportions of the legs and trunk that the generator's anatomy is checked against.

``tools/synth_people_stats.py`` prints them as the README's markdown table."""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from ..keypoints import COCO_PERSON


def _boxes_xyxy(anns: Sequence[Dict]) -> np.ndarray:
    b = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    b[:, 2:] += b[:, :2]
    return b


def _overlapped(boxes: np.ndarray, min_iou: float) -> np.ndarray:
    """Per box: does another box of the same image overlap it with IoU >= min_iou."""
    if len(boxes) < 2:
        return np.zeros(len(boxes), bool)
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    iou = inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-9)
    np.fill_diagonal(iou, 0.0)
    return iou.max(axis=1) >= min_iou


def split_statistics(data: Dict, overlap_iou: float = 0.1) -> Dict[str, float]:
    """Statistics of a COCO keypoints dict (``images``, ``annotations`` with 17 COCO keypoints).

    Persons are the non-crowd annotations. ``height`` is the box height in pixels; ``labelled`` /
    ``visible`` are the shares of all keypoint slots with v > 0 / v = 2; ``min_type_labelled`` the
    smallest share of persons labelled over the 17 keypoint types; ``overlapped`` the share of
    persons whose box overlaps another person's with IoU >= ``overlap_iou``; ``hidden`` the share
    of labelled keypoints with v = 1 (hidden by another person, a distractor or the body)."""
    k = len(COCO_PERSON.keypoint_names)
    per_image: Dict[int, List[Dict]] = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        if not a.get("iscrowd", 0):
            per_image.setdefault(a["image_id"], []).append(a)
    counts = np.array([len(v) for v in per_image.values()])
    anns = [a for v in per_image.values() for a in v]
    if not anns:
        raise ValueError("the dataset has no person annotations")
    kps = np.array([a["keypoints"] for a in anns], np.float64)
    if kps.shape[1] != 3 * k:
        raise ValueError(f"expected {k} keypoints per person, got {kps.shape[1] // 3}")
    v = kps.reshape(len(anns), k, 3)[:, :, 2]
    heights = np.array([a["bbox"][3] for a in anns], np.float64)
    overlapped = np.concatenate([_overlapped(_boxes_xyxy(v_), overlap_iou)
                                 for v_ in per_image.values() if v_])
    return {
        "images": float(len(per_image)),
        "persons": float(len(anns)),
        "persons_per_image_mean": float(counts.mean()),
        "persons_per_image_min": float(counts.min()),
        "persons_per_image_max": float(counts.max()),
        "height_p10": float(np.percentile(heights, 10)),
        "height_p50": float(np.percentile(heights, 50)),
        "height_p90": float(np.percentile(heights, 90)),
        "height_80_300": float(np.mean((heights >= 80) & (heights <= 300))),
        "labelled": float(np.mean(v > 0)),
        "visible": float(np.mean(v == 2)),
        "hidden": float(np.sum(v == 1) / max(np.sum(v > 0), 1)),
        "min_type_labelled": float(np.min(np.mean(v > 0, axis=0))),
        "overlapped": float(np.mean(overlapped)),
    }


def limb_fractions(data: Dict) -> Dict[str, float]:
    """Proportions of the legs and trunk as annotated: for every side of every person with that
    side's shoulder, hip, knee and ankle labelled and upright (each point below the previous one in
    the image), the lengths of shoulder-hip, hip-knee and knee-ankle as fractions of the three
    together; medians over those legs. Scale-free, so real and synthetic people compare directly:
    it is how the generator's hip and knee placement was checked against COCO's annotators."""
    names = COCO_PERSON.keypoint_names
    k = len(names)
    rows = []
    for a in data["annotations"]:
        if a.get("iscrowd", 0) or len(a.get("keypoints", ())) != 3 * k:
            continue
        p = np.asarray(a["keypoints"], np.float64).reshape(k, 3)
        for side in ("left", "right"):
            idx = [names.index(f"{side}_{j}") for j in ("shoulder", "hip", "knee", "ankle")]
            q = p[idx]
            if np.all(q[:, 2] > 0) and np.all(np.diff(q[:, 1]) > 0):
                seg = np.linalg.norm(np.diff(q[:, :2], axis=0), axis=1)
                rows.append(seg / seg.sum())
    if not rows:
        raise ValueError("no person has an upright, fully labelled shoulder-hip-knee-ankle chain")
    med = np.median(np.array(rows), axis=0)
    return {"legs": float(len(rows)), "shoulder_hip": float(med[0]), "hip_knee": float(med[1]),
            "knee_ankle": float(med[2])}
