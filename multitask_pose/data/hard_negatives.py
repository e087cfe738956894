"""Hard-negative detection mining (HNDM): a detector's confident boxes that cover no person.

From a detection file over the training images (a COCO results list: ``image_id``, ``bbox``
XYWH, ``score``), the detections scoring at least ``score_thresh`` that cover no annotated
person of their image (crowd regions included) are hard negatives: the top-down stage trains on
their crops with all-zero heatmaps at full weight, and the R-CNN can take them as extra
background proposals. This module, both stages' one, reads the file (``detection_file.py``),
finds them (vectorised per image with detectron2's ``pairwise_intersection`` /
``pairwise_iou``), reports how many, and hands them to each stage's training data: the R-CNN's
dicts carry them as ``hard_negatives`` (:func:`with_hard_negatives`, :class:`HardNegativeMapper`;
``MultiTaskRCNN`` appends them to the proposals), the top-down stage's are negative person dicts
(:func:`negative_person_dicts`). Two rules for "covers no person" (``rule``):

- ``"no_intersection"`` (the default): no overlap at all, i.e. a zero intersection area with
  every person box. This is the PCR report's rule (section 2.3, "Hard-Negative Person Detection
  Mining": "we filter out those detections with high scores but no intersections with ground
  truth person instances"); a box overlapping a person by one pixel is not a hard negative.
- ``"iou"``: IoU below ``iou_thresh`` (0.3 by default, ours) with every person box; no report
  uses it. Such a box can still show most of a person: one around two people, a person's half,
  a loose box around a small one, and its all-zero target then contradicts that person's own
  crop (on SynthPeople, 53% of the boxes this rule mined from a 360-iteration detector held 8
  or more of a person's labelled keypoints, and training on them cut keypoint AP from 0.056 to
  0.009). ``max_keypoints`` >= 0 keeps only the boxes holding at most that many labelled
  keypoints of any one person; -1 (the default) does not look at keypoints.

The score threshold is ours (0.5): the report says "high scores" without a value.
"""

import logging
from collections import defaultdict
from typing import Dict, List, Tuple

import numpy as np
import torch
from detectron2.data import DatasetMapper
from detectron2.structures import Boxes, pairwise_iou
from detectron2.structures.boxes import pairwise_intersection

from .detection_file import read_detection_file

__all__ = [
    "HNDM_RULES",
    "HardNegativeMapper",
    "check_max_keypoints",
    "check_rule",
    "covers_no_person",
    "holding_note",
    "log_mined",
    "mine_dataset_dicts",
    "mine_from_config",
    "mine_hard_negatives",
    "negative_person_dicts",
    "rule_note",
    "with_hard_negatives",
]

logger = logging.getLogger(__name__)

KEY = "INPUT.HARD_NEGATIVES.FILE"


# The rules for "covers no person" (module docstring): the report's first.
HNDM_RULES = ("no_intersection", "iou")


def _xyxy(boxes: np.ndarray) -> Boxes:
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    return Boxes(torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1))


def covers_no_person(boxes: np.ndarray, persons: np.ndarray, rule: str,
                     iou_thresh: float) -> np.ndarray:  # fmt: skip
    """(M,) bool: which of M XYWH ``boxes`` cover none of the XYWH ``persons`` under ``rule``
    ("no_intersection": zero overlap area with each; "iou": IoU below ``iou_thresh`` with each)."""
    a, b = _xyxy(boxes), _xyxy(persons)
    if rule == "no_intersection":
        return (pairwise_intersection(a, b) <= 0).all(1).numpy()
    return (pairwise_iou(a, b) < iou_thresh).all(1).numpy()


def _keypoints_inside(boxes: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """(M, P): how many labelled (v > 0) keypoints of each of P persons ((P, K, 3)) lie inside
    each of M XYWH boxes (edges included)."""
    x, y, v = (keypoints[None, :, :, i] for i in range(3))
    b = boxes[:, None, None, :]
    inside = (x >= b[..., 0]) & (x <= b[..., 0] + b[..., 2])
    inside &= (y >= b[..., 1]) & (y <= b[..., 1] + b[..., 3])
    return (inside & (v > 0)).sum(-1)


def mine_hard_negatives(
    gt: Dict,
    detections: List[Dict],
    score_thresh: float = 0.5,
    iou_thresh: float = 0.3,
    max_keypoints: int = -1,
    *,
    rule: str = "no_intersection",
) -> Tuple[Dict[int, np.ndarray], Dict]:
    """Hard negatives per image of a COCO dataset ``gt`` (``images``, ``annotations``): the
    detections scoring at least ``score_thresh`` that cover none of the image's annotations
    (crowd regions included) under ``rule`` (module docstring: "no_intersection", the
    report's, or "iou" below ``iou_thresh``, which only that rule reads).

    ``max_keypoints`` >= 0 also drops the boxes holding more than that many labelled keypoints
    of one person (the annotations' ``keypoints``); -1 does not look at keypoints.

    Returns:
        ({image_id: (M, 5) array of x, y, w, h, score}, only images with negatives), and a
        report: images, detections read, confident ones, mined, per-image maximum, and how many
        were dropped for holding a person's keypoints.

    Raises:
        ValueError naming the entry: a detection of an image ``gt`` does not list, or without
        a 4-number box and a score.
    """
    check_rule(rule)
    if not 0 <= iou_thresh <= 1:
        raise ValueError(f"iou_thresh must be in [0, 1], got {iou_thresh}")
    check_max_keypoints(max_keypoints)
    images = {im["id"] for im in gt["images"]}
    persons, keypoints = defaultdict(list), defaultdict(list)
    for a in gt["annotations"]:
        persons[a["image_id"]].append(a["bbox"])
        if max_keypoints >= 0 and a.get("keypoints") is not None and len(a["keypoints"]):
            keypoints[a["image_id"]].append(np.asarray(a["keypoints"], np.float64).reshape(-1, 3))
    dets = defaultdict(list)
    for i, d in enumerate(detections):
        if d.get("image_id") not in images:
            raise ValueError(
                f"detection {i}: image {d.get('image_id')!r} is not in the dataset"
                " (a detection file for other images?)"
            )
        box = d.get("bbox")
        if not isinstance(box, (list, tuple)) or len(box) != 4 or "score" not in d:
            raise ValueError(f"detection {i} (image {d['image_id']}): needs a 4-number bbox"
                             " (XYWH) and a score")  # fmt: skip
        dets[d["image_id"]].append([*box, d["score"]])
    out, confident, holding = {}, 0, 0
    for image_id, rows in dets.items():
        rows = np.asarray(rows, dtype=np.float64)
        rows = rows[rows[:, 4] >= score_thresh]
        confident += len(rows)
        if not len(rows):
            continue
        if persons.get(image_id):
            rows = rows[covers_no_person(rows[:, :4], np.asarray(persons[image_id]), rule,
                                         iou_thresh)]  # fmt: skip
        if len(rows) and keypoints.get(image_id):
            kps = keypoints[image_id]
            if len({len(k) for k in kps}) > 1:
                raise ValueError(f"image {image_id}: persons with different keypoint counts")
            keep = (_keypoints_inside(rows[:, :4], np.stack(kps)) <= max_keypoints).all(1)
            holding += int((~keep).sum())
            rows = rows[keep]
        if len(rows):
            out[image_id] = rows
    report = {
        "images": len(images),
        "detections": len(detections),
        "confident": confident,
        "mined": int(sum(len(v) for v in out.values())),
        "images_with_negatives": len(out),
        "max_per_image": int(max((len(v) for v in out.values()), default=0)),
        "score_thresh": score_thresh,
        "rule": rule,
        "iou_thresh": iou_thresh,
        "max_keypoints": max_keypoints,
        "holding_keypoints": holding,
    }
    return out, report


def check_rule(rule: str, key: str = "rule") -> None:
    """ValueError naming ``key`` (a config key, for the trainers) unless ``rule`` is one of
    :data:`HNDM_RULES`."""
    if rule not in HNDM_RULES:
        raise ValueError(f"{key} must be one of {HNDM_RULES}, got {rule!r}")


def rule_note(report: Dict) -> str:
    """The mining rule of ``report`` for a log line."""
    if report["rule"] == "iou":
        return f"IoU < {report['iou_thresh']} with every person (not the report's rule)"
    return "no intersection with any person (the report's rule)"


def check_max_keypoints(value: int, key: str = "max_keypoints") -> None:
    """ValueError naming ``key`` (a config key, for the trainers) unless ``value`` is -1 or
    >= 0."""
    if value < -1:
        raise ValueError(f"{key} must be -1 (off) or >= 0, got {value}")


def holding_note(report: Dict) -> str:
    """The keypoint filter (``max_keypoints``) for a log line: "" when off, else how many it
    dropped."""
    if report["max_keypoints"] < 0:
        return ""
    return (f", at most {report['max_keypoints']} labelled keypoints of any one person:"
            f" {report['holding_keypoints']} holding more dropped")  # fmt: skip


def mine_dataset_dicts(dataset_dicts: List[Dict], detections: List[Dict], score_thresh: float,
                       iou_thresh: float, max_keypoints: int = -1, *,
                       rule: str = "no_intersection",
                       ) -> Tuple[Dict[int, np.ndarray], Dict]:  # fmt: skip
    """:func:`mine_hard_negatives` over detectron2 dataset dicts (their annotations' boxes in
    any ``bbox_mode``, keypoints in image pixels) instead of a COCO json."""
    from detectron2.structures import BoxMode

    gt = {"images": [{"id": d["image_id"]} for d in dataset_dicts], "annotations": []}
    for d in dataset_dicts:
        for a in d.get("annotations", []):
            xywh = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYWH_ABS)
            gt["annotations"].append(
                {"image_id": d["image_id"], "bbox": xywh, "keypoints": a.get("keypoints")}
            )
    return mine_hard_negatives(gt, detections, score_thresh, iou_thresh, max_keypoints, rule=rule)


def mine_from_config(cfg, dataset_dicts: List[Dict]) -> Tuple[Dict[int, np.ndarray], Dict]:
    """The hard negatives of INPUT.HARD_NEGATIVES.FILE over ``dataset_dicts`` (DATASETS.TRAIN[0]'s:
    a file made for other images is refused) with the keys' score, rule, IoU and keypoint limit
    (:func:`mine_dataset_dicts`), both stages'. Errors name the key."""
    hn = cfg.INPUT.HARD_NEGATIVES
    check_rule(hn.RULE, "INPUT.HARD_NEGATIVES.RULE")
    check_max_keypoints(hn.MAX_KEYPOINTS, "INPUT.HARD_NEGATIVES.MAX_KEYPOINTS")
    sizes = {d["image_id"]: (d["height"], d["width"]) for d in dataset_dicts
             if "height" in d and "width" in d}  # fmt: skip
    detections = read_detection_file(hn.FILE, KEY, cfg.DATASETS.TRAIN[0], sizes)
    try:
        return mine_dataset_dicts(dataset_dicts, detections, hn.SCORE, hn.IOU, hn.MAX_KEYPOINTS,
                                  rule=hn.RULE)  # fmt: skip
    except ValueError as e:
        raise ValueError(f"{KEY} {hn.FILE}: {e}") from None


def log_mined(report: Dict, count: int, what: str) -> None:
    """Log what :func:`mine_from_config` mined: ``count`` ``what`` (proposals, crops)."""
    logger.info(
        "Hard negatives: %d %s mined from %d of %d detections scoring >= %s (%s%s) in %d images",
        count, what, report["confident"], report["detections"], report["score_thresh"],
        rule_note(report), holding_note(report), report["images_with_negatives"],
    )  # fmt: skip


def with_hard_negatives(dataset_dicts: List[Dict], mined: Dict[int, np.ndarray]) -> List[Dict]:
    """The R-CNN's training dicts: copies of ``dataset_dicts`` whose images with hard negatives
    (``mined``, :func:`mine_from_config`'s) carry them as ``hard_negatives`` ((M, 4) XYXY boxes,
    clipped to the image) for :class:`HardNegativeMapper`."""
    out = []
    for d in dataset_dicts:
        rows = mined.get(d["image_id"])
        if rows is not None:
            xyxy = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], 1)
            xyxy = np.clip(xyxy, 0, [d["width"], d["height"], d["width"], d["height"]])
            xyxy = xyxy[(xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])]
            if len(xyxy):
                d = {**d, "hard_negatives": xyxy.astype(np.float32)}
        out.append(d)
    return out


def negative_person_dicts(dataset_dicts: List[Dict], mined: Dict[int, np.ndarray],
                          num_keypoints: int) -> List[Dict]:  # fmt: skip
    """The top-down stage's training samples: the hard negatives (``mined``,
    :func:`mine_from_config`'s) as person dicts like ``pose_topdown.data.mapper.person_dicts``'s
    (box clipped to the image), with ``negative`` True and every keypoint unlabelled (its mapper
    gives them all-zero heatmaps at full weight)."""
    out = []
    for d in dataset_dicts:
        for x, y, bw, bh, _ in mined.get(d["image_id"], ()):
            x0, y0 = max(0.0, x), max(0.0, y)
            x1, y1 = min(float(d["width"]), x + bw), min(float(d["height"]), y + bh)
            if x1 <= x0 or y1 <= y0:
                continue
            out.append({
                "file_name": d["file_name"], "image_id": d["image_id"], "height": d["height"],
                "width": d["width"], "bbox": np.array([x0, y0, x1, y1]),
                "keypoints": np.zeros((num_keypoints, 3)), "area": 0.53 * bw * bh,
                "others": np.zeros((0, num_keypoints, 3)), "other_areas": np.zeros(0),
                "negative": True,
            })  # fmt: skip
    return out


class HardNegativeMapper(DatasetMapper):
    """detectron2's ``DatasetMapper`` that also carries a dict's ``hard_negatives`` boxes
    through the augmentation of its annotations, as an (M, 4) float tensor in the input image's
    frame (``MultiTaskRCNN`` adds them to the proposals: ``multitask_pose/modeling/
    meta_arch.py``). detectron2's mapper transforms only annotations and
    precomputed proposals, hence the subclass."""

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        super()._transform_annotations(dataset_dict, transforms, image_shape)
        boxes = dataset_dict.pop("hard_negatives", None)
        if boxes is None:
            return
        b = transforms.apply_box(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        h, w = image_shape
        b = np.clip(b, 0, [w, h, w, h])
        b = b[(b[:, 2] - b[:, 0] >= 1) & (b[:, 3] - b[:, 1] >= 1)]
        dataset_dict["hard_negatives"] = torch.as_tensor(b, dtype=torch.float32)
