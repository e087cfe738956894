"""Evaluation: COCO AP through faster-coco-eval or pycocotools, with the dataset's OKS sigmas."""
from .coco_evaluation import PoseCOCOEvaluator

__all__ = ["PoseCOCOEvaluator"]
