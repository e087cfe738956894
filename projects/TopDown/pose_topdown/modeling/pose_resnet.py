"""SimpleBaseline (Xiao, Wu and Wei, ECCV 2018): a ResNet and three stride-2 deconvolutions.

A subclass of torchvision's ``ResNet`` (whose Bottleneck, with the stride on the 3x3 conv, and
whose parameter names are the official ``PoseResNet``'s) without its pooling and classifier, plus
the official ``deconv_layers`` and ``final_layer``: a released ``pose_resnet_50_256x192.pth`` loads
by name, and an ImageNet ResNet checkpoint supplies the backbone. Published size for R-50 with
17 keypoints: 34.0M parameters.
"""

from typing import Dict

import torch
from detectron2.config import configurable
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .base import TopDownPoseNet
from .build import POSE_NET_REGISTRY

__all__ = ["PoseResNet"]

# depth -> (block, blocks per stage): the official resnet_spec (18 and 34 are CPU-sized variants).
_DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
_DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}  # kernel -> (padding, output_padding)


def init_resnet_trunk(net: ResNet, depth: int, what: str) -> int:
    """``ResNet.__init__`` of ``net`` (a ResNet subclass) for ``depth``, without its pooling and
    classifier; returns the trunk's output channels. ``what`` names the model in the error."""
    if depth not in _DEPTHS:
        raise ValueError(f"{what} depth must be one of {sorted(_DEPTHS)}, got {depth}")
    block, blocks = _DEPTHS[depth]
    ResNet.__init__(net, block, list(blocks))
    del net.avgpool, net.fc
    return 512 * block.expansion


def resnet_trunk(net: ResNet, x: torch.Tensor) -> torch.Tensor:
    """The stride-32 features of ``net``'s torchvision trunk (stem and layer1-4)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


@POSE_NET_REGISTRY.register()
class PoseResNet(TopDownPoseNet, ResNet):
    size_divisibility = 32  # the deconvolutions restore stride 4 exactly from stride 32
    heatmap_stride = 4

    @configurable
    def __init__(
        self,
        num_keypoints: int = 17,
        depth: int = 50,
        num_deconv_layers: int = 3,
        num_deconv_filters: int = 256,
        deconv_kernel: int = 4,
        final_conv_kernel: int = 1,
    ):
        if deconv_kernel not in _DECONV_PADDING:
            raise ValueError(
                f"DECONV_KERNEL must be one of {sorted(_DECONV_PADDING)}, got {deconv_kernel}"
            )
        cin = init_resnet_trunk(self, depth, "SimpleBaseline")
        padding, output_padding = _DECONV_PADDING[deconv_kernel]
        layers = []
        for _ in range(num_deconv_layers):
            layers += [
                nn.ConvTranspose2d(
                    cin, num_deconv_filters, deconv_kernel, 2, padding, output_padding, bias=False
                ),
                nn.BatchNorm2d(num_deconv_filters),
                nn.ReLU(inplace=True),
            ]
            cin = num_deconv_filters
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(
            cin, num_keypoints, final_conv_kernel, 1, final_conv_kernel // 2
        )
        # The official initialisation of the new layers (the backbone keeps torchvision's).
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    @classmethod
    def from_config(cls, cfg):
        """
        Args:
            cfg: the config: MODEL.TOPDOWN.NUM_KEYPOINTS and MODEL.POSE_RESNET.*.

        Returns:
            the constructor's keyword arguments.
        """
        p = cfg.MODEL.POSE_RESNET
        return dict(
            num_keypoints=cfg.MODEL.TOPDOWN.NUM_KEYPOINTS,
            depth=p.DEPTH,
            num_deconv_layers=p.NUM_DECONV_LAYERS,
            num_deconv_filters=p.NUM_DECONV_FILTERS,
            deconv_kernel=p.DECONV_KERNEL,
            final_conv_kernel=p.FINAL_CONV_KERNEL,
        )

    def forward(self, x: torch.Tensor, cues=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            x: (N, 3, H, W) normalised crops.
            cues: unused (this network takes no cue channels).

        Returns:
            {"heatmap": (N, K, H / 4, W / 4)}.
        """
        return {"heatmap": self.final_layer(self.deconv_layers(resnet_trunk(self, x)))}
