"""Modeling pieces, each registered in a detectron2 registry on import."""
from .backbone import build_multitask_resnet_backbone, build_multitask_resnet_fpn_backbone
from .balanced_keypoint_loss import keypoint_type_weights
from .deform_conv import DeformConv2d
from .keypoint_offset_head import KeypointOffsetHead, RoIHeatmapCodec
from .roi_heads import MultiTaskROIHeads

__all__ = [
    "DeformConv2d", "KeypointOffsetHead", "MultiTaskROIHeads", "RoIHeatmapCodec", "keypoint_type_weights",
    "build_multitask_resnet_backbone", "build_multitask_resnet_fpn_backbone",
]
