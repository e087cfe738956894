"""The inputs of the analysis, checked: a registered dataset's ground truth as pycocotools takes
it, and a COCO keypoint results file made for that dataset."""

import contextlib
import io
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO

from ...data.keypoints import KeypointSpec, keypoint_spec_of
from ..ground_truth import complete_ground_truth, is_crowdpose_layout
from ..results_record import (
    ResultsDatasetError,
    check_boxes_in_images,
    check_record_dataset,
    read_results_record,
)


class AnalysisInputError(ValueError):
    """A dataset or results file the analysis cannot use; the message names it and the mismatch."""


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_ground_truth(
    dataset_name: str, missing_area_factor: Optional[float] = None
) -> Tuple[COCO, KeypointSpec, str]:
    """The dataset's ground truth as a pycocotools ``COCO`` (COCO pixel convention, see the module
    doc), its :class:`KeypointSpec` and a description of where it came from.

    Keeps the one category that has keypoints; completes what COCOeval needs as the evaluator
    does (``ground_truth.complete_ground_truth``: ``area`` from the box x
    ``missing_area_factor``, or CrowdPose's rule for its layout; ids 0 or repeated renumbered,
    ``num_keypoints``, ``iscrowd``).
    """
    if dataset_name not in DatasetCatalog.list():
        raise AnalysisInputError(
            f"dataset {dataset_name!r} is not registered with detectron2's DatasetCatalog "
            "(`import multitask_pose` registers the built-in ones)"
        )
    meta = MetadataCatalog.get(dataset_name)
    json_file = meta.get("json_file", None)
    try:
        spec = keypoint_spec_of(dataset_name)
    except KeyError as e:
        raise AnalysisInputError(
            f"dataset {dataset_name!r}{f' ({json_file})' if json_file else ''} has no keypoints: "
            f"{e.args[0]}"
        ) from None
    if json_file:
        if not os.path.isfile(json_file):
            DatasetCatalog.get(dataset_name)  # generated datasets write their json on first load
        if not os.path.isfile(json_file):
            raise AnalysisInputError(
                f"dataset {dataset_name!r}: annotation file not found: {json_file}"
            )
        source = str(json_file)
        with open(json_file) as f:
            dataset = json.load(f)
    else:
        from detectron2.data.datasets.coco import convert_to_coco_dict

        source = f"dataset {dataset_name!r} (DatasetCatalog, converted to COCO format)"
        dataset = convert_to_coco_dict(dataset_name)

    k = spec.num_keypoints
    with_kp = [a for a in dataset.get("annotations", []) if a.get("keypoints")]
    if not with_kp:
        raise AnalysisInputError(f"{source}: dataset {dataset_name!r} has no keypoint annotations")
    cats = sorted({a["category_id"] for a in with_kp})
    if len(cats) != 1:
        raise AnalysisInputError(
            f"{source}: keypoints in categories {cats}; the analysis takes one category"
        )
    dataset = {
        "images": dataset["images"],
        "categories": [c for c in dataset["categories"] if c["id"] == cats[0]],
        "annotations": [a for a in dataset["annotations"] if a.get("category_id") == cats[0]],
    }
    try:
        dataset = complete_ground_truth(
            dataset, source=source, num_keypoints=k, area_factor=missing_area_factor,
            crowdpose=is_crowdpose_layout(spec.keypoint_names),
        )  # fmt: skip
    except ValueError as e:
        raise AnalysisInputError(f"{e} (dataset {dataset_name!r})") from None
    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco, spec, source


def load_results(
    results_file, coco_gt: COCO, spec: KeypointSpec, dataset_name: str = ""
) -> List[Dict]:
    """Read and check a COCO keypoint results file against the ground truth.

    Returns a list of ``{"image_id", "category_id", "keypoints", "score"}``. Raises
    :class:`AnalysisInputError`, naming the file, when it is not a non-empty COCO results list,
    has no keypoints, has a keypoint count other than the dataset's, or names images or
    categories the dataset does not have, or when its record names another dataset or its boxes
    reach beyond the dataset's images (results for another dataset; ``results_record.py``).
    """
    path = str(results_file)
    ds = f"dataset {dataset_name!r}" if dataset_name else "the dataset"
    if not os.path.isfile(path):
        raise AnalysisInputError(f"results file not found: {path}")
    try:
        record = read_results_record(path)  # what made it; a warning when unknown
        if dataset_name:
            check_record_dataset(record, dataset_name, path)
    except ValueError as e:  # a damaged record, or results on another dataset
        raise AnalysisInputError(str(e)) from None
    try:
        with open(path) as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        raise AnalysisInputError(f"{path}: not a readable JSON file ({e})") from None
    if isinstance(entries, dict):
        hint = " (this looks like an annotation file)" if "annotations" in entries else ""
        raise AnalysisInputError(
            f"{path}: expected a COCO results list of detections, got an object{hint}"
        )
    if not isinstance(entries, list) or not entries:
        raise AnalysisInputError(f"{path}: the results file is empty: no detections to analyse")
    missing = [i for i, e in enumerate(entries) if not isinstance(e, dict) or "keypoints" not in e]
    if len(missing) == len(entries):
        raise AnalysisInputError(
            f"{path}: no detection has 'keypoints' (a box or mask results file?)"
        )
    if missing:
        raise AnalysisInputError(
            f"{path}: {len(missing)} of {len(entries)} detections have no 'keypoints' "
            f"(first: entry {missing[0]})"
        )
    k3 = 3 * spec.num_keypoints
    wrong = [(i, len(e["keypoints"])) for i, e in enumerate(entries) if len(e["keypoints"]) != k3]
    if wrong:
        i, n = wrong[0]
        raise AnalysisInputError(
            f"{path}: {len(wrong)} of {len(entries)} detections have a keypoint count other than "
            f"{ds}'s {spec.num_keypoints} ({k3} values); entry {i} (image "
            f"{entries[i].get('image_id')}) has {n} values = {n // 3} keypoints. Results for "
            "another dataset?"
        )
    for key in ("image_id", "score"):
        lacking = [i for i, e in enumerate(entries) if key not in e]
        if lacking:
            raise AnalysisInputError(
                f"{path}: {len(lacking)} detections have no {key!r} (first: entry {lacking[0]})"
            )
    known = set(coco_gt.getImgIds())
    unknown = sorted({e["image_id"] for e in entries} - known, key=str)
    if unknown:
        raise AnalysisInputError(
            f"{path}: {len(unknown)} image ids are not in {ds} (e.g. {unknown[:5]}); "
            f"it has {len(known)} images. Results for another dataset?"
        )
    sizes = {i: (im["height"], im["width"]) for i, im in coco_gt.imgs.items()
             if "height" in im and "width" in im}  # fmt: skip
    try:
        check_boxes_in_images(entries, sizes, dataset_name or "the dataset", path)
    except ResultsDatasetError as e:
        raise AnalysisInputError(str(e)) from None
    cats = coco_gt.getCatIds()
    out = []
    for e in entries:
        cat = e.get("category_id", cats[0])
        if cat not in cats:
            raise AnalysisInputError(
                f"{path}: category_id {cat} (image {e['image_id']}) is not {ds}'s keypoint "
                f"category {cats}"
            )
        kp = np.asarray(e["keypoints"], dtype=np.float64)
        if not (np.isfinite(kp).all() and np.isfinite(float(e["score"]))):
            raise AnalysisInputError(
                f"{path}: detection in image {e['image_id']} has non-finite values"
            )
        det = {
            "image_id": e["image_id"],
            "category_id": cat,
            "keypoints": kp,
            "score": float(e["score"]),
        }
        if len(e.get("bbox") or ()) == 4:
            det["bbox"] = [float(v) for v in e["bbox"]]
        out.append(det)
    return out
