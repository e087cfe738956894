"""The one reader of detection-results files (a COCO results list: ``image_id``, ``bbox`` XYWH,
``score``, optionally ``category_id`` and ``keypoints``), for both stages: the hard negatives'
file (``hard_negatives.py``), the top-down stage's boxes and hints (``TEST.TOPDOWN.DET_FILE``,
``HINT.FILE``).

:func:`read_detection_file` reads the list and refuses a file made for other images (its record
names another dataset or folder, or its boxes reach beyond the dataset's images:
``multitask_pose/evaluation/results_record.py``); :func:`load_detection_file` also checks every
entry and returns arrays per image.
"""

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..evaluation.results_record import (
    ResultsDatasetError,
    check_boxes_in_images,
    check_record_dataset,
    read_results_record,
)
from ..shared.errors import UserError
from ..shared.paths import find_file, looked_in

__all__ = [
    "DetectionDatasetError",
    "DetectionFileError",
    "load_detection_file",
    "read_detection_file",
]


class DetectionFileError(UserError, ValueError):
    """A detection-results file that cannot be used: wrong format or unknown images."""


class DetectionDatasetError(DetectionFileError, ResultsDatasetError):
    """A detection-results file made for another dataset than the one it is used with."""


def read_detection_file(path: str, key: str, dataset: str = "",
                        image_sizes: Optional[Dict[int, Tuple[float, float]]] = None,
                        ) -> List[Dict]:  # fmt: skip
    """The list of detections in ``path``, the file that config key ``key`` names (relative: from
    the current directory, else the repository's). With ``dataset`` (a dataset's name) a file
    whose record names another dataset or folder is refused, and with ``image_sizes``
    ({image id: (height, width)}) one whose boxes reach beyond the images.

    Raises:
        FileNotFoundError naming the key; :class:`DetectionFileError` for a file that is not a
        json list; :class:`DetectionDatasetError` (a ``ResultsDatasetError`` too) naming the key
        for a file made for other images.
    """
    path = find_file(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"detection file not found: {path} ({key}){looked_in(path)}")
    record = read_results_record(path)  # what made it; a warning when unknown
    if dataset:
        try:
            check_record_dataset(record, dataset, path)
        except ResultsDatasetError as e:
            raise DetectionDatasetError(f"{key}: {e}") from None
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
    if image_sizes is not None:
        _check_boxes(dets, image_sizes, dataset, path, key)
    return dets


def _check_boxes(dets, image_sizes, dataset, path, key):
    try:
        check_boxes_in_images(dets, image_sizes, dataset or "the dataset", path)
    except ResultsDatasetError as e:
        raise DetectionDatasetError(f"{key}: {e}") from None


def load_detection_file(
    path: str,
    image_ids,
    category_id: Optional[int] = 1,
    with_keypoints: bool = False,
    key: str = "TEST.TOPDOWN.DET_FILE",
    dataset: str = "",
    image_sizes: Optional[Dict[int, Tuple[float, float]]] = None,
) -> Dict[int, Tuple[np.ndarray, ...]]:
    """:func:`read_detection_file`'s detections of the given images as
    ``{image_id: (boxes XYXY (N, 4), scores (N,))}``. ``with_keypoints``: the file is a keypoint
    results file (each entry also has ``"keypoints"``: K x (x, y, score) in COCO's frame), and
    each value gets a third array, (N, K, 3) keypoints in detectron2's pixel-centre frame (+0.5,
    as ``pred_keypoints``).

    Raises :class:`DetectionFileError` on a malformed entry or on image ids that are not in the
    dataset (the usual sign of a file made for another split). Images of the dataset without any
    detection get empty arrays. ``category_id`` keeps one category (1, person, in COCO); None keeps
    all. ``key``, ``dataset``, ``image_sizes``: as for :func:`read_detection_file` (the boxes are
    checked against the image sizes after the entries).
    """
    path = find_file(path)
    dets = read_detection_file(path, key, dataset)
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
        _check_boxes(dets, image_sizes, dataset, path, key)
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
