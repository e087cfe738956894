"""Registry of the top-down pose networks (image crops in, heatmaps out)."""
from detectron2.utils.registry import Registry

POSE_NET_REGISTRY = Registry("POSE_NET")
POSE_NET_REGISTRY.__doc__ = """
Top-down pose networks, selected by ``MODEL.TOPDOWN.POSE_NET``. Each is built as
``POSE_NET_REGISTRY.get(name)(cfg)`` and maps (N, 3, H, W) normalised crops to a list of
(N, K, H / stride, W / stride) heatmaps: one per supervised output (the stacks of an hourglass), the
last one being the prediction. A pose net states ``size_divisibility`` (crop sides must divide by
it) and ``heatmap_stride``; the meta-architecture checks the config against both.
"""


def build_pose_net(cfg):
    return POSE_NET_REGISTRY.get(cfg.MODEL.TOPDOWN.POSE_NET)(cfg)
