"""PCR (progressive context refinement): the CAM's two forms and its residual-only reduction,
progressive fusion and auxiliary supervision as specified, parameter counts against a hand
derivation, and a PCR network through the meta-architecture and the predictor."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from detectron2.modeling import build_model

from topdown.modeling import CAM, PCRHead, PCRHRNet, PCRResNet, PoseHighResolutionNet
from topdown_testing import sample_cfg, trained_predictor


def _count(m):
    return sum(p.numel() for p in m.parameters())


def cam_parameters(cin, c, up, se=True, hdc=True):
    """By hand from the specification: four dilated 3x3 convs cin -> c/4 (no bias) + BN; the
    mixing 4x4 deconvolution (up) or 3x3 conv, c -> c (no bias) + BN; SE 1x1 convs c -> c/4 -> c
    with biases; a residual 1x1 conv cin -> c (no bias) + BN when upsampling or cin != c."""
    n = 0
    if hdc:
        n += 4 * (cin * (c // 4) * 9 + 2 * (c // 4))
        n += c * c * (16 if up else 9) + 2 * c
    if se:
        n += c * (c // 4) + c // 4 + (c // 4) * c + c
    if up or cin != c:
        n += cin * c + 2 * c
    return n


def pcr_resnet_parameters(depth, channels, k=17):
    """PCR-ResNet by hand: torchvision's ResNet without its classifier (counted from torchvision),
    the upsampling CAMs, the heatmap conv and the auxiliary conv on the penultimate CAM."""
    ref = getattr(torchvision.models, f"resnet{depth}")()
    trunk = _count(ref) - _count(ref.fc)
    cams = sum(cam_parameters(cin, c, True) for cin, c in zip((2048, *channels[:-1]), channels))
    return trunk + cams + (channels[-1] * k + k) + (channels[-2] * k + k)


def pcr_hrnet_parameters(width, channels, k=17):
    """PCR-HRNet by hand with one CAM: HRNet without its heatmap conv (counted from our HRNet,
    whose count test_pose_nets pins to the published figure), a non-upsampling CAM on the
    W-channel branch, the heatmap conv and the auxiliary conv on the CAM's input."""
    hrnet = PoseHighResolutionNet(width=width)
    (c,) = channels
    trunk = _count(hrnet) - _count(hrnet.final_layer)
    return trunk + cam_parameters(width, c, False) + (c * k + k) + (width * k + k)


@pytest.mark.parametrize("up", [True, False])
def test_cam_shapes_and_parameters(up):
    cam = CAM(64, 48, upsample=up)
    y = cam(torch.randn(2, 64, 12, 8))
    assert y.shape == ((2, 48, 24, 16) if up else (2, 48, 12, 8))
    assert _count(cam) == cam_parameters(64, 48, up)
    same = CAM(48, 48, upsample=False)
    assert isinstance(same.residual, torch.nn.Identity)
    assert _count(same) == cam_parameters(48, 48, False)


@pytest.mark.parametrize("up", [True, False])
def test_cam_without_se_and_hdc_is_its_residual_branch(up):
    torch.manual_seed(0)
    cam = CAM(32, 48, upsample=up, se=False, hdc=False).eval()
    x = torch.randn(2, 32, 6, 4)
    conv, bn = cam.residual
    ref = F.interpolate(x, scale_factor=2, mode="nearest") if up else x
    ref = F.batch_norm(
        F.conv2d(ref, conv.weight), bn.running_mean, bn.running_var, bn.weight, bn.bias
    )
    torch.testing.assert_close(cam(x), ref)
    assert _count(cam) == cam_parameters(32, 48, up, se=False, hdc=False)
    with pytest.raises(ValueError, match="needs MODEL.PCR.HDC"):
        CAM(32, 48, upsample=up, se=True, hdc=False)


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
    # The published counts these derive: PCR-R50 33.32M (SimpleBaseline-R50: 34.0M).
    assert _count(PCRResNet(depth=50)) == 33_319_970


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
    from topdown.engine import TopDownCheckpointer

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
