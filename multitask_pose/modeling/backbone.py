"""ResNet(-FPN) backbones built by detectron2's own code, with two gaps filled:

- deformable stages on any device: the 3x3 conv of every block in the stages that
  ``MODEL.RESNETS.DEFORM_ON_PER_STAGE`` selects becomes a ``DeformConv2d`` (DCNv2, CPU and CUDA)
  (``DEFORM_MODULATED``, ``DEFORM_NUM_GROUPS`` as in detectron2), where detectron2's own deformable
  blocks need its CUDA extension and refuse ResNet-18/34;
- narrow ResNet-18/34 for CPU recipes: ``MODEL.RESNETS.RES2_OUT_CHANNELS`` and
  ``STEM_OUT_CHANNELS`` may be below 64 (detectron2 asserts 64 for basic-block ResNets).

Select with ``MODEL.BACKBONE.NAME: "build_multitask_resnet_fpn_backbone"`` (or
``"build_multitask_resnet_backbone"`` without FPN). With the default keys the result is
detectron2's ResNet(-FPN), parameter for parameter.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, ResNet, build_resnet_backbone

from ..layers import DeformConv2d

__all__ = ["build_multitask_resnet_backbone", "build_multitask_resnet_fpn_backbone"]


def _check_deform_keys(cfg):
    flags = list(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE)
    if len(flags) != 4:
        raise ValueError(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE needs one flag per stage res2..res5 (4), "
            f"got {flags}"
        )
    deformed = [f"res{i + 2}" for i, on in enumerate(flags) if on]
    # A stage cut away by FREEZE_AT is fine; one past the last output feature does not exist.
    last = max(int(name[3:]) for name in cfg.MODEL.RESNETS.OUT_FEATURES if name.startswith("res"))
    missing = [name for name in deformed if int(name[3:]) > last]
    if missing:
        raise ValueError(
            f"MODEL.RESNETS.DEFORM_ON_PER_STAGE turns on {missing}, but the ResNet stops at "
            f"res{last} (MODEL.RESNETS.OUT_FEATURES={list(cfg.MODEL.RESNETS.OUT_FEATURES)})"
        )
    return deformed


def _narrow_basic_resnet(cfg, input_shape):
    """ResNet-18/34 with any stem/res2 width: detectron2's blocks and stage layout."""
    r = cfg.MODEL.RESNETS
    blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[r.DEPTH]
    stem = BasicStem(
        in_channels=input_shape.channels, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM
    )
    last = max(int(name[3:]) for name in r.OUT_FEATURES if name.startswith("res"))
    stages, in_channels, out_channels = [], r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS
    for idx in range(last - 1):
        stages.append(
            ResNet.make_stage(
                BasicBlock,
                blocks[idx],
                stride_per_block=[1 if idx == 0 else 2] + [1] * (blocks[idx] - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                norm=r.NORM,
            )
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=r.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_multitask_resnet_backbone(cfg, input_shape: ShapeSpec):
    deformed = _check_deform_keys(cfg)
    r = cfg.MODEL.RESNETS
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False] * 4  # deformable convs are swapped in below
    if r.DEPTH in (18, 34) and r.RES2_OUT_CHANNELS != 64:
        if r.NUM_GROUPS != 1 or r.RES5_DILATION != 1:
            raise ValueError(
                "ResNet-18/34 support neither MODEL.RESNETS.NUM_GROUPS != 1 nor RES5_DILATION != 1"
            )
        resnet = _narrow_basic_resnet(plain, input_shape)
    else:
        resnet = build_resnet_backbone(plain, input_shape)
    for name in deformed:  # all built: _check_deform_keys refused stages past the last output
        for block in getattr(resnet, name):
            block.conv2 = DeformConv2d.from_conv(
                block.conv2, r.DEFORM_NUM_GROUPS, r.DEFORM_MODULATED, r.DEFORM_MODULATION
            )
    return resnet


@BACKBONE_REGISTRY.register()
def build_multitask_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """detectron2's ``build_resnet_fpn_backbone`` on :func:`build_multitask_resnet_backbone`."""
    return FPN(
        bottom_up=build_multitask_resnet_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
