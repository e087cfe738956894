"""Registry of the top-down pose networks."""
from detectron2.utils.registry import Registry

POSE_NET_REGISTRY = Registry("POSE_NET")
POSE_NET_REGISTRY.__doc__ = """
Top-down pose networks (``TopDownPoseNet`` subclasses, ``pose_topdown/modeling/base.py``), selected
by ``MODEL.TOPDOWN.POSE_NET`` and built as ``POSE_NET_REGISTRY.get(name)(cfg)``.
"""


def build_pose_net(cfg):
    return POSE_NET_REGISTRY.get(cfg.MODEL.TOPDOWN.POSE_NET)(cfg)
