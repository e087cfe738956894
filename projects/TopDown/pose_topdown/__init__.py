"""Top-down second stage (HRNet, SimpleBaseline, hourglass on detector boxes): see ../README.md.

``import pose_topdown`` registers the pose networks and the ``TopDownPoseEstimator``
meta-architecture.
"""
from . import (
    modeling,  # noqa: F401  (registers the pose networks)
    posefix,  # noqa: F401  (registers PoseCue and PoseFixHRNet)
)
from .codec import GaussianHeatmapCodec
from .config import add_topdown_config, get_topdown_cfg

__all__ = ["GaussianHeatmapCodec", "add_topdown_config", "get_topdown_cfg"]
