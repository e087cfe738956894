"""DCNv2 (modulated deformable convolution) on ``torchvision.ops.deform_conv2d``, CPU and CUDA.

detectron2's ``ModulatedDeformConv`` needs its CUDA extension; torchvision's op runs on both
devices. ``DeformConv2d`` carries its own offset/mask predictor (``<name>.offset``), keeps the
plain convolution's parameter names (``weight``, ``bias``, ``norm.*``), and starts equal to the
plain convolution: the predictor is zero-initialised, so offsets are 0 and the modulation is
``2 * sigmoid(0) = 1``. (DCNv2's paper and detectron2 use ``sigmoid``, which starts at 0.5 and
would halve every response of a pretrained convolution swapped for a deformable one.) So a plain
checkpoint loads into a deformable model with only ``*.offset.*`` missing and gives the same
outputs until the offsets learn.
"""
import torch
from torch import nn
from torchvision.ops import deform_conv2d

from detectron2.layers import Conv2d

__all__ = ["DeformConv2d"]


class DeformConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, deform_groups: int = 1, modulated: bool = True,
                 bias: bool = True, norm: nn.Module = None, activation=None):
        super().__init__()
        if in_channels % deform_groups:
            raise ValueError(f"DCN: in_channels={in_channels} is not divisible by deform_groups={deform_groups} "
                             "(MODEL.RESNETS.DEFORM_NUM_GROUPS)")
        self.stride, self.padding, self.dilation = (stride, stride), (padding, padding), (dilation, dilation)
        self.modulated = modulated
        self.deform_groups = deform_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=1)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.norm = norm
        self.activation = activation
        taps = deform_groups * kernel_size * kernel_size
        # Offsets (2 per tap: y, x as torchvision and the original DCN) and, if modulated, a mask
        # logit per tap, predicted from the same input with the same geometry as the conv itself.
        self.offset = nn.Conv2d(in_channels, taps * (3 if modulated else 2), kernel_size, stride=stride,
                                padding=padding, dilation=dilation)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    @classmethod
    def from_conv(cls, conv: Conv2d, deform_groups: int = 1, modulated: bool = True) -> "DeformConv2d":
        """The deformable twin of a detectron2 ``Conv2d`` (square kernel, no channel groups): same
        weights, bias, norm and activation."""
        kh, kw = conv.kernel_size
        if kh != kw or conv.groups != 1:
            raise ValueError(f"DCN needs a square, ungrouped convolution, got kernel {conv.kernel_size}, groups {conv.groups}")
        layer = cls(conv.in_channels, conv.out_channels, kh, conv.stride[0], conv.padding[0], conv.dilation[0],
                    deform_groups, modulated, bias=conv.bias is not None, norm=conv.norm,
                    activation=conv.activation)
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        # A conv frozen by FREEZE_AT stays frozen, offsets included (it then stays the plain conv).
        layer.requires_grad_(conv.weight.requires_grad)
        return layer.to(conv.weight.device)

    def forward(self, x):
        predicted = self.offset(x)
        taps2 = 2 * self.deform_groups * self.weight.shape[-1] ** 2
        offset = predicted[:, :taps2]
        mask = 2 * torch.sigmoid(predicted[:, taps2:]) if self.modulated else None
        x = deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                          dilation=self.dilation, mask=mask)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def extra_repr(self):
        o, i, k, _ = self.weight.shape
        return (f"{i}, {o}, kernel_size={k}, stride={self.stride[0]}, padding={self.padding[0]}, "
                f"deform_groups={self.deform_groups}, modulated={self.modulated}")
