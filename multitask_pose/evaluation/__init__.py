"""Evaluation: COCO AP through faster-coco-eval or pycocotools, with the dataset's OKS sigmas."""
from .coco_evaluation import PoseCOCOEvaluator
from .oks import keypoint_oks, oks_nms

__all__ = ["PoseCOCOEvaluator", "keypoint_oks", "oks_nms"]
