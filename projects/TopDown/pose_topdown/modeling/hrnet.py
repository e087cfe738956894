"""HRNet for top-down pose (Sun et al., CVPR 2019), faithful to the official ``pose_hrnet``.

Module names and shapes equal the official implementation's (``conv1``, ``layer1``,
``transition1``, ``stage2.0.branches.0.0.conv1``, ``stage2.0.fuse_layers.0.1.0``, ...,
``final_layer``), so a released ``pose_hrnet_w32_256x192.pth`` loads with ``strict=True`` and an
ImageNet ``hrnet_w32`` classification checkpoint supplies every backbone weight
(:func:`load_official_hrnet_state_dict`). The residual blocks are torchvision's, whose names and
layout (stride on the 3x3 conv) are the official ones.

Published sizes (17 keypoints): W32 28.5M parameters, W48 63.6M. ``W18-small`` (the
``hrnet_w18_small_v2`` layout: 2 stem blocks, 1/3/2 modules of 2 blocks) is the CPU model.
"""

import logging
from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .base import TopDownPoseNet
from .build import POSE_NET_REGISTRY

__all__ = ["PoseHighResolutionNet", "HighResolutionModule", "load_official_hrnet_state_dict"]

logger = logging.getLogger(__name__)


def _conv_bn(cin, cout, kernel, stride, relu):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _res_layer(block, inplanes, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every output fuses every branch (sum after 1x1
    conv + nearest upsampling from lower resolutions, strided 3x3 convs from higher ones)."""

    def __init__(self, channels: Sequence[int], num_blocks: int, multi_scale_output: bool = True):
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList([_res_layer(BasicBlock, c, c, num_blocks) for c in channels])
        self.fuse_layers = (
            self._make_fuse_layers(list(channels), multi_scale_output)
            if self.num_branches > 1
            else None
        )
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _make_fuse_layers(ch: List[int], multi_scale_output: bool):
        fuse = []
        for i in range(len(ch) if multi_scale_output else 1):
            row = []
            for j in range(len(ch)):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(ch[j], ch[i], 1, 1, 0, bias=False),
                            nn.BatchNorm2d(ch[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    # i - j strided convs: the last one changes the channels, the others keep them.
                    steps = [
                        _conv_bn(
                            ch[j], ch[i] if k == i - j - 1 else ch[j], 3, 2, relu=k != i - j - 1
                        )
                        for k in range(i - j)
                    ]
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        return nn.ModuleList(fuse)

    def forward(self, x: List[torch.Tensor]) -> List[torch.Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        if self.fuse_layers is None:
            return x
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = x[i]
            for j in range(self.num_branches):
                if j != i:
                    y = y + row[j](x[j])
            out.append(self.relu(y))
        return out


@POSE_NET_REGISTRY.register()
class PoseHighResolutionNet(TopDownPoseNet):
    """HRNet-W{width}: stem (two stride-2 3x3 convs, ``stem_blocks`` bottlenecks), stages 2-4 with
    2/3/4 branches of ``width * 2**b`` channels, heatmaps from the highest-resolution branch by a
    ``final_conv_kernel`` conv (stride 4 overall)."""

    @configurable
    def __init__(
        self,
        num_keypoints: int = 17,
        width: int = 32,
        stem_blocks: int = 4,
        num_modules: Sequence[int] = (1, 4, 3),
        num_blocks: Sequence[int] = (4, 4, 4),
        final_conv_kernel: int = 1,
        init: str = "normal",
    ):
        super().__init__()
        if init not in ("normal", "kaiming"):
            raise ValueError(
                f"MODEL.HRNET.INIT must be 'normal' (official) or 'kaiming', got {init!r}"
            )
        if len(num_modules) != 3 or len(num_blocks) != 3:
            raise ValueError(
                f"HRNet has stages 2-4: NUM_MODULES {tuple(num_modules)} and NUM_BLOCKS"
                f" {tuple(num_blocks)} need three entries each"
            )
        if final_conv_kernel not in (1, 3):
            raise ValueError(
                f"FINAL_CONV_KERNEL must be 1 or 3 (official), got {final_conv_kernel}"
            )
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _res_layer(Bottleneck, 64, 64, stem_blocks)
        pre = [64 * Bottleneck.expansion]
        for s in range(3):
            ch = [width * 2**b for b in range(s + 2)]
            setattr(self, f"transition{s + 1}", self._make_transition(pre, ch))
            last_stage = s == 2
            modules = [
                HighResolutionModule(
                    ch,
                    num_blocks[s],
                    multi_scale_output=not (last_stage and m == num_modules[s] - 1),
                )
                for m in range(num_modules[s])
            ]
            setattr(self, f"stage{s + 2}", nn.Sequential(*modules))
            pre = ch
        self.final_layer = nn.Conv2d(
            width, num_keypoints, final_conv_kernel, 1, final_conv_kernel // 2
        )
        self.init_weights(init)

    # Four halvings after the stride-4 stem: crops must divide by 32 for the branches to fuse.
    size_divisibility = 32
    heatmap_stride = 4

    @staticmethod
    def _make_transition(pre: List[int], cur: List[int]) -> nn.ModuleList:
        layers = []
        for i, c in enumerate(cur):
            if i < len(pre):
                layers.append(_conv_bn(pre[i], c, 3, 1, relu=True) if pre[i] != c else None)
            else:
                # New lower-resolution branches come from the last branch by strided 3x3 convs.
                n = i + 1 - len(pre)
                layers.append(
                    nn.Sequential(
                        *[
                            _conv_bn(pre[-1], c if k == n - 1 else pre[-1], 3, 2, relu=True)
                            for k in range(n)
                        ]
                    )
                )
        return nn.ModuleList(layers)

    def init_weights(self, init: str = "normal"):
        """``"normal"``, the official initialisation: convs N(0, 0.001), zero biases, BN weight 1
        and bias 0 (the backbone is then overwritten by ImageNet weights). ``"kaiming"``: He-normal
        convs except the heatmap conv, for training from scratch: behind BatchNorm a conv is scale
        invariant, so N(0, 0.001) weights turn Adam's steps into relative changes of order 1."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if init == "kaiming" and m is not getattr(self, "final_layer", None):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: the config: MODEL.TOPDOWN.NUM_KEYPOINTS and MODEL.HRNET.*.

        Returns:
            the constructor's keyword arguments.
        """
        h = cfg.MODEL.HRNET
        return dict(
            num_keypoints=cfg.MODEL.TOPDOWN.NUM_KEYPOINTS,
            width=h.WIDTH,
            stem_blocks=h.STEM_BLOCKS,
            num_modules=tuple(h.NUM_MODULES),
            num_blocks=tuple(h.NUM_BLOCKS),
            final_conv_kernel=h.FINAL_CONV_KERNEL,
            init=h.INIT,
        )

    def forward(self, x: torch.Tensor, cues=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (N, 3, H, W) normalised crops.
            cues: unused (this network takes no cue channels).

        Returns:
            {"heatmap": (N, K, H / 4, W / 4)}.
        """
        return {"heatmap": self.final_layer(self.features(x))}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The highest-resolution branch's output, (N, width, H / 4, W / 4): what the heatmap
        conv (or another head, e.g. PCR's) reads."""
        return self.stages(self.layer1(self.stem(x)))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The two stride-2 convs: (N, 64, H / 4, W / 4)."""
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))

    def stages(self, x: torch.Tensor) -> torch.Tensor:
        """Stages 2-4 from ``layer1``'s output; the highest-resolution branch's output."""
        ys = [x]
        for s in range(3):
            transition = getattr(self, f"transition{s + 1}")
            # As the official code: new branches take the last (lowest-resolution) output.
            xs = [ys[i] if t is None else t(ys[-1]) for i, t in enumerate(transition)]
            ys = getattr(self, f"stage{s + 2}")(xs)
        return ys[0]


def load_official_hrnet_state_dict(model: PoseHighResolutionNet, state_dict, strict: bool = True):
    """Load an official HRNet checkpoint's state dict into ``model``.

    Accepts a pose checkpoint (``pose_hrnet_w32_256x192.pth``: every name matches, loaded strictly)
    or an ImageNet classification one (``hrnet_w32``: its head, ``incre_modules``,
    ``downsamp_modules``, ``final_layer.*`` of the classifier, ``classifier`` and the extra fuse
    layers of its multi-scale last module are not part of the pose net and are dropped; every
    backbone weight must be present). A ``state_dict`` / ``model`` wrapper and DataParallel's
    ``module.`` prefix are removed. Returns the list of dropped keys.
    """
    for wrapper in ("state_dict", "model"):
        if (
            isinstance(state_dict, dict)
            and wrapper in state_dict
            and isinstance(state_dict[wrapper], dict)
        ):
            state_dict = state_dict[wrapper]
    state_dict = {
        k[len("module.") :] if k.startswith("module.") else k: v for k, v in state_dict.items()
    }
    own = model.state_dict()
    classification = any(k.startswith(("incre_modules.", "classifier.")) for k in state_dict)
    if not classification:
        model.load_state_dict(state_dict, strict=strict)
        return []
    kept = {k: v for k, v in state_dict.items() if k in own and not k.startswith("final_layer.")}
    dropped = sorted(set(state_dict) - set(kept))
    missing = sorted(k for k in own if k not in kept and not k.startswith("final_layer."))
    if missing:
        raise KeyError(
            f"the ImageNet HRNet checkpoint lacks {len(missing)} backbone weights of this model"
            f" (width or layout differ?), e.g. {missing[:5]}"
        )
    shapes = [
        (k, tuple(v.shape), tuple(own[k].shape)) for k, v in kept.items() if v.shape != own[k].shape
    ]
    if shapes:
        raise ValueError(f"ImageNet HRNet checkpoint shapes differ from the model: {shapes[:5]}")
    model.load_state_dict(kept, strict=False)
    logger.info(
        "Loaded an ImageNet HRNet backbone; final_layer stays initialised; "
        "dropped %d classification keys",
        len(dropped),
    )
    return dropped
