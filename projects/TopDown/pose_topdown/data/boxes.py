"""Person boxes for the top-down stage: from the dataset, from a COCO detection-results file, or
from a detectron2 detector run in the loop. Every source ends as (boxes XYXY, scores) per image and
goes through the same :func:`filter_person_boxes`.
"""

import json
import logging
import os
from typing import Dict, Tuple

import numpy as np
import torch
from detectron2.structures import BoxMode

from multitask_pose.data.detection_file import DetectionFileError, load_detection_file
from multitask_pose.evaluation.results_record import (
    ResultsDatasetError,
    check_record_dataset,
    read_results_record,
)
from multitask_pose.shared.paths import find_file, looked_in
from multitask_pose.shared.person_boxes import filter_person_boxes

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
        the hint sources read (``pose_topdown/data/hints.py``)."""
        image = image_rgb[:, :, ::-1] if self.predictor.input_format == "BGR" else image_rgb
        inst = self.predictor(np.ascontiguousarray(image))["instances"].to("cpu")
        return inst[inst.pred_classes == self.person_class]

    def __call__(self, image_rgb: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        inst = self.detect(image_rgb)
        return inst.pred_boxes.tensor, inst.scores
