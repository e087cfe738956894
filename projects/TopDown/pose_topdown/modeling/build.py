"""Registry of the top-down pose networks."""
import torch
from detectron2.utils.registry import Registry

POSE_NET_REGISTRY = Registry("POSE_NET")
POSE_NET_REGISTRY.__doc__ = """
Top-down pose networks (``TopDownPoseNet`` subclasses, ``pose_topdown/modeling/base.py``), selected
by ``MODEL.TOPDOWN.POSE_NET`` and built as ``POSE_NET_REGISTRY.get(name)(cfg)``.
"""


def build_pose_net(cfg):
    """The network ``MODEL.TOPDOWN.POSE_NET``, in channels-last memory with
    ``MODEL.TOPDOWN.CHANNELS_LAST`` (loading weights and the optimizer's state keep that)."""
    net = POSE_NET_REGISTRY.get(cfg.MODEL.TOPDOWN.POSE_NET)(cfg)
    if cfg.MODEL.TOPDOWN.CHANNELS_LAST:
        net = net.to(memory_format=torch.channels_last)
    return net
