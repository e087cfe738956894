"""The multitask R-CNN's modeling pieces, each registered in a detectron2 registry on import."""

from .backbone import build_multitask_resnet_backbone, build_multitask_resnet_fpn_backbone
from .htc import HTCMaskHead, HybridTaskCascadeROIHeads, SemanticFusionHead
from .keypoint_offset_head import KeypointOffsetHead
from .meta_arch import MultiTaskRCNN
from .roi_heads import MultiTaskCascadeROIHeads, MultiTaskROIHeads, TaskLossWeights

__all__ = [
    "HTCMaskHead",
    "HybridTaskCascadeROIHeads",
    "SemanticFusionHead",
    "KeypointOffsetHead",
    "MultiTaskCascadeROIHeads",
    "MultiTaskRCNN",
    "MultiTaskROIHeads",
    "TaskLossWeights",
    "build_multitask_resnet_backbone",
    "build_multitask_resnet_fpn_backbone",
]
