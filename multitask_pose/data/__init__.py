"""Data: keypoint metadata, dataset registration, generators and converters."""

from .datasets import DatasetFormatError, register_coco_person, validate_dataset_dicts
from .keypoints import (
    AIC_PERSON,
    COCO_PERSON,
    CROWDPOSE_PERSON,
    KeypointSpec,
    keypoint_spec_of,
    layout_map,
    map_keypoints,
)

__all__ = [
    "AIC_PERSON",
    "COCO_PERSON",
    "CROWDPOSE_PERSON",
    "DatasetFormatError",
    "KeypointSpec",
    "keypoint_spec_of",
    "layout_map",
    "map_keypoints",
    "register_coco_person",
    "validate_dataset_dicts",
]
