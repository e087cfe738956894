"""Evaluation: COCO AP through faster-coco-eval or pycocotools, with the dataset's OKS sigmas;
keypoint error analysis (Ronchi & Perona's taxonomy)."""
from .coco_evaluation import PoseCOCOEvaluator
from .error_analysis import analyze_keypoint_errors, write_report
from .oks import keypoint_oks, oks_nms

__all__ = [
    "PoseCOCOEvaluator", "analyze_keypoint_errors", "keypoint_oks", "oks_nms", "write_report",
]
