"""Person boxes for the top-down stage: from the dataset, from a COCO detection-results file, or
from a detectron2 detector run in the loop. Every source ends as (boxes XYXY, scores) per image and
goes through the same :func:`filter_person_boxes`.
"""

import json
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from detectron2.structures import BoxMode

from multitask_pose.evaluation.results_record import (
    ResultsDatasetError,
    check_boxes_in_images,
    check_record_dataset,
    read_results_record,
)
from multitask_pose.shared.errors import UserError
from multitask_pose.shared.paths import find_file, looked_in

__all__ = [
    "DetectionFileError",
    "PersonDetector",
    "filter_person_boxes",
    "folder_image_dicts",
    "gt_person_boxes",
    "load_detection_file",
    "official_gt_boxes",
]

logger = logging.getLogger(__name__)


class DetectionFileError(UserError, ValueError):
    """A detection-results file that cannot be used: wrong format or unknown images."""


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
    boxes = torch.where(finite[:, None], boxes, torch.zeros_like(boxes))
    clipped = torch.stack(
        [
            boxes[:, 0].clamp(0, w),
            boxes[:, 1].clamp(0, h),
            boxes[:, 2].clamp(0, w),
            boxes[:, 3].clamp(0, h),
        ],
        1,
    )
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


def official_gt_boxes(boxes_xyxy, width: float, height: float) -> np.ndarray:
    """(N, 4) XYXY ground-truth boxes as the official HRNet / SimpleBaseline loaders clean them
    (HRNet lib/dataset/coco.py lines 164-171): ``x1 = max(0, x)``,
    ``x2 = min(W - 1, x1 + max(0, w - 1))``, the same in y: inclusive pixel corners, one pixel
    narrower and lower than the COCO box."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    x1, y1 = np.maximum(0.0, b[:, 0]), np.maximum(0.0, b[:, 1])
    x2 = np.minimum(width - 1, x1 + np.maximum(0.0, b[:, 2] - b[:, 0] - 1))
    y2 = np.minimum(height - 1, y1 + np.maximum(0.0, b[:, 3] - b[:, 1] - 1))
    return np.stack([x1, y1, x2, y2], axis=1)


def gt_person_boxes(dataset_dict: Dict, minus_one: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """The non-crowd annotated boxes of an image, XYXY, score 1; with ``minus_one`` cleaned as
    the official code does (:func:`official_gt_boxes`)."""
    anns = [a for a in dataset_dict.get("annotations", []) if not a.get("iscrowd", 0)]
    boxes = np.array(
        [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns],
        dtype=np.float32,
    ).reshape(-1, 4)
    if minus_one:
        boxes = official_gt_boxes(boxes, dataset_dict["width"], dataset_dict["height"])
        boxes = boxes.astype(np.float32)
    return boxes, np.ones(len(boxes), dtype=np.float32)


def load_detection_file(
    path: str,
    image_ids,
    category_id: Optional[int] = 1,
    with_keypoints: bool = False,
    key: str = "TEST.TOPDOWN.DET_FILE",
    dataset: str = "",
    image_sizes: Optional[Dict[int, Tuple[float, float]]] = None,
) -> Dict[int, Tuple[np.ndarray, ...]]:
    """Read a COCO detection-results json (a list of ``{"image_id", "category_id", "bbox": [x, y, w,
    h], "score"}``) into ``{image_id: (boxes XYXY (N, 4), scores (N,))}`` for the given images.
    ``with_keypoints``: the file is a keypoint results file (each entry also has ``"keypoints"``:
    K x (x, y, score) in COCO's frame), and each value gets a third array, (N, K, 3) keypoints in
    detectron2's pixel-centre frame (+0.5, as ``pred_keypoints``).

    Raises :class:`DetectionFileError` on a malformed file or on image ids that are not in the
    dataset (the usual sign of a file made for another split). Images of the dataset without any
    detection get empty arrays. ``category_id`` keeps one category (1, person, in COCO); None keeps
    all. ``key``: the config key that named the file, for the errors. With ``dataset`` (its
    name) a file whose record names another registered dataset is refused, and with
    ``image_sizes`` ({image id: (height, width)}) one whose boxes reach beyond the images
    (``results_record.py``: results made for another dataset).
    """
    path = find_file(path)  # relative: from the current directory, else the repository's
    if not os.path.isfile(path):
        raise FileNotFoundError(f"detection file not found: {path} ({key}){looked_in(path)}")
    record = read_results_record(path)  # what made it; a warning when unknown
    if dataset:
        try:
            check_record_dataset(record, dataset, path)
        except ResultsDatasetError as e:
            raise DetectionFileError(f"{key}: {e}") from None
    with open(path) as f:
        try:
            dets = json.load(f)
        except json.JSONDecodeError as e:
            raise DetectionFileError(f"{path} is not valid json: {e}") from e
    if not isinstance(dets, list):
        raise DetectionFileError(
            f"{path}: expected a COCO detection-results list, got a {type(dets).__name__}"
            + (
                " (a COCO annotation file? give its detections instead)"
                if isinstance(dets, dict)
                else ""
            )
        )
    image_ids = set(int(i) for i in image_ids)
    per_image: Dict[int, List] = {i: [] for i in image_ids}
    unknown = set()
    for n, d in enumerate(dets):
        if not isinstance(d, dict) or not {"image_id", "bbox", "score"} <= set(d):
            raise DetectionFileError(
                f"{path}: entry {n} is not a detection with image_id, bbox, score: {str(d)[:120]}"
            )
        bbox = d["bbox"]
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
            raise DetectionFileError(f"{path}: entry {n} has bbox {bbox!r}; expected [x, y, w, h]")
        if category_id is not None and "category_id" in d and int(d["category_id"]) != category_id:
            continue
        iid = int(d["image_id"])
        if iid not in image_ids:
            unknown.add(iid)
            continue
        try:
            row = [*map(float, bbox), float(d["score"])]
            if with_keypoints:
                row += list(map(float, d["keypoints"]))
        except KeyError:
            raise DetectionFileError(
                f"{path}: entry {n} (image {iid}) has no keypoints; TEST.TOPDOWN.HINT.SOURCE"
                " 'keypoints' needs a keypoint results file"
            ) from None
        except (TypeError, ValueError):
            row = None
        if row is None or not np.isfinite(row).all():
            raise DetectionFileError(
                f"{path}: entry {n} (image {iid}) has a score or box that is not a finite number:"
                f" bbox {bbox!r}, score {d['score']!r}"
            )
        per_image[iid].append(row)
    if unknown:
        raise DetectionFileError(
            f"{path}: {len(unknown)} image ids are not in the dataset, e.g."
            f" {sorted(unknown)[:5]}; was the file made for another split?"
        )
    if image_sizes:
        try:
            check_boxes_in_images(dets, image_sizes, dataset or "the dataset", path)
        except ResultsDatasetError as e:
            raise DetectionFileError(f"{key}: {e}") from None
    lengths = {len(r) for rows in per_image.values() for r in rows}
    if with_keypoints and (len(lengths) > 1 or any((n - 5) % 3 for n in lengths)):
        raise DetectionFileError(
            f"{path}: keypoint lists of different or non-triplet lengths"
            f" ({sorted((n - 5) / 3 for n in lengths)} keypoints)"
        )
    width = lengths.pop() if lengths else 5
    out = {}
    for iid, rows in per_image.items():
        a = np.array(rows, dtype=np.float64).reshape(-1, width)
        boxes = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:4]], axis=1).astype(np.float32)
        out[iid] = (boxes, a[:, 4].astype(np.float32))
        if with_keypoints:
            kp = a[:, 5:].reshape(len(a), (width - 5) // 3, 3)
            kp[..., :2] += 0.5  # COCO's frame -> detectron2's pixel centres
            out[iid] += (kp.astype(np.float32),)
    return out


def folder_image_dicts(images, det_file: str, described: str,
                       key: str = "TEST.TOPDOWN.DET_FILE") -> Dict:  # fmt: skip
    """{file: dataset dict with ``image_id``, ``file_name``, ``height``, ``width``} of ``images``
    ((id, Path) pairs of ``multitask_pose.data.image_folder.list_images``), ids as
    ``tools/detect_persons.py --input`` gave them in ``det_file``: by file name from its
    ``<det_file>.images.json`` when there is one, else the same positions. With these dicts and
    the folder's :func:`~multitask_pose.evaluation.results_record.describe_images` as the
    dataset, :class:`TopDownTestMapper` reads ``det_file`` for the folder as for a registered
    dataset (its ids and boxes checked).

    Raises:
        DetectionFileError when the file's record names other images than ``described`` (the
        images' :func:`~multitask_pose.evaluation.results_record.describe_images`), or naming
        the first image its image list lacks.
    """
    from PIL import Image

    path = find_file(det_file)
    if os.path.isfile(path):  # (a missing file: load_detection_file's error)
        try:
            check_record_dataset(read_results_record(path, warn=False), described, path)
        except ResultsDatasetError as e:
            raise DetectionFileError(f"{key}: {e}") from None
    listed = path + ".images.json"
    ids = {}
    if os.path.isfile(listed):
        with open(listed) as f:
            ids = {os.path.basename(e["file_name"]): int(e["id"]) for e in json.load(f)}
        lacking = [p for _, p in images if p.name not in ids]
        if lacking:
            raise DetectionFileError(
                f"{key} {det_file}: {len(lacking)} of the {len(images)} images are not among"
                f" the images it was made on ({os.path.basename(listed)} lists no"
                f" {lacking[0].name}): run tools/detect_persons.py on these images again"
            )
    dicts = {}
    for i, path in images:
        with Image.open(path) as im:  # the header only
            w, h = im.size
        dicts[path] = {"image_id": ids.get(path.name, i), "file_name": str(path),
                       "height": h, "width": w}  # fmt: skip
    return dicts


class PersonDetector:
    """A detectron2 detector (config file + weights) that returns person boxes for an RGB image:
    the "detector" box source, so one predictor goes from image to poses. Any detectron2 model
    works; with several classes, the class named "person" in its training data (else class 0)."""

    def __init__(self, config_file: str, weights: str, device: str = "cpu", trusted=False,
                 allow_random_weights=False):  # fmt: skip
        from multitask_pose.config import get_multitask_cfg
        from multitask_pose.engine.checkpoint import PosePredictor
        from multitask_pose.engine.weights_check import check_weights_given

        # relative paths: from the current directory, else the repository's (shared/paths.py)
        config_file, weights = find_file(config_file), find_file(weights)
        if not config_file or not os.path.isfile(config_file):
            raise FileNotFoundError(f"TEST.TOPDOWN.DETECTOR_CONFIG {config_file!r} is not a"
                                    f" file{looked_in(config_file)}")  # fmt: skip
        key = "TEST.TOPDOWN.DETECTOR_WEIGHTS"
        check_weights_given(weights, key, allow_random_weights)
        cfg = get_multitask_cfg()
        cfg.merge_from_file(config_file)
        cfg.MODEL.WEIGHTS = weights
        cfg.MODEL.DEVICE = device
        # the top-down config's choices
        cfg.MODEL.TRUST_PICKLED_WEIGHTS = trusted
        cfg.MODEL.ALLOW_RANDOM_WEIGHTS = allow_random_weights
        cfg.freeze()
        self.predictor = PosePredictor(cfg, weights_key=key)
        classes = []
        if cfg.DATASETS.TEST:
            from detectron2.data import MetadataCatalog

            classes = MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes", [])
        self.person_class = classes.index("person") if "person" in classes else 0

    def detect(self, image_rgb: np.ndarray):
        """The detector's person instances (on the CPU) with every field it predicts: boxes and
        scores, and a keypoint R-CNN's ``pred_keypoints`` / ``pred_keypoint_heatmaps``, which
        the hint sources read (``topdown/data/hints.py``)."""
        image = image_rgb[:, :, ::-1] if self.predictor.input_format == "BGR" else image_rgb
        inst = self.predictor(np.ascontiguousarray(image))["instances"].to("cpu")
        return inst[inst.pred_classes == self.person_class]

    def __call__(self, image_rgb: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        inst = self.detect(image_rgb)
        return inst.pred_boxes.tensor, inst.scores
