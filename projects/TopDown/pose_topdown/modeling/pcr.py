"""PCR, progressive context refinement (Zhang, Chen and Tao, COCO 2019 keypoint challenge
report: section 2.1, eq. (1); section 2.2, eq. (2)): an encoder (ResNet
as in SimpleBaseline, or HRNet) and L parallel decoders of K context-aware modules (CAMs).

CAM(x), C output channels, as section 2.1 specifies it (BN after every conv and deconv):
- HDC branch: four parallel 3x3 convs of dilation 1, 2, 3, 4 with C/4 kernels each (BN, ReLU),
  concatenated to C, then a stride-2 4x4 deconvolution where the CAM upsamples or a stride-1 3x3
  conv where it does not (BN, ReLU; the kernel sizes are SimpleBaseline's, the report names none);
- SE branch on the HDC output: global average pooling, 1x1 conv to C/4 (BN, ReLU), 1x1 conv to C
  (BN), sigmoid. ``se_bn=False`` is the SENet form instead (biases, no BN: on a 1x1 pooled map BN
  normalises across the batch only, and it needs a training batch of two or more);
- residual branch: 2x nearest upsampling where the CAM upsamples, then a 1x1 conv (BN), in every
  CAM (also where the channels agree);
- output = ReLU(SE ⊙ HDC + residual), eq. (1) and the ReLU "after the output of CAM".

Table 3's ablation switches: ``se=False`` drops the gate (HDC + residual). ``hdc=False`` is the
branch without hybrid dilation: its four convs all of dilation 1 (together one plain 3x3 conv of C
kernels, the same width and parameters), followed by the same deconvolution or conv, so SE still
gates a conv branch and the decoder still upsamples. (The report does not describe the rows'
networks beyond their ticks; this is the reading that removes exactly what the name HDC adds.)

Progressive fusion, eq. (2): decoder d produces D_d; prediction level l decodes D_1 + ... + D_l
with its own 1x1 conv, every level is supervised, and the last level is the prediction. Auxiliary
supervision (AD, Table 3: "auxiliary task after the penultimate CAM"): a 1x1 conv on the input of
each decoder's last CAM (the penultimate CAM's output; the encoder's output when K = 1), resized
to the heatmap size, its loss weighted by ``aux_weight``.

``PCRResNet`` keeps torchvision's ResNet names at the top level (an ImageNet checkpoint loads into
the encoder by name); its first three CAMs upsample (stride 32 -> 4). ``PCRHRNet`` keeps
``PoseHighResolutionNet``'s names (an HRNet checkpoint loads) and replaces its ``final_layer`` by
the PCR head on the stride-4 branch; its CAMs do not upsample.
"""

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn
from torchvision.models.resnet import ResNet

from .base import TopDownPoseNet
from .build import POSE_NET_REGISTRY
from .hrnet import PoseHighResolutionNet
from .pose_resnet import init_resnet_trunk, resnet_trunk

__all__ = ["CAM", "PCRHead", "PCRHRNet", "PCRResNet"]


def _conv_bn_relu(cin, cout, kernel, dilation=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, 1, dilation * (kernel // 2), dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CAM(nn.Module):
    """The context-aware module (module docstring).

    Args:
        in_channels, channels: input channels and C (divisible by 4).
        upsample: the HDC branch ends in a stride-2 deconvolution and the residual is upsampled.
        se: the SE gate; hdc: dilations 1-4 (else all 1); se_bn: BN in the SE branch.
    """

    HDC_DILATIONS = (1, 2, 3, 4)

    def __init__(
        self, in_channels: int, channels: int, upsample: bool, se=True, hdc=True, se_bn=True
    ):
        super().__init__()
        if channels % 4:
            raise ValueError(f"PCR CAM channels must divide by 4, got {channels}")
        self.upsample, self.use_se = upsample, se
        dilations = self.HDC_DILATIONS if hdc else (1, 1, 1, 1)
        self.dilated = nn.ModuleList(
            [_conv_bn_relu(in_channels, channels // 4, 3, d) for d in dilations]
        )
        mix = (
            nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False)
            if upsample
            else nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        )
        self.mix = nn.Sequential(mix, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        if se:
            squeeze = channels // 4
            if se_bn:
                self.se = nn.Sequential(
                    nn.AdaptiveAvgPool2d(1),
                    nn.Conv2d(channels, squeeze, 1, bias=False),
                    nn.BatchNorm2d(squeeze),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(squeeze, channels, 1, bias=False),
                    nn.BatchNorm2d(channels),
                    nn.Sigmoid(),
                )
            else:
                self.se = nn.Sequential(
                    nn.AdaptiveAvgPool2d(1),
                    nn.Conv2d(channels, squeeze, 1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(squeeze, channels, 1),
                    nn.Sigmoid(),
                )
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x):
        # The report upsamples before the 1x1 conv; nearest upsampling commutes with a 1x1 conv
        # and with BN (the same values, so the same batch statistics): 4x fewer operations.
        res = self.residual(x)
        if self.upsample:
            res = F.interpolate(res, scale_factor=2, mode="nearest")
        h = self.mix(torch.cat([conv(x) for conv in self.dilated], dim=1))
        if self.use_se:
            h = h * self.se(h)
        return F.relu(h + res)


class PCRHead(nn.Module):
    """L decoders of K CAMs on shared encoder features, progressive fusion and auxiliary
    supervision (module docstring).

    Args:
        in_channels: channels of the encoder's output.
        channels: C_k of the K CAMs of a decoder.
        upsample: per CAM, whether it doubles the resolution.
        num_decoders: L.
        num_keypoints: heatmaps per prediction.
        se, hdc, aux: the CAM branches and the auxiliary supervision, switchable (Table 3).
        se_bn: BN in the CAMs' SE branches (section 2.1; False: SENet's biases).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        upsample: Sequence[bool],
        num_decoders: int,
        num_keypoints: int,
        se: bool = True,
        hdc: bool = True,
        aux: bool = True,
        se_bn: bool = True,
    ):
        super().__init__()
        if not channels or len(channels) != len(upsample):
            raise ValueError(f"PCR: {len(upsample)} CAMs expected, MODEL.PCR.CHANNELS {channels}")
        if num_decoders < 1:
            raise ValueError(f"MODEL.PCR.NUM_DECODERS must be >= 1, got {num_decoders}")
        ins = [in_channels, *channels[:-1]]
        self.decoders = nn.ModuleList(
            nn.ModuleList(CAM(i, c, u, se, hdc, se_bn) for i, c, u in zip(ins, channels, upsample))
            for _ in range(num_decoders)
        )
        self.final_layers = nn.ModuleList(
            nn.Conv2d(channels[-1], num_keypoints, 1) for _ in range(num_decoders)
        )
        self.aux_layers = (
            nn.ModuleList(nn.Conv2d(ins[-1], num_keypoints, 1) for _ in range(num_decoders))
            if aux
            else None
        )
        self.reset_output_layers()

    def reset_output_layers(self):
        """The heatmap convs as the official pose heads start them: N(0, 0.001), zero bias."""
        for m in [*self.final_layers, *(self.aux_layers or [])]:
            nn.init.normal_(m.weight, std=0.001)
            nn.init.zeros_(m.bias)

    def output_names(self) -> List[str]:
        n = len(self.decoders)
        names = [f"heatmap_level{level}" for level in range(1, n)] + ["heatmap"]
        if self.aux_layers is not None:
            names += [f"heatmap_aux{d}" for d in range(1, n + 1)]
        return names

    def forward(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs, fused = {}, None
        n = len(self.decoders)
        decoded = []
        for d, cams in enumerate(self.decoders):
            x = features
            for k, cam in enumerate(cams):
                if k == len(cams) - 1 and self.aux_layers is not None:
                    outputs[f"heatmap_aux{d + 1}"] = self.aux_layers[d](x)
                x = cam(x)
            decoded.append(x)
        for level in range(1, n + 1):
            fused = decoded[level - 1] if fused is None else fused + decoded[level - 1]
            name = "heatmap" if level == n else f"heatmap_level{level}"
            outputs[name] = self.final_layers[level - 1](fused)
        size = outputs["heatmap"].shape[-2:]
        for d in range(1, n + 1 if self.aux_layers is not None else 1):
            aux = outputs[f"heatmap_aux{d}"]
            if aux.shape[-2:] != size:
                outputs[f"heatmap_aux{d}"] = F.interpolate(
                    aux, size=size, mode="bilinear", align_corners=False
                )
        return outputs


def _pcr_kwargs(cfg):
    p = cfg.MODEL.PCR
    return dict(
        num_keypoints=cfg.MODEL.TOPDOWN.NUM_KEYPOINTS,
        channels=tuple(p.CHANNELS),
        num_decoders=p.NUM_DECODERS,
        se=p.SE,
        hdc=p.HDC,
        aux=p.AUX,
        aux_weight=p.AUX_WEIGHT,
        se_bn=p.SE_BN,
    )


class _PCRSupervision:
    """supervised_outputs of a net with a ``head`` (PCRHead) and an ``aux_weight``."""

    def supervised_outputs(self) -> Dict[str, float]:
        return {n: (self.aux_weight if "_aux" in n else 1.0) for n in self.head.output_names()}


@POSE_NET_REGISTRY.register()
class PCRResNet(_PCRSupervision, TopDownPoseNet, ResNet):
    """PCR on a ResNet encoder (torchvision names, no pooling or classifier)."""

    size_divisibility = 32
    heatmap_stride = 4

    @configurable
    def __init__(
        self,
        num_keypoints: int = 17,
        depth: int = 50,
        channels: Sequence[int] = (256, 256, 256),
        num_decoders: int = 1,
        se: bool = True,
        hdc: bool = True,
        aux: bool = True,
        aux_weight: float = 1.0,
        se_bn: bool = True,
    ):
        if len(channels) < 3:
            raise ValueError(
                f"PCR on a ResNet needs at least 3 CAMs (stride 32 -> 4), MODEL.PCR.CHANNELS "
                f"{tuple(channels)}"
            )
        trunk_channels = init_resnet_trunk(self, depth, "PCR ResNet")
        self.aux_weight = aux_weight
        upsample = [k < 3 for k in range(len(channels))]
        self.head = PCRHead(
            trunk_channels, channels, upsample, num_decoders, num_keypoints, se, hdc, aux, se_bn
        )

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: MODEL.TOPDOWN.NUM_KEYPOINTS, MODEL.POSE_RESNET.DEPTH and MODEL.PCR.*.

        Returns:
            the constructor's keyword arguments.
        """
        return dict(depth=cfg.MODEL.POSE_RESNET.DEPTH, **_pcr_kwargs(cfg))

    def forward(self, x: torch.Tensor, cues=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (N, 3, H, W) normalised crops.
            cues: unused.

        Returns:
            "heatmap" (the prediction), "heatmap_level<l>" (l < L) and "heatmap_aux<d>", each
            (N, K, H / 4, W / 4).
        """
        return self.head(resnet_trunk(self, x))


@POSE_NET_REGISTRY.register()
class PCRHRNet(_PCRSupervision, PoseHighResolutionNet):
    """PCR on an HRNet encoder (PoseHighResolutionNet's names; ``final_layer`` replaced by the
    PCR head on the stride-4 branch)."""

    @configurable
    def __init__(
        self,
        *,
        channels: Sequence[int] = (48,),
        num_decoders: int = 1,
        se: bool = True,
        hdc: bool = True,
        aux: bool = True,
        aux_weight: float = 1.0,
        se_bn: bool = True,
        **hrnet_kwargs,
    ):
        """
        Args:
            channels, num_decoders, se, hdc, aux, aux_weight, se_bn: MODEL.PCR.*.
            hrnet_kwargs: PoseHighResolutionNet's arguments (its final_layer is replaced).
        """
        super().__init__(**hrnet_kwargs)
        del self.final_layer
        self.aux_weight = aux_weight
        width = hrnet_kwargs.get("width", 32)
        k = hrnet_kwargs.get("num_keypoints", 17)
        self.head = PCRHead(
            width, channels, [False] * len(channels), num_decoders, k, se, hdc, aux, se_bn
        )
        self.init_weights(hrnet_kwargs.get("init", "normal"))  # the head's convs as HRNet's own
        self.head.reset_output_layers()

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: MODEL.TOPDOWN.NUM_KEYPOINTS, MODEL.HRNET.* and MODEL.PCR.*.

        Returns:
            the constructor's keyword arguments.
        """
        hrnet = PoseHighResolutionNet.from_config(cfg)
        del hrnet["final_conv_kernel"]  # no heatmap conv of HRNet's own
        return dict(hrnet, **_pcr_kwargs(cfg))

    def forward(self, x: torch.Tensor, cues=None) -> Dict[str, torch.Tensor]:
        """As :meth:`PCRResNet.forward`, on HRNet's highest-resolution branch."""
        return self.head(self.features(x))
