"""PCR (progressive context refinement, report 002): every setting of the report against the
code and the recipes (one table, each row with its section / equation / table), the CAM against
an independent functional computation of eq. (1), Table 3's switches, progressive fusion (eq. (2))
and auxiliary supervision, the auxiliary loss weight, parameter counts against a hand derivation,
and a PCR network through the meta-architecture and the predictor."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from detectron2.modeling import build_model

from pose_topdown import get_topdown_cfg
from pose_topdown.modeling import CAM, PCRHead, PCRHRNet, PCRResNet, PoseHighResolutionNet
from topdown_testing import (
    SAMPLE,
    cam_parameters,
    pcr_hrnet_parameters,
    pcr_resnet_parameters,
    sample_cfg,
    trained_predictor,
)
from topdown_testing import (
    count_parameters as _count,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def randomize_batch_norms(module, residual_bias=-1.0):
    """Non-trivial BN statistics and affines (the defaults make BN an identity in eval mode); the
    residual BN's bias is shifted down so that CAM sums have negative entries for the ReLU."""
    g = torch.Generator().manual_seed(1)
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.3 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.3 * torch.randn(n, generator=g))
            if name.startswith("residual"):
                m.bias.data += residual_bias
    return module


def _bn(y, m):
    return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)


def cam_reference(cam, x, up, se=True, dilations=(1, 2, 3, 4), se_bn=True):
    """Eq. (1) of report 002 (section 2.1) as functional ops on the module's own weights, in eval
    mode: f_CAM = ReLU(f_SE * f_HDC + f_RES).

    f_HDC: four 3x3 convs of dilation 1, 2, 3, 4 (BN, ReLU), concatenated, then a stride-2 4x4
    deconvolution (up) or a 3x3 conv (BN, ReLU). f_SE: global average pool of f_HDC, 1x1 conv to
    C/4 (BN, ReLU), 1x1 conv to C (BN), sigmoid. f_RES: 2x nearest upsampling (up), then a 1x1 conv
    (BN)."""
    parts = []
    for d, (conv, bn, _) in zip(dilations, cam.dilated):
        parts.append(F.relu(_bn(F.conv2d(x, conv.weight, padding=d, dilation=d), bn)))
    mix, mix_bn = cam.mix[0], cam.mix[1]
    cat = torch.cat(parts, 1)
    if up:
        h = F.conv_transpose2d(cat, mix.weight, stride=2, padding=1)
    else:
        h = F.conv2d(cat, mix.weight, padding=1)
    f_hdc = F.relu(_bn(h, mix_bn))
    f_se = 1.0
    if se:
        convs = [m for m in cam.se if isinstance(m, torch.nn.Conv2d)]
        v = f_hdc.mean((2, 3), keepdim=True)
        if se_bn:
            bns = [m for m in cam.se if isinstance(m, torch.nn.BatchNorm2d)]
            v = F.relu(_bn(F.conv2d(v, convs[0].weight), bns[0]))
            f_se = torch.sigmoid(_bn(F.conv2d(v, convs[1].weight), bns[1]))
        else:
            v = F.relu(F.conv2d(v, convs[0].weight, convs[0].bias))
            f_se = torch.sigmoid(F.conv2d(v, convs[1].weight, convs[1].bias))
    r = F.interpolate(x, scale_factor=2, mode="nearest") if up else x
    f_res = _bn(F.conv2d(r, cam.residual[0].weight), cam.residual[1])
    return F.relu(f_se * f_hdc + f_res)


@pytest.mark.parametrize("up", [True, False])
def test_cam_shapes_and_parameters(up):
    cam = CAM(64, 48, upsample=up)
    y = cam(torch.randn(2, 64, 12, 8))
    assert y.shape == ((2, 48, 24, 16) if up else (2, 48, 12, 8))
    assert _count(cam) == cam_parameters(64, 48, up)
    # Section 2.1 keeps the residual's 1x1 conv also where the channels agree.
    assert _count(CAM(48, 48, upsample=False)) == cam_parameters(48, 48, False)
    assert _count(CAM(64, 48, up, se_bn=False)) == cam_parameters(64, 48, up, se_bn=False)
    assert _count(CAM(64, 48, up, se=False, hdc=False)) == cam_parameters(64, 48, up, se=False)


@pytest.mark.parametrize("up", [True, False])
@pytest.mark.parametrize("cin", [32, 48])
def test_cam_is_equation_1(up, cin):
    """The CAM against an independent functional computation of eq. (1) from its weights: the SE
    gate, the dilations 1-4, the residual 1x1 conv and the output ReLU each change the result."""
    torch.manual_seed(0)
    cam = randomize_batch_norms(CAM(cin, 48, upsample=up)).eval()
    x = torch.randn(2, cin, 10, 8)
    with torch.no_grad():
        got, want = cam(x), cam_reference(cam, x, up)
    torch.testing.assert_close(got, want)
    assert (got == 0).float().mean() > 0.05 and got.min() >= 0, "the output is rectified"


@pytest.mark.parametrize("up", [True, False])
def test_table_3_switches_are_equation_1_without_the_part(up):
    """Table 3's rows: SE off is eq. (1) with f_SE = 1; HDC off is the branch with all four convs
    of dilation 1, which is one plain 3x3 conv of C kernels (BN, ReLU); SE_BN off is SENet's gate
    (biases, no BN)."""
    torch.manual_seed(0)
    x = torch.randn(2, 32, 10, 8)
    no_se = randomize_batch_norms(CAM(32, 48, up, se=False)).eval()
    no_hdc = randomize_batch_norms(CAM(32, 48, up, hdc=False)).eval()
    senet = randomize_batch_norms(CAM(32, 48, up, se_bn=False)).eval()
    with torch.no_grad():
        torch.testing.assert_close(no_se(x), cam_reference(no_se, x, up, se=False))
        torch.testing.assert_close(no_hdc(x), cam_reference(no_hdc, x, up, dilations=(1,) * 4))
        torch.testing.assert_close(senet(x), cam_reference(senet, x, up, se_bn=False))
        plain = torch.cat([F.conv2d(x, b[0].weight, padding=1) for b in no_hdc.dilated], 1)
        one_conv = F.conv2d(x, torch.cat([b[0].weight for b in no_hdc.dilated]), padding=1)
        torch.testing.assert_close(plain, one_conv)
    assert not hasattr(no_se, "se") and hasattr(no_hdc, "se")


def test_progressive_fusion_and_auxiliary_supervision_as_specified():
    """Level l decodes the sum of the first l decoders' outputs with its own conv; the auxiliary
    output is a conv on the input of each decoder's last CAM, resized to the heatmap size."""
    torch.manual_seed(0)
    head = PCRHead(40, (32, 24), (True, True), num_decoders=3, num_keypoints=5).eval()
    for m in head.modules():  # non-trivial output convs
        if isinstance(m, torch.nn.Conv2d) and m.out_channels == 5:
            torch.nn.init.normal_(m.weight)
            torch.nn.init.normal_(m.bias)
    x = torch.randn(2, 40, 4, 3)
    out = head(x)
    assert set(out) == {"heatmap_level1", "heatmap_level2", "heatmap",
                        "heatmap_aux1", "heatmap_aux2", "heatmap_aux3"}  # fmt: skip
    decoded, penultimate = [], []
    for cams in head.decoders:
        penultimate.append(cams[0](x))
        decoded.append(cams[1](penultimate[-1]))
    fused = torch.cumsum(torch.stack(decoded), 0)
    for level, name in enumerate(["heatmap_level1", "heatmap_level2", "heatmap"]):
        torch.testing.assert_close(out[name], head.final_layers[level](fused[level]))
    for d in range(3):
        aux = F.interpolate(head.aux_layers[d](penultimate[d]), size=(16, 12), mode="bilinear")
        torch.testing.assert_close(out[f"heatmap_aux{d + 1}"], aux)


def test_pcr_resnet_parameter_counts_by_hand():
    """The report's settings: ResNet-50 with three 256-channel CAMs, ResNet-152 with 128/96/64;
    the encoder is torchvision's ResNet without its classifier (counted from torchvision)."""
    for depth, channels in [(50, (256, 256, 256)), (152, (128, 96, 64))]:
        model = PCRResNet(depth=depth, channels=channels)
        assert _count(model) == pcr_resnet_parameters(depth, channels), depth
    # Pinned (the report gives no counts): PCR-R50 33.32M (SimpleBaseline-R50: 34.0M).
    assert _count(PCRResNet(depth=50)) == 33_320_930


def test_pcr_hrnet_parameter_count_by_hand_and_hrnet_names():
    hrnet = PoseHighResolutionNet(width=32)
    model = PCRHRNet(width=32, channels=(48,))
    assert _count(model) == pcr_hrnet_parameters(32, (48,))
    # An HRNet checkpoint's trunk loads into PCR-HRNet by name: only final_layer is not used.
    missing, unexpected = model.load_state_dict(hrnet.state_dict(), strict=False)
    assert all(m.startswith("head.") for m in missing) and missing
    assert unexpected == ["final_layer.weight", "final_layer.bias"]


def test_pcr_trains_through_the_meta_architecture_and_predicts():
    """A small PCR-HRNet (K = 2 CAMs, L = 2) on the COCO sample: every level and auxiliary output
    is a finite loss, the loss falls over a few steps, and TopDownPredictor decodes the last
    level."""
    cfg = sample_cfg("MODEL.TOPDOWN.POSE_NET", "PCRHRNet", "MODEL.PCR.CHANNELS", "(24, 16)",
                     "MODEL.PCR.NUM_DECODERS", "2", "MODEL.HRNET.INIT", "kaiming",
                     "MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)",
                     "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)")  # fmt: skip
    predictor = trained_predictor(cfg, {"loss_heatmap", "loss_heatmap_level1",
                                        "loss_heatmap_aux1", "loss_heatmap_aux2"})  # fmt: skip
    image = np.zeros((120, 90, 3), np.uint8)
    out = predictor(image, boxes=[[10, 10, 70, 110]])["instances"]
    assert out.pred_keypoints.shape == (1, 17, 3) and torch.isfinite(out.pred_keypoints).all()


def test_an_imagenet_resnet_checkpoint_loads_into_the_pcr_encoder(tmp_path):
    """torchvision's names, as released (classifier included), through TopDownCheckpointer: the
    encoder takes every backbone tensor, the PCR head keeps its initialisation."""
    from pose_topdown.engine import TopDownCheckpointer

    cfg = sample_cfg("MODEL.TOPDOWN.POSE_NET", "PCRResNet", "MODEL.POSE_RESNET.DEPTH", "18",
                     "MODEL.PCR.CHANNELS", "(32, 32, 32)")  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg)
    head_before = {k: v.clone() for k, v in model.pose_net.head.state_dict().items()}
    imagenet = torchvision.models.resnet18().state_dict()
    torch.save(imagenet, tmp_path / "resnet18_imagenet.pth")
    TopDownCheckpointer(model).load(str(tmp_path / "resnet18_imagenet.pth"))
    own = model.pose_net.state_dict()
    for k, v in imagenet.items():
        if not k.startswith("fc."):
            assert torch.equal(own[k], v), k
    for k, v in model.pose_net.head.state_dict().items():
        assert torch.equal(v, head_before[k]), k


def test_aux_weight_scales_the_auxiliary_losses_only():
    """MODEL.PCR.AUX_WEIGHT multiplies each loss_heatmap_aux<d> (the same weights and crops), and
    no other loss; at weight 1 an auxiliary loss is the plain heatmap loss of its output."""
    from detectron2.data import DatasetCatalog

    from pose_topdown.data import TopDownTrainMapper, person_dicts

    opts = ["MODEL.TOPDOWN.POSE_NET", "PCRHRNet", "MODEL.PCR.CHANNELS", "(24, 16)",
            "MODEL.PCR.NUM_DECODERS", "2", "MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)",
            "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)", "MODEL.HRNET.INIT", "kaiming"]  # fmt: skip
    np.random.seed(0)
    mapper = TopDownTrainMapper(sample_cfg(*opts), is_train=True)
    batch = [mapper(p) for p in person_dicts(DatasetCatalog.get(SAMPLE))[:3]]
    losses = {}
    for weight in ("1.0", "0.25"):
        torch.manual_seed(0)
        model = build_model(sample_cfg(*opts, "MODEL.PCR.AUX_WEIGHT", weight))
        with torch.no_grad():
            losses[weight] = model(batch)
    assert {n for n in losses["1.0"] if "_aux" in n} == {"loss_heatmap_aux1", "loss_heatmap_aux2"}
    for name, value in losses["1.0"].items():
        ratio = 0.25 if "_aux" in name else 1.0
        torch.testing.assert_close(losses["0.25"][name], ratio * value, msg=name)
        assert value > 0, name


def _recipe(name):
    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(CONFIGS / name))
    return cfg


def _pcr(name):
    p = _recipe(name).MODEL.PCR
    return tuple(p.CHANNELS), p.NUM_DECODERS, (p.SE, p.HDC, p.AUX), p.SE_BN


def _after_each_conv(cam):
    """Conv name -> the layers following it in its block, up to the next conv."""
    following = {}
    for block_name, block in cam.named_modules():
        if not isinstance(block, torch.nn.Sequential):
            continue
        current = None
        for child_name, child in block.named_children():
            if isinstance(child, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                current = f"{block_name}.{child_name}"
                following[current] = ()
            elif current is not None:
                following[current] += (type(child).__name__,)
    return following


def _rectified_output(up):
    cam = randomize_batch_norms(CAM(32, 32, upsample=up)).eval()
    with torch.no_grad():
        y = cam(torch.randn(2, 32, 6, 4))
    return bool(y.min() >= 0 and (y == 0).any())


UP, SAME = CAM(64, 32, upsample=True), CAM(32, 32, upsample=False)
HEAD = PCRHead(64, (32, 24, 16), (True, True, True), num_decoders=2, num_keypoints=17)
TABLE_1 = ("COCO/pcr_R152_384x288.yaml", "COCO/pcr_hrnet_w48_384x288.yaml")
TABLE_3 = ("COCO/pcr_R50_256x192.yaml", "COCO/pcr_hrnet_w32_256x192.yaml")
SYNTHETIC = "Synthetic/pcr_hrnet_w18_small_synth_basic"

# (setting, source in report 002, the report's value, the code's or the recipes' value); eq. (1)
# and eq. (2) themselves: test_cam_is_equation_1 and test_progressive_fusion_... above. Where
# the report leaves a value open (kernel sizes of the deconvolution and of the stride-1 conv, the
# upsampling method, L in Table 1), the choice is in pcr.py's docstring and not in this table.
PCR_SETTINGS = [
    ("CAM branches", "sec. 2.1: residual, SE, HDC branches", {"residual", "se", "dilated", "mix"},
     lambda: {n for n, _ in UP.named_children()}),
    ("HDC dilations", "sec. 2.1: dilated rates 1, 2, 3, 4", [1, 2, 3, 4],
     lambda: [b[0].dilation[0] for b in UP.dilated]),
    ("HDC kernels", "sec. 2.1: four 3x3 convs of C_k/4 kernels", [(8, (3, 3))] * 4,
     lambda: [(b[0].out_channels, b[0].kernel_size) for b in UP.dilated]),
    ("HDC keeps the size", "sec. 2.1: f_HDC of size H_k x W_k", [(1, 2, 3, 4)] * 2,
     lambda: [tuple(b[0].padding[0] for b in c.dilated) for c in (UP, SAME)]),
    ("HDC fusion, upsampling CAM", "sec. 2.1: a deconvolutional layer of stride 2",
     ("ConvTranspose2d", (2, 2), 32), lambda: (type(UP.mix[0]).__name__, UP.mix[0].stride,
                                               UP.mix[0].out_channels)),
    ("HDC fusion, other CAMs", "sec. 2.1: a convolutional layer of stride 1",
     ("Conv2d", (1, 1)), lambda: (type(SAME.mix[0]).__name__, SAME.mix[0].stride)),
    ("SE layers", "sec. 2.1: global pooling, 1x1 bottleneck, 1x1 conv, sigmoid",
     ["AdaptiveAvgPool2d", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "Sigmoid"],
     lambda: [type(m).__name__ for m in UP.se]),
    ("SE reduction", "sec. 2.1: 1 x 1 x C_k/4, then 1 x 1 x C_k", [(32, 8), (8, 32)],
     lambda: [(UP.se[i].in_channels, UP.se[i].out_channels) for i in (1, 4)]),
    ("BN after every conv and deconv", "sec. 2.1, after eq. (1)", set(),
     lambda: {n for c in (UP, SAME) for n, after in _after_each_conv(c).items()
              if after[:1] != ("BatchNorm2d",)}),
    ("ReLU placements", "sec. 2.1, after eq. (1): first SE conv, all HDC convs",
     {"dilated.0.0", "dilated.1.0", "dilated.2.0", "dilated.3.0", "mix.0", "se.1"},
     lambda: {n for n, after in _after_each_conv(UP).items() if "ReLU" in after}),
    ("output ReLU", "sec. 2.1: ReLU after the output of CAM", [True, True],
     lambda: [_rectified_output(up) for up in (True, False)]),
    ("residual 1x1 conv", "sec. 2.1: a 1x1 convolutional layer outputs f_RES",
     [((1, 1), 32), ((1, 1), 32)],
     lambda: [(c.residual[0].kernel_size, c.residual[0].out_channels) for c in (UP, SAME)]),
    ("residual up-sampling", "sec. 2.1: up-sampled 2 times; none with stride 1", [True, False],
     lambda: [UP.upsample, SAME.upsample]),
    ("prediction layer", "sec. 2.2: a 1x1 convolutional layer per level", [(1, 1)] * 2,
     lambda: [m.kernel_size for m in HEAD.final_layers]),
    ("AD after the penultimate CAM", "Table 3 caption", [24, 24],
     lambda: [m.in_channels for m in HEAD.aux_layers]),
    ("K, L of PCR(R50)", "sec. 3.3: R50, K=3, L=1", (3, 1),
     lambda: (len(_pcr(TABLE_3[0])[0]), _pcr(TABLE_3[0])[1])),
    ("K, L of PCR(HRNet-W32)", "sec. 3.3: HRNet-32, K=1, L=1", (1, 1),
     lambda: (len(_pcr(TABLE_3[1])[0]), _pcr(TABLE_3[1])[1])),
    ("C_k, ResNet-50", "sec. 3.1: 256 for ResNet-50", (256, 256, 256),
     lambda: _pcr(TABLE_3[0])[0]),
    ("C_k, ResNet-152", "sec. 3.1: 128, 96, 64 for ResNet-152", [(128, 96, 64)] * 2,
     lambda: [_pcr(r)[0] for r in ("COCO/pcr_R152_256x192.yaml", TABLE_1[0])]),
    ("C_k, HRNet", "sec. 3.1: 48 for HRNet", [(48,)] * 3,
     lambda: [_pcr(r)[0] for r in (TABLE_3[1], TABLE_1[1], "COCO/pcr_hrnet_w32_256x192.yaml")]),
    ("Table 1 backbones", "Table 1: PCR (R152), PCR* (HRNet-48)", (152, 48),
     lambda: (_recipe(TABLE_1[0]).MODEL.POSE_RESNET.DEPTH, _recipe(TABLE_1[1]).MODEL.HRNET.WIDTH)),
    ("Table 1 input size", "sec. 3.2: the input size is 384 x 288", [(288, 384)] * 2,
     lambda: [tuple(_recipe(r).MODEL.TOPDOWN.INPUT_SIZE) for r in TABLE_1]),
    ("Table 3 input size", "sec. 3.3: the input size was 256 x 192", [(192, 256)] * 2,
     lambda: [tuple(_recipe(r).MODEL.TOPDOWN.INPUT_SIZE) for r in TABLE_3]),
    ("COCO recipes: SE, HDC, AD, BN in SE", "Table 3's last rows; sec. 2.1",
     [((True, True, True), True)] * 4,
     lambda: [_pcr(r)[2:] for r in (*TABLE_1, *TABLE_3)]),
    ("Table 3 rows (CPU recipes)", "Table 3: SE only, HDC only, AD only, all",
     [(True, False, False), (False, True, False), (False, False, True), (True, True, True)],
     lambda: [_pcr(f"{SYNTHETIC}{row}.yaml")[2] for row in ("_se_only", "_hdc_only", "_ad_only",
                                                            "")]),
]  # fmt: skip


@pytest.mark.parametrize("setting", PCR_SETTINGS, ids=[s[0] for s in PCR_SETTINGS])
def test_pcr_setting_matches_the_report(setting):
    name, source, report, ours = setting
    assert ours() == report, f"{name}: ours {ours()!r}, the report {report!r} ({source})"
