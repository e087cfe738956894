"""Data: keypoint metadata, dataset registration, generators and converters."""
from .datasets import DatasetFormatError, register_coco_person, validate_dataset_dicts
from .keypoints import COCO_PERSON, KeypointSpec, keypoint_spec_of

__all__ = [
    "COCO_PERSON",
    "DatasetFormatError",
    "KeypointSpec",
    "keypoint_spec_of",
    "register_coco_person",
    "validate_dataset_dicts",
]
