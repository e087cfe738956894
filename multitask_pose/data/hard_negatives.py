"""Hard-negative detection mining (HNDM): a detector's confident boxes that cover no person.

From a detection file over the training images (a COCO results list: ``image_id``, ``bbox``
XYWH, ``score``), the detections scoring at least ``score_thresh`` whose IoU with every
annotated person of their image (crowd regions included) is below ``iou_thresh`` are hard
negatives: the top-down stage trains on their crops with all-zero heatmaps at full weight, and
the R-CNN can take them as extra background proposals. This module finds them (vectorised per
image with torchvision's ``box_iou``) and reports how many; the training side reads its output.
The thresholds are ours (0.5 and 0.3 by default); the reports do not give theirs.
"""

from collections import defaultdict
from typing import Dict, List, Tuple

import numpy as np
import torch
from torchvision.ops import box_iou

__all__ = ["mine_hard_negatives"]


def _xyxy(boxes: np.ndarray) -> torch.Tensor:
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)


def mine_hard_negatives(
    gt: Dict, detections: List[Dict], score_thresh: float = 0.5, iou_thresh: float = 0.3
) -> Tuple[Dict[int, np.ndarray], Dict]:
    """Hard negatives per image of a COCO dataset ``gt`` (``images``, ``annotations``).

    Returns:
        ({image_id: (M, 5) array of x, y, w, h, score}, only images with negatives), and a
        report: images, detections read, confident ones, mined, per-image maximum.

    Raises:
        ValueError naming the entry: a detection of an image ``gt`` does not list, or without
        a 4-number box and a score.
    """
    if not 0 <= iou_thresh <= 1:
        raise ValueError(f"iou_thresh must be in [0, 1], got {iou_thresh}")
    images = {im["id"] for im in gt["images"]}
    persons = defaultdict(list)
    for a in gt["annotations"]:
        persons[a["image_id"]].append(a["bbox"])
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
    out, confident = {}, 0
    for image_id, rows in dets.items():
        rows = np.asarray(rows, dtype=np.float64)
        rows = rows[rows[:, 4] >= score_thresh]
        confident += len(rows)
        if not len(rows):
            continue
        if persons.get(image_id):
            iou = box_iou(_xyxy(rows[:, :4]), _xyxy(persons[image_id])).numpy()
            rows = rows[(iou < iou_thresh).all(1)]
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
        "iou_thresh": iou_thresh,
    }
    return out, report
