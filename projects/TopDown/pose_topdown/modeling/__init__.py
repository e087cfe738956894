"""Top-down pose networks (POSE_NET_REGISTRY, on the TopDownPoseNet contract), the heads that own
codec, loss and flip test (TOPDOWN_HEAD_REGISTRY), the losses (TOPDOWN_LOSS_REGISTRY) and the
TopDownPoseEstimator meta-architecture, registered on import."""

import importlib
import pkgutil

from .base import TopDownPoseNet
from .build import POSE_NET_REGISTRY, build_pose_net
from .ensemble import HeatmapEnsemble
from .heads import TOPDOWN_HEAD_REGISTRY, HeatmapHead, TopDownHead, build_topdown_head
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
    "HeatmapHead",
    "HintPoseHRNet",
    "PCRHRNet",
    "PCRHead",
    "PCRResNet",
    "JointsMSELoss",
    "POSE_NET_REGISTRY",
    "PoseHighResolutionNet",
    "PoseResNet",
    "StackedHourglass",
    "TOPDOWN_HEAD_REGISTRY",
    "TOPDOWN_LOSS_REGISTRY",
    "TopDownHead",
    "TopDownPoseEstimator",
    "TopDownPoseNet",
    "build_pose_net",
    "build_topdown_head",
    "build_topdown_loss",
    "load_official_hrnet_state_dict",
]

# Every module of this package is imported, so a new network, head or loss registers itself (and
# its keys, ``topdown_keys``) without an import line here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
