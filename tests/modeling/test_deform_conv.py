"""DCNv2 layer, deformable backbones and heads on the CPU, and loading plain checkpoints into
them."""

from pathlib import Path

import pytest
import torch
from detectron2.layers import Conv2d
from detectron2.modeling import build_backbone, build_model
from torch.nn import functional as F
from torchvision.ops import deform_conv2d

import multitask_pose
from multitask_pose.layers import DeformConv2d
from multitask_pose.layers.deform_conv import sampled_deform_conv2d

ROOT = Path(__file__).resolve().parents[2]


def test_equals_conv_at_init_forward_and_backward():
    torch.manual_seed(0)
    conv = Conv2d(6, 8, 3, stride=2, padding=1, bias=True)
    dcn = DeformConv2d.from_conv(conv, deform_groups=2)
    x = torch.randn(2, 6, 11, 13, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    ref, out = conv(x), dcn(x2)
    assert torch.allclose(out, ref, atol=1e-5)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    out.backward(grad)
    assert torch.allclose(x2.grad, x.grad, atol=1e-5)
    assert torch.allclose(dcn.weight.grad, conv.weight.grad, atol=1e-4)
    assert torch.allclose(dcn.bias.grad, conv.bias.grad, atol=1e-4)
    # The offset/mask predictor does receive a gradient, so the deformation can learn.
    assert dcn.offset.weight.grad.abs().sum() > 0


def test_finite_difference_gradients():
    """Gradients of the modulated deformable conv with non-zero offsets and masks, against finite
    differences in float64 (input, offsets, masks, weight, bias)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    # Fractional offsets away from integers, where bilinear sampling is differentiable.
    offset = (
        0.3 + 0.4 * torch.rand(1, 18, 5, 5, generator=gen, dtype=torch.float64)
    ).requires_grad_(True)
    mask = torch.rand(1, 9, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)

    def fn(x, offset, mask, weight, bias):
        return deform_conv2d(x, offset, weight, bias, padding=(1, 1), mask=mask)

    assert torch.autograd.gradcheck(fn, (x, offset, mask, weight, bias), eps=1e-6, atol=1e-5)

    # And through our layer: its own offset predictor's parameters, in float64.
    layer = DeformConv2d(2, 3, 3, padding=1).double()
    with torch.no_grad():
        layer.offset.weight.normal_(0, 0.05, generator=gen)
        layer.offset.bias.uniform_(0.2, 0.4, generator=gen)
    params = (layer.offset.weight, layer.offset.bias, layer.weight)

    def through_layer(ow, ob, w):
        predicted = F.conv2d(x, ow, ob, padding=1)
        return deform_conv2d(
            x,
            predicted[:, :18],
            w,
            layer.bias,
            padding=(1, 1),
            mask=2 * torch.sigmoid(predicted[:, 18:]),
        )

    assert torch.allclose(through_layer(*params), layer(x))
    assert torch.autograd.gradcheck(through_layer, params, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "shape",
    [
        dict(n=2, c=4, o=5, h=9, w=7, k=3, stride=1, pad=1, dil=1, groups=1, modulated=True),
        dict(n=1, c=6, o=3, h=10, w=11, k=3, stride=2, pad=2, dil=2, groups=2, modulated=True),
        dict(n=2, c=4, o=2, h=6, w=8, k=3, stride=1, pad=0, dil=1, groups=4, modulated=False),
        dict(
            n=1, c=2, o=2, h=1, w=5, k=1, stride=1, pad=0, dil=1, groups=1, modulated=True
        ),  # one-pixel-high input
    ],
)
def test_sampled_form_equals_torchvision(shape):
    """The CPU form (grid_sample + matmul) against torchvision's kernel: outputs and every gradient,
    with offsets of several pixels (many taps partly or wholly outside the image)."""
    s = shape
    gen = torch.Generator().manual_seed(3)
    ho = (s["h"] + 2 * s["pad"] - s["dil"] * (s["k"] - 1) - 1) // s["stride"] + 1
    wo = (s["w"] + 2 * s["pad"] - s["dil"] * (s["k"] - 1) - 1) // s["stride"] + 1
    taps = s["groups"] * s["k"] ** 2
    inputs = [
        torch.randn(s["n"], s["c"], s["h"], s["w"], generator=gen, dtype=torch.float64),
        3 * torch.randn(s["n"], 2 * taps, ho, wo, generator=gen, dtype=torch.float64),
        torch.randn(s["o"], s["c"], s["k"], s["k"], generator=gen, dtype=torch.float64),
        torch.randn(s["o"], generator=gen, dtype=torch.float64),
        torch.rand(s["n"], taps, ho, wo, generator=gen, dtype=torch.float64)
        if s["modulated"]
        else None,
    ]
    kw = dict(stride=(s["stride"],) * 2, padding=(s["pad"],) * 2, dilation=(s["dil"],) * 2)
    results = []
    for op in (deform_conv2d, sampled_deform_conv2d):
        leaves = [t.clone().requires_grad_(True) if t is not None else None for t in inputs]
        x, offset, weight, bias, mask = leaves
        out = op(x, offset, weight, bias, mask=mask, **kw)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=torch.float64)).view_as(out))
        results.append((out, [t.grad for t in leaves if t is not None]))
    (ref, ref_grads), (out, grads) = results
    assert out.shape == ref.shape == (s["n"], s["o"], ho, wo)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9)


def test_sampled_form_finite_difference_gradients():
    gen = torch.Generator().manual_seed(4)
    args = (
        torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True),
        (0.3 + 0.4 * torch.rand(1, 18, 5, 6, generator=gen, dtype=torch.float64)).requires_grad_(
            True
        ),
        torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True),
        torch.rand(1, 9, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(
        lambda x, o, w, b, m: sampled_deform_conv2d(x, o, w, b, padding=(1, 1), mask=m),
        args,
        eps=1e-6,
        atol=1e-5,
    )


def test_layer_implementations_agree_and_bad_impl_is_refused():
    torch.manual_seed(5)
    layers = {
        impl: DeformConv2d(4, 6, 3, padding=1, deform_groups=2, impl=impl)
        for impl in ("torchvision", "sampled")
    }
    torch.nn.init.normal_(layers["torchvision"].offset.weight, std=0.3)  # offsets of about a pixel
    layers["sampled"].load_state_dict(layers["torchvision"].state_dict())
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(layers["sampled"](x), layers["torchvision"](x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="impl must be one of"):
        DeformConv2d(4, 6, impl="cuda")


def cfg_for(recipe, *opts):
    cfg = multitask_pose.get_multitask_cfg()
    cfg.merge_from_file(str(ROOT / "configs" / recipe))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts])
    return cfg


COCO = "COCO-MultiTask/keypoint_rcnn_R_50_FPN_1x.yaml"
SYNTH = "Synthetic/multitask_rcnn_R_18_FPN_synth.yaml"
OURS = ["MODEL.BACKBONE.NAME", "build_multitask_resnet_fpn_backbone"]
DCN_RB = [*OURS, "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[False, True, True, True]"]
DCN_HEAD = [
    "MODEL.ROI_KEYPOINT_HEAD.NAME",
    "KeypointOffsetHead",
    "MODEL.ROI_KEYPOINT_HEAD.DEFORM_CONVS",
    "(3, 4)",
]


def test_default_keys_build_detectron2s_backbone():
    full_width = ["MODEL.RESNETS.STEM_OUT_CHANNELS", "64", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    for recipe in (COCO, SYNTH):
        ours = build_backbone(cfg_for(recipe, *full_width, *OURS)).state_dict()
        stock = build_backbone(
            cfg_for(recipe, *full_width, "MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone")
        ).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in stock.items()}


@pytest.mark.parametrize(
    "variant, expected_missing",
    [
        (
            DCN_RB,
            lambda k: (
                ".conv2.offset." in k
                and k.startswith("backbone.bottom_up.res")
                and not k.startswith("backbone.bottom_up.res2")
            ),
        ),
        (
            [*DCN_RB, *DCN_HEAD],
            lambda k: (
                ".conv2.offset." in k
                or k.startswith("roi_heads.keypoint_head.conv_fcn3.offset.")
                or k.startswith("roi_heads.keypoint_head.conv_fcn4.offset.")
                or k.startswith("roi_heads.keypoint_head.offset_lowres.")
            ),
        ),
        (
            ["MODEL.ROI_KEYPOINT_HEAD.NAME", "KeypointOffsetHead"],
            lambda k: k.startswith("roi_heads.keypoint_head.offset_lowres."),
        ),
    ],
)
def test_plain_keypoint_rcnn_checkpoint_loads(variant, expected_missing):
    """A stock detectron2 Keypoint R-CNN state dict (R-50-FPN) loads into each variant; only the
    new offset/mask and offset-head parameters are missing, nothing is unexpected."""
    stock = build_model(cfg_for(COCO, "MODEL.ROI_HEADS.NAME", "StandardROIHeads")).state_dict()
    model = build_model(cfg_for(COCO, *variant))
    result = model.load_state_dict(stock, strict=False)
    assert result.unexpected_keys == []
    new = {k for k in model.state_dict() if k not in stock}
    assert set(result.missing_keys) == new and new and all(expected_missing(k) for k in new)


def test_deformable_model_trains_on_cpu(synth_mini):
    """The CPU recipe with deformable res3-res5 and head convs: a few optimiser steps on real
    SynthPeople batches run, losses are finite, and the offset predictors learn."""
    from detectron2.data import build_detection_train_loader
    from detectron2.utils.events import EventStorage

    cfg = cfg_for(
        SYNTH,
        *DCN_RB,
        *DCN_HEAD,
        "MODEL.RESNETS.RES2_OUT_CHANNELS",
        "32",
        "MODEL.RESNETS.STEM_OUT_CHANNELS",
        "32",
        "DATASETS.TRAIN",
        "('synth_people_mini_train',)",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "INPUT.MIN_SIZE_TRAIN",
        "(192,)",
        "INPUT.MAX_SIZE_TRAIN",
        "256",
        "DATALOADER.NUM_WORKERS",
        "0",
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.backbone.bottom_up.res3[0].conv2, DeformConv2d)
    assert not isinstance(model.backbone.bottom_up.res2[0].conv2, DeformConv2d)
    assert model.backbone.bottom_up.res2[0].conv1.out_channels == 32
    offsets = [m.offset.weight for m in model.modules() if isinstance(m, DeformConv2d)]
    assert len(offsets) == 6 + 2  # 2 blocks in each of res3-res5, convs 3 and 4 of the head
    before = [w.detach().clone() for w in offsets]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = next(iter(build_detection_train_loader(cfg)))
    totals = []
    with EventStorage():
        for _ in range(4):  # one batch: the model fits it, so its loss must fall
            torch.manual_seed(1)  # the same RoI sampling every step
            losses = model(batch)
            assert all(torch.isfinite(v) for v in losses.values()), losses
            optimizer.zero_grad()
            total = sum(losses.values())
            total.backward()
            # Each offset predictor moves by exactly -lr x its gradient (plain SGD).
            grads = [w.grad.detach().clone() for w in offsets]
            old = [w.detach().clone() for w in offsets]
            optimizer.step()
            for w, o, g in zip(offsets, old, grads):
                torch.testing.assert_close(w.detach(), o - 0.01 * g)
            totals.append(total.item())
    assert totals[-1] < totals[0], totals
    assert all((w - b).abs().max() > 0 for w, b in zip(offsets, before))


def test_offset_predictors_learn_at_the_lr_factor():
    """The trainer gives the DCNv2 offset/modulation predictors SOLVER.DEFORM_OFFSET_LR_FACTOR x
    the lr each would have (bias factor included); every other parameter keeps detectron2's."""
    from multitask_pose.engine import MultiTaskTrainer

    for optimizer in ("AdamW", "SGD"):
        cfg = cfg_for(
            SYNTH,
            *DCN_RB,
            *DCN_HEAD,
            "SOLVER.OPTIMIZER",
            optimizer,
            "SOLVER.BASE_LR",
            "0.004",
            "SOLVER.BIAS_LR_FACTOR",
            "2.0",
            "SOLVER.DEFORM_OFFSET_LR_FACTOR",
            "0.1",
        )
        model = build_model(cfg)
        groups = MultiTaskTrainer.build_optimizer(cfg, model).param_groups
        lr_of = {p: g["lr"] for g in groups for p in g["params"]}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        assert sum(len(g["params"]) for g in groups) == len(named) == len(lr_of)
        assert sum(".offset." in n for n, _ in named) == 2 * 8  # weight and bias of 8 predictors
        for name, param in named:
            expected = (
                0.004
                * (2.0 if name.endswith(".bias") else 1.0)
                * (0.1 if ".offset." in name else 1.0)
            )
            assert lr_of[param] == pytest.approx(expected), name


def test_bad_deform_keys():
    with pytest.raises(ValueError, match=r"DEFORM_ON_PER_STAGE turns on \['res5'\].*res4"):
        build_backbone(
            cfg_for(
                COCO,
                *OURS,
                "MODEL.RESNETS.OUT_FEATURES",
                "['res2', 'res3', 'res4']",
                "MODEL.FPN.IN_FEATURES",
                "['res2', 'res3', 'res4']",
                "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
                "[False, False, False, True]",
            )
        )
    with pytest.raises(ValueError, match="one flag per stage"):
        build_backbone(cfg_for(COCO, *OURS, "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[True, True]"))
    with pytest.raises(ValueError, match="DEFORM_CONVS=\\(5,\\).*1..4"):
        build_model(
            cfg_for(
                SYNTH,
                "MODEL.ROI_KEYPOINT_HEAD.NAME",
                "KeypointOffsetHead",
                "MODEL.ROI_KEYPOINT_HEAD.DEFORM_CONVS",
                "(5,)",
            )
        )
    with pytest.raises(ValueError, match="not divisible by deform_groups"):
        DeformConv2d(6, 8, deform_groups=4)


def test_detectron2_deformable_backbone_on_cpu_is_refused_with_the_fix():
    from multitask_pose.engine.cli import ConfigError
    from multitask_pose.engine.setup import check_device

    cfg = cfg_for(COCO, "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[False, True, True, True]")
    with pytest.raises(
        ConfigError, match="use MODEL.BACKBONE.NAME build_multitask_resnet_fpn_backbone"
    ):
        check_device(cfg)
    check_device(cfg_for(COCO, *DCN_RB))  # ours runs here
