"""Data of the top-down stage: person crops for training, person boxes for inference, cues."""

from .boxes import (
    DetectionFileError,
    PersonDetector,
    filter_person_boxes,
    folder_image_dicts,
    gt_person_boxes,
    load_detection_file,
)
from .cues import CUE_REGISTRY, BoxCue, build_cue
from .mapper import TopDownTestMapper, TopDownTrainMapper, lower_body_indices, person_dicts

__all__ = [
    "BoxCue",
    "CUE_REGISTRY",
    "DetectionFileError",
    "PersonDetector",
    "TopDownTestMapper",
    "TopDownTrainMapper",
    "build_cue",
    "filter_person_boxes",
    "folder_image_dicts",
    "gt_person_boxes",
    "load_detection_file",
    "lower_body_indices",
    "person_dicts",
]
