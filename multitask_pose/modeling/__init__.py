"""Modeling pieces, each registered in a detectron2 registry on import."""
from .roi_heads import MultiTaskROIHeads

__all__ = ["MultiTaskROIHeads"]
