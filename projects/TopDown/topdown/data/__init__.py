"""Data of the top-down stage: person crops for training, person boxes for inference."""
from .boxes import DetectionFileError, PersonDetector, filter_person_boxes, gt_person_boxes, load_detection_file
from .mapper import TopDownTestMapper, TopDownTrainMapper, lower_body_indices, person_dicts

__all__ = ["DetectionFileError", "PersonDetector", "TopDownTestMapper", "TopDownTrainMapper", "filter_person_boxes",
           "gt_person_boxes", "load_detection_file", "lower_body_indices", "person_dicts"]
