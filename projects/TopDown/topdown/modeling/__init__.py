"""Top-down pose networks (POSE_NET_REGISTRY) and the TopDownPoseEstimator meta-architecture,
registered on import."""
from .build import POSE_NET_REGISTRY, build_pose_net
from .hourglass import StackedHourglass
from .hrnet import PoseHighResolutionNet, load_official_hrnet_state_dict
from .meta_arch import TopDownPoseEstimator
from .pose_resnet import PoseResNet

__all__ = ["POSE_NET_REGISTRY", "build_pose_net", "PoseHighResolutionNet", "PoseResNet", "StackedHourglass",
           "TopDownPoseEstimator", "load_official_hrnet_state_dict"]
