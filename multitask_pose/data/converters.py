"""Converters from AI Challenger's and CrowdPose's annotation files to COCO-format json that
detectron2's ``load_coco_json`` (and :func:`register_coco_person`) reads, in the dataset's own
14-keypoint layout or mapped to COCO's 17 (:func:`map_keypoints`: the 12 limb joints kept, head
top and neck dropped, COCO's face points unlabelled).

- AI Challenger's raw release: a json list of ``{"image_id": <file stem>, "keypoint_annotations":
  {"human1": [x, y, v] * 14, ...}, "human_annotations": {"human1": [x1, y1, x2, y2], ...}}`` with
  v = 1 visible, 2 occluded, 3 not labelled (COCO: 2, 1, 0). Image sizes are read from the image
  files' headers.
- CrowdPose: COCO-style json already (images carry ``crowdIndex``, kept), but without ``area``.
  Each person keeps the file's ``num_keypoints``: the release counts only the 12 limb joints
  (``CROWDPOSE_COUNTED_JOINTS``), and CrowdPose's evaluation ignores persons whose count is 0
  (Jeff-sjtu/CrowdPose @86fe5e1, crowdpose-api/PythonAPI/crowdposetools/cocoeval.py:126), so a
  person labelled only at head and neck stays ignored. A person without a count gets the release's
  (its labelled limb joints); in COCO's layout the count is that of the mapped keypoints, which
  are those same limb joints.

Neither gives a person's area, which COCO's OKS needs: it is filled as the box area times
``AREA_FACTOR`` of the layout: 1.0 for AI Challenger (its official evaluation's OKS scale is the
box area; at least 1) and 0.53 for CrowdPose (its official evaluation's OKS scale and area-range
measure, box width x height x 0.53: cocoeval.py:258 and :282). The evaluator applies CrowdPose's
rule to a dataset in CrowdPose's layout whatever its file holds (``evaluation/ground_truth.py``),
so the converted file and the raw release registered as is score the same.
"""

import json
import os
from typing import Dict

import numpy as np

from ..shared.atomic_io import write_json_atomic
from .datasets import DatasetFormatError, register_coco_person
from .keypoints import (
    AIC_PERSON,
    COCO_PERSON,
    CROWDPOSE_COUNTED_JOINTS,
    CROWDPOSE_PERSON,
    KeypointSpec,
    map_keypoints,
)
from .paths import synth_cache_root

__all__ = [
    "AREA_FACTOR",
    "aic_raw_from_coco",
    "convert_aic",
    "convert_crowdpose",
    "register_aic",
    "register_crowdpose",
    "summary",
]
CONVERTER_VERSION = 2  # part of the cache key of converted files: bump when the output changes

AREA_FACTOR = {AIC_PERSON.name: 1.0, CROWDPOSE_PERSON.name: 0.53}
_AIC_VISIBILITY = {1: 2, 2: 1, 3: 0}  # AI Challenger's flag -> COCO's


def _category(spec: KeypointSpec) -> Dict:
    idx = {n: i + 1 for i, n in enumerate(spec.keypoint_names)}
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(spec.keypoint_names),
        "skeleton": [[idx[a], idx[b]] for a, b, _ in spec.connection_rules],
    }


def _person(keypoints: np.ndarray, src: KeypointSpec, out: KeypointSpec, box_xywh, area,
            num_keypoints=None):  # fmt: skip
    """A COCO annotation (without ids) of (K_src, 3) COCO-flagged keypoints; ``num_keypoints``
    None counts the labelled output keypoints."""
    kp = map_keypoints(keypoints, src, out) if out is not src else np.array(keypoints, float)
    kp[kp[:, 2] == 0, :2] = 0  # an unlabelled point has no position
    w, h = float(box_xywh[2]), float(box_xywh[3])
    flat = [float(v) if i % 3 < 2 else int(v) for i, v in enumerate(kp.reshape(-1))]
    return {
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [float(box_xywh[0]), float(box_xywh[1]), w, h],
        "area": float(area),
        "keypoints": flat,
        "num_keypoints": int((kp[:, 2] > 0).sum()) if num_keypoints is None else num_keypoints,
    }


def _layout(layout: str, own: KeypointSpec) -> KeypointSpec:
    if layout not in ("coco", "own"):
        raise ValueError(f"layout must be 'coco' or 'own', got {layout!r}")
    return COCO_PERSON if layout == "coco" else own


class _Problems:
    """Stops at the first invalid input, or (``skip``) counts and lists them."""

    def __init__(self, source: str, skip: bool):
        self.source, self.skip, self.items = source, skip, []

    def __call__(self, where: str, what: str):
        if not self.skip:
            raise DatasetFormatError(f"{self.source}: {where}: {what} (--skip-invalid skips it)")
        self.items.append(f"{where}: {what}")


def convert_aic(
    raw_file: str,
    image_root: str,
    out_file: str,
    layout: str = "coco",
    skip_invalid: bool = False,
) -> Dict:
    """Convert an AI Challenger raw keypoint file (module docstring) to COCO-format json.

    Args:
        raw_file: the release's ``keypoint_*_annotations_*.json``.
        image_root: the folder of its images (``<image_id>.jpg``).
        out_file: the COCO json to write (atomically).
        layout: "coco" (COCO's 17 keypoints) or "own" (AI Challenger's 14).
        skip_invalid: skip (and count) invalid persons and unknown images instead of stopping.

    Returns:
        a report: images, persons, skipped (what and where), the output file.

    Raises:
        DatasetFormatError naming the image and person: a keypoint list that is not 14 x 3
        numbers, a visibility outside 1-3, an image not under ``image_root``, a box without
        positive size.
    """
    from PIL import Image

    out = _layout(layout, AIC_PERSON)
    with open(raw_file) as f:
        raw = json.load(f)
    if not isinstance(raw, list):
        raise DatasetFormatError(
            f"{raw_file}: not an AI Challenger raw file (a json list of images expected, got"
            f" {type(raw).__name__})"
        )
    problem = _Problems(raw_file, skip_invalid)
    images, annotations = [], []
    for entry in raw:
        stem = entry.get("image_id")
        path = os.path.join(image_root, f"{stem}.jpg")
        if not os.path.isfile(path):
            problem(f"image {stem!r}", f"no file {path}")
            continue
        with Image.open(path) as im:
            width, height = im.size
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": width,
                       "height": height, "aic_image_id": stem})  # fmt: skip
        boxes = entry.get("human_annotations", {})
        for human, values in entry.get("keypoint_annotations", {}).items():
            where = f"image {stem!r}, person {human!r}"
            if not isinstance(values, list) or len(values) != 3 * AIC_PERSON.num_keypoints:
                n = len(values) if isinstance(values, list) else type(values).__name__
                problem(where, f"{n} keypoint numbers, expected {3 * AIC_PERSON.num_keypoints}")
                continue
            kp = np.asarray(values, dtype=np.float64).reshape(-1, 3)
            bad = sorted({int(v) for v in kp[:, 2] if v not in _AIC_VISIBILITY})
            if bad:
                problem(where, f"visibility {bad} outside 1 (visible), 2 (occluded), 3 (none)")
                continue
            box = boxes.get(human)
            if box is None or len(box) != 4 or not (box[2] > box[0] and box[3] > box[1]):
                problem(where, f"box {box} (x1, y1, x2, y2) without positive size")
                continue
            kp[:, 2] = [_AIC_VISIBILITY[int(v)] for v in kp[:, 2]]
            xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            area = max(1.0, xywh[2] * xywh[3] * AREA_FACTOR[AIC_PERSON.name])
            ann = _person(kp, AIC_PERSON, out, xywh, area)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    return _write(out_file, images, annotations, out, problem)


def convert_crowdpose(
    json_file: str, out_file: str, layout: str = "coco", skip_invalid: bool = False
) -> Dict:
    """Convert CrowdPose's COCO-style json to COCO-format json with areas (module docstring),
    in COCO's layout ("coco") or its own ("own"). Images keep their ``crowdIndex``, persons the
    file's ``num_keypoints`` (the release's count over the 12 limb joints).

    Raises:
        DatasetFormatError naming the image and person: a keypoint list that is not 14 x 3
        numbers, a visibility outside 0-2, an unknown image, a box without positive size.
    """
    out = _layout(layout, CROWDPOSE_PERSON)
    with open(json_file) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not {"images", "annotations"} <= set(data):
        raise DatasetFormatError(f"{json_file}: not a COCO-style file (no images/annotations)")
    problem = _Problems(json_file, skip_invalid)
    images = [dict(im) for im in data["images"]]
    known = {im["id"] for im in images}
    annotations = []
    for a in data["annotations"]:
        where = f"image {a.get('image_id')!r}, person {a.get('id')!r}"
        values = a.get("keypoints", [])
        if a.get("image_id") not in known:
            problem(where, "an image the file does not list")
            continue
        if len(values) != 3 * CROWDPOSE_PERSON.num_keypoints:
            problem(where, f"{len(values)} keypoint numbers, expected 42")
            continue
        kp = np.asarray(values, dtype=np.float64).reshape(-1, 3)
        bad = sorted({int(v) for v in kp[:, 2] if v not in (0, 1, 2)})
        if bad:
            problem(where, f"visibility {bad} outside 0-2")
            continue
        box = a.get("bbox", [])
        if len(box) != 4 or not (box[2] > 0 and box[3] > 0):
            problem(where, f"box {box} (x, y, w, h) without positive size")
            continue
        count = a.get("num_keypoints")
        if count is None:  # the release's count: labelled limb joints
            count = int((kp[[CROWDPOSE_PERSON.keypoint_names.index(n)
                             for n in CROWDPOSE_COUNTED_JOINTS], 2] > 0).sum())  # fmt: skip
        area = float(box[2]) * float(box[3]) * AREA_FACTOR[CROWDPOSE_PERSON.name]
        ann = _person(kp, CROWDPOSE_PERSON, out, box, area,
                      int(count) if out is CROWDPOSE_PERSON else None)  # fmt: skip
        ann["iscrowd"] = int(a.get("iscrowd", 0))
        annotations.append({"id": a["id"], "image_id": a["image_id"], **ann})
    return _write(out_file, images, annotations, out, problem)


def aic_raw_from_coco(coco: Dict) -> list:
    """The inverse of :func:`convert_aic` (layout "own"): a COCO-format dataset in AI
    Challenger's 14-keypoint layout as the raw release writes it (image entries named by file
    stem, persons ``human1``, ... with integer x1, y1, x2, y2 boxes and integer keypoints, flags 1
    visible / 2 occluded / 3 none at (0, 0)). Its images must be ``<stem>.jpg`` files. The
    SynthPeople AIC split is published this way, so that its converter reads it as it reads the
    real release. ValueError on another layout or another image extension."""
    names = coco.get("categories", [{}])[0].get("keypoints")
    if names is not None and tuple(names) != AIC_PERSON.keypoint_names:
        raise ValueError(f"aic_raw_from_coco: keypoints {names} are not AI Challenger's")
    to_flag = {v: k for k, v in _AIC_VISIBILITY.items()}
    by_image = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        by_image[a["image_id"]].append(a)
    raw = []
    for im in coco["images"]:
        stem, ext = os.path.splitext(im["file_name"])
        if ext != ".jpg" or os.sep in stem:
            raise ValueError(f"aic_raw_from_coco: image {im['id']}: {im['file_name']} is not a"
                             " <stem>.jpg name in the image folder")  # fmt: skip
        keypoints, boxes = {}, {}
        for k, a in enumerate(by_image[im["id"]], 1):
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            flags = np.array([to_flag[int(v)] for v in kp[:, 2]])
            xy = np.where(flags[:, None] == 3, 0, np.rint(kp[:, :2])).astype(int)
            keypoints[f"human{k}"] = np.column_stack([xy, flags]).reshape(-1).tolist()
            x, y, w, h = a["bbox"]
            x1, y1 = int(np.floor(x)), int(np.floor(y))
            x2, y2 = max(int(np.ceil(x + w)), x1 + 1), max(int(np.ceil(y + h)), y1 + 1)
            boxes[f"human{k}"] = [x1, y1, x2, y2]
        raw.append({"image_id": stem, "keypoint_annotations": keypoints,
                    "human_annotations": boxes})  # fmt: skip
    return raw


def _write(out_file, images, annotations, spec, problem) -> Dict:
    data = {"images": images, "annotations": annotations, "categories": [_category(spec)]}
    write_json_atomic(out_file, data)
    return {
        "output": str(out_file),
        "layout": spec.name,
        "images": len(images),
        "persons": len(annotations),
        "skipped": len(problem.items),
        "skipped_items": problem.items,
    }


def summary(report: Dict, prefix: str) -> str:
    """One line for a log or a note; the first skipped items when there are any."""
    line = (
        f"{prefix}: {report['images']} images, {report['persons']} persons in the"
        f" {report['layout']} layout, {report['skipped']} skipped -> {report['output']}"
    )
    items = report["skipped_items"]
    if items:
        line += " (" + "; ".join(items[:3]) + (" ..." if len(items) > 3 else "") + ")"
    return line


def _cached_json(name: str, source: str, layout: str) -> str:
    """Where the converted file of ``source`` lives: the datasets cache, keyed by the source's
    path, size and modification time, the layout and the converter version."""
    import hashlib

    st = os.stat(source)
    key = f"{os.path.abspath(source)}|{st.st_size}|{st.st_mtime_ns}|{layout}|{CONVERTER_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return str(synth_cache_root() / "converted" / f"{name}-{digest}.json")


def _register_converted(name, source, image_root, layout, own, convert):
    if not os.path.isfile(source):
        raise FileNotFoundError(f"dataset {name!r}: annotation file not found: {source}")
    out = _cached_json(name, source, layout)

    def prepare():
        if not os.path.isfile(out):
            convert(out)

    register_coco_person(name, out, image_root, _layout(layout, own), prepare=prepare,
                         source_file=str(source))  # fmt: skip


def register_aic(name: str, raw_file: str, image_root: str, layout: str = "coco") -> None:
    """Register a copy of AI Challenger in one line: its raw release file is converted
    (:func:`convert_aic`) into the datasets cache on first load (again when the file changes),
    in COCO's layout (``layout="coco"``) or its own 14 keypoints (``"own"``)."""
    _register_converted(name, raw_file, image_root, layout, AIC_PERSON,
                        lambda out: convert_aic(raw_file, image_root, out, layout))  # fmt: skip


def register_crowdpose(name: str, json_file: str, image_root: str, layout: str = "own") -> None:
    """Register a copy of CrowdPose in one line (converted by :func:`convert_crowdpose` into the
    datasets cache on first load), in its own 14 keypoints (default: its evaluation, with AP per
    crowding level) or COCO's (``layout="coco"``)."""
    _register_converted(name, json_file, image_root, layout, CROWDPOSE_PERSON,
                        lambda out: convert_crowdpose(json_file, out, layout))  # fmt: skip
