"""What both stages share (the multitask R-CNN in ``multitask_pose.modeling`` and the top-down
project ``pose_topdown``): OKS and OKS-NMS, flips through a dataset's flip map, the balanced
keypoint loss and the Gaussian-heatmap error. Keypoint layouts are in
``multitask_pose.data.keypoints``, codecs in ``multitask_pose.codecs``, the evaluator in
``multitask_pose.evaluation`` and the trainer base and launcher in ``multitask_pose.engine``: all of
them serve both stages too.
"""

from .balanced_loss import keypoint_type_weights
from .flip import flip_heatmaps, flip_keypoints, flip_offsets
from .heatmap_loss import heatmap_squared_error
from .oks import keypoint_oks, oks_nms

__all__ = [
    "flip_heatmaps",
    "flip_keypoints",
    "flip_offsets",
    "heatmap_squared_error",
    "keypoint_oks",
    "keypoint_type_weights",
    "oks_nms",
]
