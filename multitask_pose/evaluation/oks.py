"""Kept so that ``multitask_pose.evaluation.oks`` (named in the READMEs) still imports: OKS and
OKS-NMS are inference steps shared by both stages and live in :mod:`multitask_pose.shared.oks`."""
from ..shared.oks import keypoint_oks, oks_nms

__all__ = ["keypoint_oks", "oks_nms"]
