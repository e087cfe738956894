"""Heatmap ensembles: several trained top-down models averaged before decoding.

``HeatmapEnsemble`` is a pose network (``MODEL.TOPDOWN.POSE_NET: "HeatmapEnsemble"``) whose members
are other top-down models, each given by its config file and checkpoint
(``MODEL.ENSEMBLE.CONFIGS`` / ``WEIGHTS``) and built and loaded when the ensemble is built.
``TopDownPoseEstimator`` runs it like any network, so the predictor, the evaluator, the flip test
(the mirrored crop's ensemble heatmaps: averaging is linear, so this equals averaging each
member's flip-tested heatmaps) and decoding stay the ensemble config's own.

A member whose input size differs from the ensemble's ``MODEL.TOPDOWN.INPUT_SIZE`` crops the
ensemble's crop as the top-down stage crops a box (:mod:`pose_topdown.affine`: the region's shorter
side grown to the member's aspect ratio, no padding, centres fixed; with equal aspect ratios a
pure scaling about the crops' pixel 0), and its heatmaps are mapped back onto the ensemble's
``HEATMAP_SIZE`` by the same transform: heatmap cell ``i`` is crop pixel ``i * stride`` in both
frames (the codec's convention), so both resamplings are bilinear at exact pixel-index
coordinates (``grid_sample`` with ``align_corners=True`` is exactly that), never
``F.interpolate``'s corner alignment, which shifts a peak by a fraction of a cell. Samples
beyond the source's edge repeat its edge (with equal aspect ratios, less than a pixel).

Cues: the ensemble's ``MODEL.TOPDOWN.CUE`` is rendered once; members with that cue get it,
members without a cue (``cue_channels`` 0, ``MODEL.TOPDOWN.CUE`` "") get none, as in the HintPose
report's ensemble of cue and no-cue models; a cue member of another input size gets the cue
resampled with the crop (a hint's Gaussian scales with it). The weighted mean uses
``MODEL.ENSEMBLE.MEMBER_WEIGHTS`` (empty: equal), normalised to sum 1. Inference only.

Refused at build time: members with another keypoint count than the ensemble, members with
other input normalisation (PIXEL_MEAN/STD, INPUT.FORMAT), members with a cue other than the
ensemble's, nested ensembles, configs and checkpoints of different counts.
"""

from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from ..affine import box_to_center_size, crop_affine, invert_affine
from .base import TopDownPoseNet
from .build import POSE_NET_REGISTRY, build_pose_net

__all__ = ["HeatmapEnsemble", "member_crop_affine"]


def member_crop_affine(ensemble_size: Sequence[int], member_size: Sequence[int]) -> np.ndarray:
    """(2, 3) matrix mapping ensemble crop pixels to the pixels of a member's crop of size
    ``member_size`` (W, H): the member crops the ensemble crop's region, ``(0, 0)`` to ``(W, H)``,
    as :func:`pose_topdown.affine.crop_affine` crops a box."""
    we, he = ensemble_size
    center, size = box_to_center_size(
        np.array([[0.0, 0.0, we, he]]), member_size[0] / member_size[1], padding=1.0
    )
    return crop_affine(center, size, 0.0, member_size)[0]


def _resample(maps: torch.Tensor, out_to_in: np.ndarray, out_hw: Sequence[int]) -> torch.Tensor:
    """``maps`` (N, C, h, w) bilinearly sampled at ``out_to_in`` (2, 3: output pixel index ->
    input pixel index) of every pixel of an ``out_hw`` grid; beyond the edge, the edge."""
    h_in, w_in = int(maps.shape[-2]), int(maps.shape[-1])  # constants when traced
    m = torch.as_tensor(out_to_in, dtype=maps.dtype, device=maps.device)
    ys, xs = torch.meshgrid(
        torch.arange(out_hw[0], dtype=maps.dtype, device=maps.device),
        torch.arange(out_hw[1], dtype=maps.dtype, device=maps.device),
        indexing="ij",
    )
    x = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    y = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    # align_corners=True: -1 and 1 are the centres of the first and last pixels.
    grid = torch.stack([2 * x / max(w_in - 1, 1) - 1, 2 * y / max(h_in - 1, 1) - 1], dim=-1)
    grid = grid.unsqueeze(0).expand(maps.shape[0], -1, -1, -1)
    return F.grid_sample(maps, grid, "bilinear", "border", align_corners=True)


def _scaled(m: np.ndarray, before: float, after: float) -> np.ndarray:
    """The affine ``p -> m(p * before) / after`` (heatmap cells through crop pixels)."""
    out = m.copy()
    out[:, :2] *= before / after
    out[:, 2] /= after
    return out


class _Holder(nn.Module):
    """Gives a member the ``pose_net.`` prefix its checkpoint's names carry."""

    def __init__(self, pose_net):
        super().__init__()
        self.pose_net = pose_net


def load_member(config_file: str, weights: str, trusted: bool = False, allow_random=False):
    """(member config, its pose network with the checkpoint loaded, in eval mode); refuses
    weights that leave part of it random unless ``allow_random`` (MODEL.ALLOW_RANDOM_WEIGHTS)."""
    from multitask_pose.engine.weights_check import check_trained_weights, check_weights_given

    from ..config import get_topdown_cfg
    from ..engine import TopDownCheckpointer

    cfg = get_topdown_cfg()
    cfg.merge_from_file(config_file)
    if cfg.MODEL.TOPDOWN.POSE_NET == "HeatmapEnsemble":
        raise ValueError(f"MODEL.ENSEMBLE.CONFIGS: {config_file} is itself an ensemble")
    net = build_pose_net(cfg)
    key = "MODEL.ENSEMBLE.WEIGHTS"
    check_weights_given(weights, key, allow_random)
    holder = _Holder(net)
    checkpointer = TopDownCheckpointer(holder, trusted=trusted)
    checkpointer.load(weights)
    check_trained_weights(holder, checkpointer, weights, key, allow_random)
    return cfg, net.eval()


@POSE_NET_REGISTRY.register()
class HeatmapEnsemble(TopDownPoseNet):
    """Weighted mean of the members' prediction heatmaps (module docstring)."""

    weights_loaded_at_build = True  # the members' own checkpoints (weights_check.py)

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
        cued = {m.cue_channels for m in members if m.cue_channels}
        if len(cued) > 1:
            raise ValueError(f"HeatmapEnsemble: members take {sorted(cued)} cue channels: one cue")
        self.cue_channels = cued.pop() if cued else 0
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
            mcfg, net = load_member(config_file, weights, cfg.MODEL.TRUST_PICKLED_WEIGHTS,
                                    cfg.MODEL.ALLOW_RANDOM_WEIGHTS)  # fmt: skip
            k = mcfg.MODEL.TOPDOWN.NUM_KEYPOINTS
            if k != cfg.MODEL.TOPDOWN.NUM_KEYPOINTS:
                raise ValueError(
                    f"MODEL.ENSEMBLE.CONFIGS: {config_file} predicts {k} keypoints, the ensemble"
                    f" {cfg.MODEL.TOPDOWN.NUM_KEYPOINTS}: members must share the keypoint set"
                )
            for key in ("MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "INPUT.FORMAT", "MODEL.TOPDOWN.CUE"):
                a, b = _get(mcfg, key), _get(cfg, key)
                if key == "MODEL.TOPDOWN.CUE" and not a and not net.cue_channels:
                    continue  # a member without a cue gets none
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
            cues: the ensemble's cue channels (given to the members that take a cue), if any.

        Returns:
            {"heatmap": the weighted mean of the members' predictions, (N, K, h, w) at
            MODEL.TOPDOWN.HEATMAP_SIZE}.
        """
        if self.training:
            raise RuntimeError("HeatmapEnsemble is for inference; train its members instead")
        out = None
        w, h = self.heatmap_size
        size = (int(images.shape[-1]), int(images.shape[-2]))  # constants when traced
        for weight, net, member_size in zip(self.weights, self.members, self.member_input_sizes):
            x, c = images, cues if net.cue_channels else None
            to_member = member_crop_affine(size, member_size)
            if member_size != size:
                to_ensemble = invert_affine(to_member[None])[0]
                x = _resample(images, to_ensemble, member_size[::-1])
                if c is not None:
                    c = _resample(c, to_ensemble, member_size[::-1])
            heat = net(x, c)[net.prediction]
            if member_size != size or tuple(heat.shape[-2:]) != (h, w):
                # ensemble cell -> ensemble crop pixel -> member crop pixel -> member cell
                cells = _scaled(to_member, size[0] / w, member_size[0] / int(heat.shape[-1]))
                heat = _resample(heat, cells, (h, w))
            out = weight * heat if out is None else out + weight * heat
        return {"heatmap": out}


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value
