"""The multitask R-CNN's modeling pieces, each registered in a detectron2 registry on import."""
from .backbone import build_multitask_resnet_backbone, build_multitask_resnet_fpn_backbone
from .keypoint_offset_head import KeypointOffsetHead
from .roi_heads import MultiTaskCascadeROIHeads, MultiTaskROIHeads, TaskLossWeights

__all__ = [
    "KeypointOffsetHead", "MultiTaskCascadeROIHeads", "MultiTaskROIHeads", "TaskLossWeights",
    "build_multitask_resnet_backbone", "build_multitask_resnet_fpn_backbone",
]
