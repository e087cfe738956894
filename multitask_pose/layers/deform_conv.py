"""DCNv2 (modulated deformable convolution) on CPU and CUDA.

detectron2's ``ModulatedDeformConv`` needs its CUDA extension. On CUDA this layer runs
``torchvision.ops.deform_conv2d``; on the CPU it runs :func:`sampled_deform_conv2d`, the same
operation written as ``grid_sample`` + one matrix product. Why not torchvision's op everywhere:
training through its CPU kernel (forward + backward) measured 3.8-8.1x
slower than the sampled form on this project's 2-core CPU (R-18 res3-res5 and keypoint-head
shapes; ``benchmarks/bench_keypoint_variants.py``), while the two agree to float rounding in
outputs and in all gradients (``tests/modeling/test_deform_conv.py``). ``impl`` picks one by hand.

``DeformConv2d`` carries its own offset/mask predictor (``<name>.offset``), keeps the plain
convolution's parameter names (``weight``, ``bias``, ``norm.*``), and starts equal to the plain
convolution: the predictor is zero-initialised, so offsets are 0 and the modulation is
``2 * sigmoid(0) = 1``. (DCNv2's paper and detectron2 use ``sigmoid``, which starts at 0.5 and
would halve every response of a pretrained convolution swapped for a deformable one.) So a plain
checkpoint loads into a deformable model with only ``*.offset.*`` missing and gives the same
outputs until the offsets learn. ``modulation="sigmoid"`` is detectron2's (its
``DeformBottleneckBlock``: the same predictor layout, offsets then mask logits), for its
deformable checkpoints (``tools/convert_checkpoint.py --from detectron2``).
"""

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d
from torch import nn
from torchvision.ops import deform_conv2d

__all__ = ["DeformConv2d", "deform_offset_parameters", "sampled_deform_conv2d"]

IMPLS = ("auto", "torchvision", "sampled")
MODULATIONS = {  # mask logits -> modulation
    "2sigmoid": lambda z: 2 * torch.sigmoid(z),  # ours: 1 at the zero initialisation
    "sigmoid": torch.sigmoid,  # DCNv2's paper and detectron2's: 0.5 at zero
}


def sampled_deform_conv2d(
    x, offset, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), mask=None
):
    """``torchvision.ops.deform_conv2d`` (same arguments and layouts, no weight groups) as
    bilinear sampling of every tap with ``grid_sample`` followed by one matrix product.

    Tap ``k = (i, j)`` of output cell ``(ho, wo)`` in deformable group ``g`` reads the input at
    ``(ho * stride - pad + i * dilation + dy, wo * stride - pad + j * dilation + dx)`` with
    ``(dy, dx) = offset[:, 2 * (g * K + k) : 2 * (g * K + k) + 2]``, bilinearly, zero outside the
    image (``grid_sample``'s zero padding treats each of the four corners as torchvision does),
    and is scaled by ``mask[:, g * K + k]``. Memory: the sampled columns, ``C * K`` values per
    output cell, as torchvision's im2col.
    """
    n, c, h, w = x.shape
    o, c_w, kh, kw = weight.shape
    if c_w != c:
        raise ValueError(
            f"sampled_deform_conv2d: weight expects {c_w} input channels (no groups), input has {c}"
        )
    taps = kh * kw
    ho, wo = offset.shape[-2:]
    groups = offset.shape[1] // (2 * taps)
    if offset.shape[1] != 2 * groups * taps or c % groups:
        raise ValueError(
            f"sampled_deform_conv2d: offset has {offset.shape[1]} channels for {taps} taps and"
            f" {c} input channels"
        )
    dev, dt = x.device, x.dtype
    tap_y, tap_x = torch.meshgrid(
        torch.arange(kh, device=dev, dtype=dt) * dilation[0],
        torch.arange(kw, device=dev, dtype=dt) * dilation[1],
        indexing="ij",
    )
    base_y = torch.arange(ho, device=dev, dtype=dt) * stride[0] - padding[0]
    base_x = torch.arange(wo, device=dev, dtype=dt) * stride[1] - padding[1]
    off = offset.view(n, groups, taps, 2, ho, wo)
    py = tap_y.reshape(1, 1, taps, 1, 1) + base_y.view(1, 1, 1, ho, 1) + off[:, :, :, 0]
    px = tap_x.reshape(1, 1, taps, 1, 1) + base_x.view(1, 1, 1, 1, wo) + off[:, :, :, 1]
    # Pixel index -> grid_sample's normalised coordinate (align_corners=False: pixel centres at
    # (2 p + 1) / size - 1, which also holds for a side of one pixel).
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1).view(
        n * groups, taps * ho, wo, 2
    )
    cols = F.grid_sample(
        x.reshape(n * groups, c // groups, h, w),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    ).view(n, groups, c // groups, taps, ho, wo)
    if mask is not None:
        cols = cols * mask.view(n, groups, 1, taps, ho, wo)
    out = torch.matmul(weight.reshape(o, c * taps), cols.reshape(n, c * taps, ho * wo)).view(
        n, o, ho, wo
    )
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class DeformConv2d(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        deform_groups: int = 1,
        modulated: bool = True,
        bias: bool = True,
        norm: nn.Module = None,
        activation=None,
        impl: str = "auto",
        modulation: str = "2sigmoid",
    ):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"DCN: impl must be one of {IMPLS}, got {impl!r}")
        if modulation not in MODULATIONS:
            raise ValueError(
                f"DCN: modulation must be one of {sorted(MODULATIONS)}"
                f" (MODEL.RESNETS.DEFORM_MODULATION), got {modulation!r}"
            )
        self.modulation = modulation
        # "auto": torchvision's kernel on CUDA, the sampled form on the CPU (see the module doc).
        self.impl = impl
        if in_channels % deform_groups:
            raise ValueError(
                f"DCN: in_channels={in_channels} is not divisible by deform_groups={deform_groups} "
                "(MODEL.RESNETS.DEFORM_NUM_GROUPS)"
            )
        self.stride, self.padding, self.dilation = (
            (stride, stride),
            (padding, padding),
            (dilation, dilation),
        )
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
        self.offset = nn.Conv2d(
            in_channels,
            taps * (3 if modulated else 2),
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
        )
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    @classmethod
    def from_conv(
        cls,
        conv: Conv2d,
        deform_groups: int = 1,
        modulated: bool = True,
        modulation: str = "2sigmoid",
    ) -> "DeformConv2d":
        """The deformable twin of a detectron2 ``Conv2d`` (square kernel, no channel groups): same
        weights, bias, norm and activation."""
        kh, kw = conv.kernel_size
        if kh != kw or conv.groups != 1:
            raise ValueError(
                "DCN needs a square, ungrouped convolution, got kernel"
                f" {conv.kernel_size}, groups {conv.groups}"
            )
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            kh,
            conv.stride[0],
            conv.padding[0],
            conv.dilation[0],
            deform_groups,
            modulated,
            bias=conv.bias is not None,
            norm=conv.norm,
            activation=conv.activation,
            modulation=modulation,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        # A conv frozen by FREEZE_AT stays frozen, offsets included (it then stays the plain conv).
        layer.requires_grad_(conv.weight.requires_grad)
        return layer.to(conv.weight.device)

    def forward(self, x):
        """
        Args:
            x: (N, C_in, H, W) features.

        Returns:
            (N, C_out, H_out, W_out): the deformable convolution at the offsets (and modulation)
            this layer predicts from ``x``, then its norm and activation.
        """
        predicted = self.offset(x)
        taps2 = 2 * self.deform_groups * self.weight.shape[-1] ** 2
        offset = predicted[:, :taps2]
        mask = MODULATIONS[self.modulation](predicted[:, taps2:]) if self.modulated else None
        impl = self.impl if self.impl != "auto" else ("torchvision" if x.is_cuda else "sampled")
        op = deform_conv2d if impl == "torchvision" else sampled_deform_conv2d
        x = op(
            x,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def extra_repr(self):
        o, i, k, _ = self.weight.shape
        return (
            f"{i}, {o}, kernel_size={k}, stride={self.stride[0]}, padding={self.padding[0]}, "
            f"deform_groups={self.deform_groups}, modulated={self.modulated}, impl={self.impl}"
            + (f", modulation={self.modulation}" if self.modulated else "")
        )


def deform_offset_parameters(model: nn.Module):
    """The parameters of every ``DeformConv2d``'s offset/modulation predictor in ``model`` (which
    the trainer gives SOLVER.DEFORM_OFFSET_LR_FACTOR x the learning rate)."""
    for module in model.modules():
        if isinstance(module, DeformConv2d):
            yield from module.offset.parameters()
