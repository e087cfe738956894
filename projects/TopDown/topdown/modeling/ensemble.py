"""Heatmap ensembles: several trained top-down models averaged before decoding.

``HeatmapEnsemble`` is a pose network (``MODEL.TOPDOWN.POSE_NET: "HeatmapEnsemble"``) whose members
are other top-down models, each given by its config file and checkpoint
(``MODEL.ENSEMBLE.CONFIGS`` / ``WEIGHTS``) and built and loaded when the ensemble is built.
``TopDownPoseEstimator`` runs it like any network, so the predictor, the evaluator, the flip test
(the mirrored crop's ensemble heatmaps: averaging is linear, so this equals averaging each
member's flip-tested heatmaps) and decoding stay the ensemble config's own. A member whose input
size differs from the ensemble's ``MODEL.TOPDOWN.INPUT_SIZE`` gets the crop resampled to its size
(bilinear; set the ensemble's input size to the largest member's), and its heatmaps resampled
to the ensemble's ``HEATMAP_SIZE``. The weighted mean uses ``MODEL.ENSEMBLE.MEMBER_WEIGHTS``
(empty: equal), normalised to sum 1. Inference only.

Refused at build time: members with another keypoint count than the ensemble, members with
other input normalisation (PIXEL_MEAN/STD, INPUT.FORMAT) or cue channels, nested ensembles,
configs and checkpoints of different counts.
"""

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .base import TopDownPoseNet
from .build import POSE_NET_REGISTRY, build_pose_net

__all__ = ["HeatmapEnsemble"]


class _Holder(nn.Module):
    """Gives a member the ``pose_net.`` prefix its checkpoint's names carry."""

    def __init__(self, pose_net):
        super().__init__()
        self.pose_net = pose_net


def load_member(config_file: str, weights: str, trusted: bool = False):
    """(member config, its pose network with the checkpoint loaded, in eval mode)."""
    from ..config import get_topdown_cfg
    from ..engine import TopDownCheckpointer

    cfg = get_topdown_cfg()
    cfg.merge_from_file(config_file)
    if cfg.MODEL.TOPDOWN.POSE_NET == "HeatmapEnsemble":
        raise ValueError(f"MODEL.ENSEMBLE.CONFIGS: {config_file} is itself an ensemble")
    net = build_pose_net(cfg)
    TopDownCheckpointer(_Holder(net), trusted=trusted).load(weights)
    return cfg, net.eval()


@POSE_NET_REGISTRY.register()
class HeatmapEnsemble(TopDownPoseNet):
    """Weighted mean of the members' prediction heatmaps (module docstring)."""

    @configurable
    def __init__(
        self,
        *,
        members: Sequence[TopDownPoseNet],
        member_input_sizes: Sequence[Sequence[int]],
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        member_weights: Sequence[float] = (),
    ):
        super().__init__()
        if not members:
            raise ValueError("HeatmapEnsemble needs MODEL.ENSEMBLE.CONFIGS (at least one member)")
        weights = list(member_weights) or [1.0] * len(members)
        if len(weights) != len(members) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"MODEL.ENSEMBLE.MEMBER_WEIGHTS {tuple(member_weights)}: one non-negative weight"
                f" per member ({len(members)}), not all zero"
            )
        self.members = nn.ModuleList(members)
        self.member_input_sizes = [tuple(s) for s in member_input_sizes]
        self.input_size, self.heatmap_size = tuple(input_size), tuple(heatmap_size)
        self.register_buffer(
            "weights", torch.tensor(weights, dtype=torch.float32) / sum(weights), False
        )
        self.cue_channels = members[0].cue_channels
        self.heatmap_stride = members[0].heatmap_stride
        self.size_divisibility = max(m.size_divisibility for m in members)

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: MODEL.ENSEMBLE.*, MODEL.TOPDOWN.INPUT_SIZE / HEATMAP_SIZE / NUM_KEYPOINTS, and
                the normalisation keys the members must share.

        Returns:
            the constructor's keyword arguments (the members built and loaded).
        """
        e = cfg.MODEL.ENSEMBLE
        if len(e.CONFIGS) != len(e.WEIGHTS):
            raise ValueError(
                f"MODEL.ENSEMBLE.CONFIGS has {len(e.CONFIGS)} files and WEIGHTS {len(e.WEIGHTS)}:"
                " one checkpoint per config"
            )
        members, sizes = [], []
        for config_file, weights in zip(e.CONFIGS, e.WEIGHTS):
            mcfg, net = load_member(config_file, weights, cfg.MODEL.TRUST_PICKLED_WEIGHTS)
            k = mcfg.MODEL.TOPDOWN.NUM_KEYPOINTS
            if k != cfg.MODEL.TOPDOWN.NUM_KEYPOINTS:
                raise ValueError(
                    f"MODEL.ENSEMBLE.CONFIGS: {config_file} predicts {k} keypoints, the ensemble"
                    f" {cfg.MODEL.TOPDOWN.NUM_KEYPOINTS}: members must share the keypoint set"
                )
            for key in ("MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "INPUT.FORMAT", "MODEL.TOPDOWN.CUE"):
                a, b = _get(mcfg, key), _get(cfg, key)
                if _plain(a) != _plain(b):
                    raise ValueError(
                        f"MODEL.ENSEMBLE.CONFIGS: {config_file} has {key} {a!r}, the ensemble"
                        f" {b!r}: members must see the same input"
                    )
            members.append(net)
            sizes.append(tuple(mcfg.MODEL.TOPDOWN.INPUT_SIZE))
        return dict(
            members=members,
            member_input_sizes=sizes,
            input_size=tuple(cfg.MODEL.TOPDOWN.INPUT_SIZE),
            heatmap_size=tuple(cfg.MODEL.TOPDOWN.HEATMAP_SIZE),
            member_weights=tuple(e.MEMBER_WEIGHTS),
        )

    def supervised_outputs(self) -> Dict[str, float]:
        return {}  # inference only

    def forward(self, images: torch.Tensor, cues=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            images: (N, 3, H, W) normalised crops at the ensemble's input size.
            cues: the members' cue channels, if any.

        Returns:
            {"heatmap": the weighted mean of the members' predictions, (N, K, h, w) at
            MODEL.TOPDOWN.HEATMAP_SIZE}.
        """
        if self.training:
            raise RuntimeError("HeatmapEnsemble is for inference; train its members instead")
        out = None
        w, h = self.heatmap_size
        for weight, net, (mw, mh) in zip(self.weights, self.members, self.member_input_sizes):
            x, c = images, cues
            if (mw, mh) != tuple(images.shape[-1:-3:-1]):
                x = F.interpolate(images, size=(mh, mw), mode="bilinear", align_corners=False)
                if cues is not None:
                    c = F.interpolate(cues, size=(mh, mw), mode="bilinear", align_corners=False)
            heat = net(x, c)[net.prediction]
            if tuple(heat.shape[-2:]) != (h, w):
                heat = F.interpolate(heat, size=(h, w), mode="bilinear", align_corners=False)
            out = weight * heat if out is None else out + weight * heat
        return {"heatmap": out}


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value
