"""The one person-box filter of both stages: the top-down stage's box sources
(``pose_topdown/data/boxes.py``) and the detector runner of ``tools/detect_persons.py``
(``multitask_pose/engine/person_detection.py``) keep their boxes through it."""

import logging
from typing import Tuple

import torch
from detectron2.structures import Boxes

__all__ = ["filter_person_boxes"]

logger = logging.getLogger(__name__)


def filter_person_boxes(
    boxes,
    scores,
    image_size: Tuple[int, int],
    score_thresh: float = 0.0,
    topk: int = 0,
    min_size: float = 0.0,
    where: str = "",
    return_index: bool = False,
):
    """Clip (N, 4) XYXY boxes to the image ``(height, width)``, then drop boxes without area after
    clipping, below ``score_thresh``, with a shorter side below ``min_size``, and beyond the
    ``topk`` best (0: no limit). Drops are logged with ``where`` (e.g. the image id); never an
    error. Returns the kept boxes and scores, best first, and with ``return_index`` their indices
    in the input (to select what else came with the boxes, e.g. keypoint hints).
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores = torch.as_tensor(scores, dtype=torch.float32, device=boxes.device).reshape(-1)
    h, w = image_size
    finite = torch.isfinite(boxes).all(1) & torch.isfinite(scores)
    clipped = Boxes(torch.where(finite[:, None], boxes, torch.zeros_like(boxes)))
    clipped.clip((h, w))  # detectron2's: x into [0, w], y into [0, h]
    clipped = clipped.tensor
    side = torch.minimum(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1])
    empty = ~finite | (side <= 0)
    keep = ~empty & (scores >= score_thresh) & (side >= min_size)
    if empty.any():
        logger.warning(
            "%s: skipped %d person boxes without area inside the image (or non-finite)",
            where or "image",
            int(empty.sum()),
        )
    idx = torch.nonzero(keep).flatten()
    idx = idx[torch.argsort(scores[idx], descending=True, stable=True)]
    if topk > 0:
        idx = idx[:topk]
    if return_index:
        return clipped[idx], scores[idx], idx
    return clipped[idx], scores[idx]
