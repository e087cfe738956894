"""Top-down pose networks (POSE_NET_REGISTRY, on the TopDownPoseNet contract), their losses
(TOPDOWN_LOSS_REGISTRY) and the TopDownPoseEstimator meta-architecture, registered on import."""

from .base import TopDownPoseNet
from .build import POSE_NET_REGISTRY, build_pose_net
from .ensemble import HeatmapEnsemble
from .hintpose import HintPoseHRNet
from .hourglass import StackedHourglass
from .hrnet import PoseHighResolutionNet, load_official_hrnet_state_dict
from .losses import TOPDOWN_LOSS_REGISTRY, JointsMSELoss, build_topdown_loss
from .meta_arch import TopDownPoseEstimator
from .pcr import CAM, PCRHead, PCRHRNet, PCRResNet
from .pose_resnet import PoseResNet

__all__ = [
    "CAM",
    "HeatmapEnsemble",
    "HintPoseHRNet",
    "PCRHRNet",
    "PCRHead",
    "PCRResNet",
    "JointsMSELoss",
    "POSE_NET_REGISTRY",
    "PoseHighResolutionNet",
    "PoseResNet",
    "StackedHourglass",
    "TOPDOWN_LOSS_REGISTRY",
    "TopDownPoseEstimator",
    "TopDownPoseNet",
    "build_pose_net",
    "build_topdown_loss",
    "load_official_hrnet_state_dict",
]
