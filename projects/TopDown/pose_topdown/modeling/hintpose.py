"""HintPose (a COCO keypoint challenge report): HRNet with an instance cue and recurrent
refinement, each added as "two simple convolutional layers with a residual connection" so that an
HRNet checkpoint is reused (report section 2).

- Instance cue: one input channel saying which person the crop is about (``MODEL.TOPDOWN.CUE``,
  ``pose_topdown/data/cues.py``). The input-refinement block adds it to the stem's stride-4 features
  by element-wise summation (section 2.1): ``f + B(concat(f, cue))``, ``B = conv3x3 -> BN -> ReLU
  -> conv3x3 -> BN``.
- Recurrent refinement (section 2.2): hop 1 runs HRNet as usual from the features F after
  ``layer1``; hop t > 1 feeds the previous hop's heatmaps H back onto F through two 1x1 conv
  blocks, ``F_t = F + extract(update(H_{t-1}))`` (``update``: K -> 256 channels, conv + BN +
  ReLU, "to update feature maps using the previous output"; ``extract``: 256 -> 256, conv + BN,
  "to extract information for the next hop"), and runs stages 2-4 and the heatmap conv again
  (shared weights). Every hop is supervised ("heatmap_hop<t>", the last one "heatmap", the
  prediction: section 3.1).

The last BN of each residual branch starts at weight 0 (``zero_init_residual``, as ResNets
initialise their residual branches), so a loaded HRNet checkpoint gives HRNet's own output from
every hop at the first step and training starts from the pretrained network; its gradient is not
zero, so the branches learn from the first step. Only ``input_refine.*``, ``update.*`` and
``extract.*`` are new: every HRNet layer keeps its name and shape.

``MODEL.HINTPOSE.HOPS`` (3 in the report), ``MODEL.HINTPOSE.CUE_ON`` (False: no cue channel, the
refinement alone). HRNet's own keys (``MODEL.HRNET.*``) shape the network.
"""

from typing import Dict

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .build import POSE_NET_REGISTRY
from .hrnet import PoseHighResolutionNet

__all__ = ["HintPoseHRNet"]


def _conv_bn(cin, cout, kernel, relu):
    layers = [nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


@POSE_NET_REGISTRY.register()
class HintPoseHRNet(PoseHighResolutionNet):
    """HRNet with HintPose's instance cue and recurrent refinement (module docstring)."""

    @configurable
    def __init__(self, *, hops: int = 3, cue_on: bool = True, **hrnet_kwargs):
        """
        Args:
            hops, cue_on: MODEL.HINTPOSE.HOPS / CUE_ON.
            hrnet_kwargs: PoseHighResolutionNet's arguments.
        """
        super().__init__(**hrnet_kwargs)
        num_keypoints = hrnet_kwargs.get("num_keypoints", 17)
        if hops < 1:
            raise ValueError(f"MODEL.HINTPOSE.HOPS must be >= 1, got {hops}")
        self.hops = hops
        self.cue_channels = 1 if cue_on else 0
        if cue_on:
            self.input_refine = nn.Sequential(
                _conv_bn(64 + 1, 64, 3, relu=True), _conv_bn(64, 64, 3, relu=False)
            )
        if hops > 1:
            c = 64 * 4  # layer1's output (Bottleneck expansion 4)
            self.update = _conv_bn(num_keypoints, c, 1, relu=True)
            self.extract = _conv_bn(c, c, 1, relu=False)
        self.init_weights(hrnet_kwargs.get("init", "normal"))  # the new layers as HRNet's own
        self.zero_init_residual()

    def residual_norms(self):
        """The last BN of each residual branch (input refinement, recurrent refinement)."""
        return [
            *([self.input_refine[1][1]] if self.cue_channels else []),
            *([self.extract[1]] if self.hops > 1 else []),
        ]

    def zero_init_residual(self):
        """Start every residual branch at exactly zero: HintPose is then HRNet (module
        docstring)."""
        for bn in self.residual_norms():
            nn.init.zeros_(bn.weight)
            nn.init.zeros_(bn.bias)

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: MODEL.TOPDOWN.NUM_KEYPOINTS, MODEL.HRNET.* and MODEL.HINTPOSE.*.

        Returns:
            the constructor's keyword arguments.
        """
        kwargs = PoseHighResolutionNet.from_config(cfg)
        return dict(kwargs, hops=cfg.MODEL.HINTPOSE.HOPS, cue_on=cfg.MODEL.HINTPOSE.CUE_ON)

    def supervised_outputs(self) -> Dict[str, float]:
        return {f"heatmap_hop{t}": 1.0 for t in range(1, self.hops)} | {"heatmap": 1.0}

    def forward(self, x: torch.Tensor, cues=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (N, 3, H, W) normalised crops.
            cues: (N, 1, H, W) instance cue (with MODEL.HINTPOSE.CUE_ON).

        Returns:
            "heatmap_hop<t>" for the hops before the last and "heatmap" (the last hop), each
            (N, K, H / 4, W / 4).
        """
        f = self.stem(x)
        if self.cue_channels:
            if cues is None or cues.shape[1] != 1:
                raise ValueError("HintPoseHRNet with MODEL.HINTPOSE.CUE_ON needs a 1-channel cue")
            cue = F.interpolate(cues.to(f.dtype), size=f.shape[-2:], mode="bilinear",
                                align_corners=False)  # fmt: skip
            f = f + self.input_refine(torch.cat([f, cue], dim=1))
        base = self.layer1(f)
        outputs, heat = {}, None
        for t in range(1, self.hops + 1):
            feats = base if heat is None else base + self.extract(self.update(heat))
            heat = self.final_layer(self.stages(feats))
            outputs["heatmap" if t == self.hops else f"heatmap_hop{t}"] = heat
        return outputs
