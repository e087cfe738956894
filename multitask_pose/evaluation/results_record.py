"""What made a results file: a small record beside it.

A COCO results list (``image_id``, ``bbox``, ``score``, ``keypoints`` as x, y, score per keypoint)
does not say where it came from, yet its keypoint scores mean different things by producer: a
top-down model's heatmap peaks and an R-CNN's softmax probabilities are different scales, and a
threshold chosen on one (the PCR report's 0.9 for pseudo-labels, on heatmap peaks) keeps almost
nothing on the other. Every tool that writes results writes this record next to them, as
``<results>.meta.json``, so that the list itself stays what pycocotools' ``loadRes`` and every
reader expect. The record (a json object):

- ``dataset``: the registered dataset the results are on (or the images a tool read: "images
  in" a folder's absolute path, :func:`describe_images`; a video);
- ``producer``: the model type: its meta-architecture and network or heads, e.g.
  "GeneralizedRCNN / MultiTaskROIHeads / KeypointOffsetHead", "TopDownPoseEstimator / HRNet",
  "PoseFixEstimator / PoseFixHRNet" (a refiner), "TopDownPoseEstimator / HeatmapEnsemble of 3";
- ``score_scale``: what each keypoint's score is, a key of :data:`SCORE_SCALES` (None for
  results without keypoints, e.g. a detector's boxes), and ``score_scale_meaning`` its sentence;
- optional fields a writer adds (``weights``, the checkpoint; ``written_by``, the tool).

The scales come from the models, not from a table of model names: each codec states its
``score_scale`` (``multitask_pose/codecs``), a model class that scores otherwise states its own
(``keypoint_score_scale_from_config``: PoseFix's estimator, the R-CNN offset head), and
:func:`describe_config` asks the classes a config names. A reader calls
:func:`read_results_record`: a file without a record still loads, with a logged warning.

A reader that is told which dataset the results are on (analysis, hard examples, pseudo-labels,
hard negatives, the top-down stage's detection and hint files, on a registered dataset or on the
images of a folder) refuses results made for another one (:class:`ResultsDatasetError`):
:func:`check_record_dataset` when the record names another registered dataset or folder (image
ids of two splits often overlap, and a folder's ids are the files' positions, so the ids alone
do not tell), and,
record or not, :func:`check_boxes_in_images` when the results' boxes reach beyond the named
dataset's images (the results' images were of other sizes).
"""

import json
import logging
import os
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from ..shared.atomic_io import write_json_atomic
from ..shared.errors import UserError

__all__ = [
    "BOX_TOLERANCE",
    "IMAGES_IN",
    "SCORE_SCALES",
    "ResultsDatasetError",
    "check_boxes_in_images",
    "check_record_dataset",
    "describe_config",
    "describe_images",
    "read_results_record",
    "record_path",
    "write_results_record",
]

logger = logging.getLogger(__name__)

# Every keypoint score scale a writer may state, with what it means (the one place that knows).
SCORE_SCALES = {
    "heatmap_peak": (
        "the maximum of the keypoint's predicted heatmap, trained towards Gaussians of peak 1"
        " (the top-down models' MSRA heatmaps, GaussianHeatmapCodec; the R-CNN keypoint head"
        " with HEATMAP_LOSS gaussian_mse); the PCR report's pseudo-label threshold 0.9 is on"
        " this scale"
    ),
    "softmax_probability": (
        "the softmax probability of the peak over the keypoint's whole heatmap (detectron2's"
        " keypoint R-CNN: heatmaps_to_keypoints' score over the RoI's S x S grid, kept by"
        " keypoint_rcnn_inference; the offset head with HEATMAP_LOSS softmax; SoftArgmaxCodec"
        " over the crop's map); detectron2 draws keypoints scoring above 0.05"
    ),
    "simcc_maximum": (
        "the smaller of the maxima of the keypoint's x and y SimCC classifier outputs, raw (no"
        " softmax; MMPose's get_simcc_maximum), trained towards Gaussian labels that peak at"
        " 1 / (sigma sqrt(2 pi)), about 0.066 at sigma 6 (SimCCCodec)"
    ),
    "person_score": (
        "every keypoint carries its person's score (PoseFix's test, main/test.py:103: the"
        " input entry's score, rescored)"
    ),
    "unknown": "the writer did not state what made the results",
}

_SUFFIX = ".meta.json"
# The record's ``dataset`` for images read from folders or files (:func:`describe_images`).
IMAGES_IN = "images in "
# How far a result's box may reach beyond its image, as a fraction of the image's side (plus 2
# pixels), before the results are taken for another dataset's: every producer here writes boxes
# clipped to the image (detectron2's detector_postprocess, the top-down stage's input boxes),
# and annotated boxes overrun it by rounding at most.
BOX_TOLERANCE = 0.1


class ResultsDatasetError(UserError, ValueError):
    """Results made for another dataset than the one named."""


def record_path(results_path) -> str:
    """The record of ``results_path``: ``<results_path>.meta.json``."""
    return os.fspath(results_path) + _SUFFIX


def write_results_record(
    results_path, *, dataset: str, producer: str, score_scale: Optional[str], **extra
) -> Dict:
    """Write the record of ``results_path`` atomically and return it.

    Args:
        dataset: the registered dataset (or the images) the results are on.
        producer: the model type (:func:`describe_config`'s ``producer``).
        score_scale: a key of :data:`SCORE_SCALES`, or None when the results have no keypoints.
        extra: further json fields (``weights``, ``written_by``, ...).

    Raises:
        ValueError naming the scale when it is not one of :data:`SCORE_SCALES`.
    """
    if score_scale is not None and score_scale not in SCORE_SCALES:
        raise ValueError(
            f"keypoint score scale {score_scale!r} is not one of {sorted(SCORE_SCALES)}"
            " (multitask_pose/evaluation/results_record.py)"
        )
    record = {
        "dataset": str(dataset),
        "producer": str(producer),
        "score_scale": score_scale,
        "score_scale_meaning": SCORE_SCALES[score_scale] if score_scale else None,
        **extra,
    }
    write_json_atomic(record_path(results_path), record, indent=1)
    return record


def read_results_record(results_path, *, warn: bool = True) -> Optional[Dict]:
    """The record of ``results_path``, or None (with a logged warning unless ``warn`` is False)
    when it has none: the file still loads, but what made it is unknown.

    Raises:
        ValueError naming the record when it exists but is not a json object with a
        ``score_scale``.
    """
    path = record_path(results_path)
    if not os.path.isfile(path):
        if warn:
            logger.warning(
                "%s has no record of what made it (%s is missing): its dataset, producer and"
                " keypoint score scale are unknown",
                results_path, os.path.basename(path),
            )  # fmt: skip
        return None
    with open(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not json ({e})") from None
    if not isinstance(record, dict) or "score_scale" not in record:
        raise ValueError(f"{path}: not a results record (no score_scale)")
    return record


def describe_config(cfg) -> Dict:
    """``{"producer", "score_scale", "weights"}`` of the model ``cfg`` builds, from the classes it
    names (nothing is built): the meta-architecture's ``keypoint_score_scale_from_config`` when
    it has one (the top-down estimators: their codec's scale, PoseFix's "person_score"); for an
    R-CNN with keypoints, the keypoint head's, or detectron2's softmax probability for
    detectron2's heads (``keypoint_rcnn_inference``); None without keypoints."""
    from detectron2.modeling import META_ARCH_REGISTRY
    from detectron2.modeling.roi_heads import ROI_KEYPOINT_HEAD_REGISTRY

    name = cfg.MODEL.META_ARCHITECTURE
    arch = META_ARCH_REGISTRY.get(name)
    scale_of = getattr(arch, "keypoint_score_scale_from_config", None)
    if scale_of is not None:  # a top-down estimator
        net = cfg.MODEL.TOPDOWN.POSE_NET
        if net == "HeatmapEnsemble":
            net = f"{net} of {len(cfg.MODEL.ENSEMBLE.CONFIGS)}"
        producer, scale = f"{name} / {net}", scale_of(cfg)
    else:
        parts = [name, cfg.MODEL.ROI_HEADS.NAME]
        scale = None
        if cfg.MODEL.KEYPOINT_ON:
            head_name = cfg.MODEL.ROI_KEYPOINT_HEAD.NAME
            parts.append(head_name)
            head = ROI_KEYPOINT_HEAD_REGISTRY.get(head_name)
            head_scale = getattr(head, "keypoint_score_scale_from_config", None)
            scale = head_scale(cfg) if head_scale is not None else "softmax_probability"
        producer = " / ".join(parts)
    return {"producer": producer, "score_scale": scale, "weights": cfg.MODEL.WEIGHTS}


def _same_dataset(a: str, b: str) -> bool:
    """The same name, or two registered names of one annotation file and image folder."""
    if a == b:
        return True
    from detectron2.data import MetadataCatalog

    va, vb = ([MetadataCatalog.get(n).get(k, None) for k in ("json_file", "image_root")]
              for n in (a, b))  # fmt: skip
    return None not in va and va == vb


def describe_images(inputs: Iterable) -> str:
    """The record's ``dataset`` for the images of ``inputs`` (folders and/or files) rather than
    a registered dataset: "images in " and their absolute paths (joined by ``os.pathsep``), so
    that a reader run from another directory compares the same images
    (:func:`check_record_dataset`)."""
    return IMAGES_IN + os.pathsep.join(os.path.abspath(os.fspath(p)) for p in inputs)


def _images_of(name: str) -> Optional[List[str]]:
    """The absolute paths of a :func:`describe_images` description (relative ones, of records
    written before the paths were made absolute, from the current directory); None for other
    names."""
    if not name.startswith(IMAGES_IN):
        return None
    return [os.path.abspath(p) for p in name[len(IMAGES_IN):].split(os.pathsep) if p]


def _within(paths: List[str], folders: List[str]) -> bool:
    """Every one of ``paths`` is one of ``folders`` or inside one."""
    return all(any(p == f or p.startswith(f.rstrip(os.sep) + os.sep) for f in folders)
               for p in paths)  # fmt: skip


def _what(name: str) -> str:
    return name if name.startswith(IMAGES_IN) else f"dataset {name!r}"


def check_record_dataset(record: Optional[Dict], dataset: str, results_path) -> None:
    """:class:`ResultsDatasetError` (one line naming both) when ``record`` (of ``results_path``)
    says the results are on other images than ``dataset``: a registered dataset or the images
    of folders (:func:`describe_images`, whose image ids are the files' positions, not a
    dataset's ids). Refused: another registered dataset; images that are not the record's
    folders or files nor inside them; a registered dataset for images; images for a registered
    dataset. No record, or a record naming other inputs (a video), passes: the ids and boxes
    are then the only evidence (:func:`check_boxes_in_images`)."""
    named = (record or {}).get("dataset")
    if not named or named == dataset:
        return
    from detectron2.data import DatasetCatalog

    named_images, wanted_images = _images_of(named), _images_of(dataset)
    if named_images is not None:
        if wanted_images is not None and _within(wanted_images, named_images):
            return
    elif named not in DatasetCatalog.list():  # a video, a camera: no evidence either way
        return
    elif wanted_images is None and _same_dataset(named, dataset):
        return
    said = f"(its record {os.path.basename(record_path(results_path))} says so)"
    if named_images is None and wanted_images is None:
        raise ResultsDatasetError(
            f"{results_path} holds results on dataset {named!r} {said}, not on {dataset!r}:"
            f" give the results of {dataset!r}, or name {named!r} as the dataset"
        )
    raise ResultsDatasetError(
        f"{results_path} holds results on {_what(named)} {said}, not on {_what(dataset)}: give"
        f" results made on {_what(dataset)}"
    )


def check_boxes_in_images(
    entries: Iterable[Dict],
    image_sizes: Mapping[int, Tuple[float, float]],
    dataset: str,
    results_path,
    tolerance: float = BOX_TOLERANCE,
) -> None:
    """:class:`ResultsDatasetError` when any result's ``bbox`` (COCO xywh) reaches beyond its
    image of ``dataset`` by more than ``tolerance`` of the image's side plus 2 pixels: the
    results were made on images of other sizes. ``image_sizes``: {image id: (height, width)};
    entries without a box, or of images without a known size, are not checked."""
    rows = [(e["image_id"], e["bbox"]) for e in entries
            if isinstance(e.get("bbox"), (list, tuple)) and len(e["bbox"]) == 4
            and all(isinstance(v, (int, float)) for v in e["bbox"])
            and e.get("image_id") in image_sizes]  # fmt: skip
    if not rows:
        return
    boxes = np.asarray([b for _, b in rows], dtype=np.float64)
    hw = np.asarray([image_sizes[i] for i, _ in rows], dtype=np.float64)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    mx, my = tolerance * hw[:, 1] + 2, tolerance * hw[:, 0] + 2
    out = (x1 < -mx) | (y1 < -my) | (x2 > hw[:, 1] + mx) | (y2 > hw[:, 0] + my)
    if not out.any():
        return
    k = int(np.flatnonzero(out)[0])
    h, w = hw[k]
    raise ResultsDatasetError(
        f"{results_path}: {int(out.sum())} of {len(rows)} boxes reach beyond their image of"
        f" dataset {dataset!r} by more than {tolerance:.0%} (e.g. image {rows[k][0]}: box x, y,"
        f" w, h {np.round(boxes[k], 1).tolist()} in a {w:.0f} x {h:.0f} image): results made"
        " for another dataset?"
    )
