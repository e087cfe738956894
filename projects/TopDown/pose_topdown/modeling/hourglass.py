"""Stacked hourglass network (Newell, Yang and Deng, ECCV 2016) with intermediate supervision.

The published layout: a stride-4 stem (7x7 conv, residuals, max-pool) to 64x64 for a 256x256 crop,
then ``num_stacks`` hourglasses of ``depth`` max-pool/nearest-upsample levels built from
pre-activation bottleneck residuals; each stack predicts heatmaps, which are supervised, and feeds
``features + 1x1(features) + 1x1(heatmaps)`` to the next stack.
"""

from typing import Dict, List

import torch
from detectron2.config import configurable
from torch import nn
from torch.nn import functional as F

from .base import TopDownPoseNet
from .build import POSE_NET_REGISTRY

__all__ = ["StackedHourglass"]


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv x3 (1x1 to half the channels, 3x3, 1x1 back) plus a 1x1 skip if channels
    change."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, mid, 1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    def __init__(self, depth: int, channels: int):
        super().__init__()
        self.up = PreActBottleneck(channels, channels)
        self.down = PreActBottleneck(channels, channels)
        self.inner = (
            Hourglass(depth - 1, channels) if depth > 1 else PreActBottleneck(channels, channels)
        )
        self.after = PreActBottleneck(channels, channels)

    def forward(self, x):
        low = self.after(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.up(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


@POSE_NET_REGISTRY.register()
class StackedHourglass(TopDownPoseNet):
    heatmap_stride = 4

    @configurable
    def __init__(
        self, num_keypoints: int = 17, num_stacks: int = 8, num_features: int = 256, depth: int = 4
    ):
        super().__init__()
        if num_stacks < 1 or depth < 1:
            raise ValueError(f"NUM_STACKS and DEPTH must be >= 1, got {num_stacks} and {depth}")
        # stride 4 stem, then `depth` halvings and nearest upsamplings back in each hourglass
        self.size_divisibility = 4 * 2**depth
        f = num_features
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            PreActBottleneck(64, 128),
            nn.MaxPool2d(2),
            PreActBottleneck(128, 128),
            PreActBottleneck(128, f),
        )
        self.hourglasses = nn.ModuleList([Hourglass(depth, f) for _ in range(num_stacks)])
        self.features = nn.ModuleList(
            [
                nn.Sequential(
                    PreActBottleneck(f, f),
                    nn.Conv2d(f, f, 1),
                    nn.BatchNorm2d(f),
                    nn.ReLU(inplace=True),
                )
                for _ in range(num_stacks)
            ]
        )
        self.scores = nn.ModuleList([nn.Conv2d(f, num_keypoints, 1) for _ in range(num_stacks)])
        self.merge_features = nn.ModuleList([nn.Conv2d(f, f, 1) for _ in range(num_stacks - 1)])
        self.merge_scores = nn.ModuleList(
            [nn.Conv2d(num_keypoints, f, 1) for _ in range(num_stacks - 1)]
        )

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: the config: MODEL.TOPDOWN.NUM_KEYPOINTS and MODEL.HOURGLASS.*.

        Returns:
            the constructor's keyword arguments.
        """
        h = cfg.MODEL.HOURGLASS
        return dict(
            num_keypoints=cfg.MODEL.TOPDOWN.NUM_KEYPOINTS,
            num_stacks=h.NUM_STACKS,
            num_features=h.NUM_FEATURES,
            depth=h.DEPTH,
        )

    def supervised_outputs(self) -> Dict[str, float]:
        """Intermediate supervision: every stack's heatmaps, weight 1 each (the last is the
        prediction, ``heatmap``; stack i < last is ``heatmap_stack<i>``)."""
        return {name: 1.0 for name in self._names}

    @property
    def _names(self) -> List[str]:
        n = len(self.hourglasses)
        return [f"heatmap_stack{i}" for i in range(n - 1)] + ["heatmap"]

    def forward(self, x: torch.Tensor, cues=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (N, 3, H, W) normalised crops.
            cues: unused (this network takes no cue channels).

        Returns:
            every stack's (N, K, H / 4, W / 4) heatmaps by name: ``heatmap_stack<i>`` for the
            intermediate stacks, ``heatmap`` for the last (the prediction).
        """
        x = self.stem(x)
        outs = []
        for i, (hg, feat, score) in enumerate(zip(self.hourglasses, self.features, self.scores)):
            y = feat(hg(x))
            s = score(y)
            outs.append(s)
            if i < len(self.merge_features):
                x = x + self.merge_features[i](y) + self.merge_scores[i](s)
        return dict(zip(self._names, outs))
