"""Dataset registration: the real COCO person sample and the generated SynthPeople splits.

Every dataset is registered with detectron2's ``DatasetCatalog`` and carries its keypoint
metadata (``multitask_pose.data.keypoints``) in ``MetadataCatalog``. Annotations are checked on
load, so a malformed one fails with the file and annotation id in the message instead of deep
inside a data loader worker.
"""

import logging
import os
from typing import Dict, List

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .keypoints import COCO_PERSON, LAYOUTS, KeypointSpec

__all__ = [
    "DatasetFormatError",
    "register_config_datasets",
    "register_coco_person",
    "validate_dataset_dicts",
]

logger = logging.getLogger(__name__)


class DatasetFormatError(ValueError):
    """An annotation file that does not describe what it claims to."""


def validate_dataset_dicts(dicts: List[Dict], spec: KeypointSpec, source: str) -> List[Dict]:
    """Check what detectron2's loaders do not: image files exist, boxes have positive size,
    keypoint lists have 3*K numbers. Raises :class:`DatasetFormatError` naming ``source``, the
    image and the annotation id. An image without annotations is valid."""
    k3 = 3 * spec.num_keypoints
    for d in dicts:
        if not os.path.isfile(d["file_name"]):
            raise DatasetFormatError(
                f"{source}: image {d.get('image_id')} file not found: {d['file_name']}"
            )
        for a in d.get("annotations", []):
            where = f"{source}: annotation id {a.get('id')} (image {d.get('image_id')})"
            box = a.get("bbox")
            if box is None or len(box) != 4:
                raise DatasetFormatError(f"{where}: bbox must have 4 numbers, got {box!r}")
            if not (box[2] > 0 and box[3] > 0):
                raise DatasetFormatError(
                    f"{where}: bbox {list(box)} has non-positive width or height"
                )
            kp = a.get("keypoints")
            if kp is not None:
                if len(kp) != k3:
                    raise DatasetFormatError(
                        f"{where}: 'keypoints' has {len(kp)} numbers; {spec.name} needs 3 x "
                        f"{spec.num_keypoints} = {k3}"
                    )
                if not np.isfinite(np.asarray(kp, dtype=np.float64)).all():
                    raise DatasetFormatError(f"{where}: 'keypoints' has non-finite values")
    return dicts


def register_coco_person(
    name: str,
    json_file: str,
    image_root: str,
    spec: KeypointSpec = COCO_PERSON,
    prepare=None,
    transform=None,
    **metadata,
) -> None:
    """Register a COCO-format person-keypoints dataset with its keypoint metadata.

    ``prepare``, if given, is called before loading (it may create ``json_file``, as the
    generated datasets do); ``transform``, if given, maps the loaded dicts to the registered
    ones (the SynthPeople study splits' views). Extra ``metadata`` (e.g. ``detections_file``)
    goes into MetadataCatalog.
    """

    def load():
        if prepare is not None:
            prepare()
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f"dataset {name!r}: annotation file not found: {json_file}")
        dicts = load_coco_json(json_file, image_root, name, extra_annotation_keys=["id"])
        dicts = validate_dataset_dicts(dicts, spec, json_file)
        return transform(dicts) if transform is not None else dicts

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        json_file=str(json_file),
        image_root=str(image_root),
        evaluator_type="coco",
        thing_classes=["person"],
        **spec.metadata(),
        **metadata,
    )




def register_config_datasets(entries) -> List[str]:
    """Register DATASETS.REGISTER_COCO's entries, ``(name, json_file, image_root[, layout])``
    (layout a key of :data:`LAYOUTS`, default "coco"), with :func:`register_coco_person`; an
    entry already registered with the same file, image root and layout is left as it is.
    Returns the names. ValueError naming the entry: a malformed one, an unknown layout, a
    missing file, or a name registered otherwise."""
    names = []
    for entry in entries:
        if not isinstance(entry, (list, tuple)) or len(entry) not in (3, 4):
            raise ValueError(
                f"DATASETS.REGISTER_COCO entry {entry!r}: expected (name, json_file, image_root)"
                " or (name, json_file, image_root, layout)"
            )
        name, json_file, image_root = (str(x) for x in entry[:3])
        layout = str(entry[3]) if len(entry) == 4 else "coco"
        if layout not in LAYOUTS:
            raise ValueError(
                f"DATASETS.REGISTER_COCO entry {name!r}: layout {layout!r} is not one of"
                f" {sorted(LAYOUTS)}"
            )
        if not os.path.isfile(json_file):
            raise ValueError(f"DATASETS.REGISTER_COCO entry {name!r}: no file {json_file}")
        json_file, image_root = os.path.abspath(json_file), os.path.abspath(image_root)
        if name in DatasetCatalog.list():
            meta = MetadataCatalog.get(name)
            same = (
                meta.get("json_file") == json_file
                and meta.get("image_root") == image_root
                and tuple(meta.get("keypoint_names", ())) == LAYOUTS[layout].keypoint_names
            )
            if not same:
                raise ValueError(
                    f"DATASETS.REGISTER_COCO entry {name!r}: a dataset of that name is already"
                    f" registered with other files ({meta.get('json_file')})"
                )
        else:
            register_coco_person(name, json_file, image_root, LAYOUTS[layout])
        names.append(name)
    return names
