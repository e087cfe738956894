"""Top-down pose networks: official HRNet names and shapes, published parameter counts, outputs."""

import pytest
import torch

from pose_topdown.modeling import (
    PoseHighResolutionNet,
    PoseResNet,
    StackedHourglass,
    load_official_hrnet_state_dict,
)


def _count(m):
    return sum(p.numel() for p in m.parameters())


def official_hrnet_shapes(
    width=32, num_keypoints=17, stem_blocks=4, modules=(1, 4, 3), blocks=(4, 4, 4)
):
    """The parameter and buffer names/shapes of the official pose_hrnet, enumerated from its
    description (independently of topdown's modules): what a released checkpoint holds."""
    out = {}

    def conv(name, cout, cin, k, bias=False):
        out[name + ".weight"] = (cout, cin, k, k)
        if bias:
            out[name + ".bias"] = (cout,)

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.{p}"] = (c,)
        out[f"{name}.num_batches_tracked"] = ()

    conv("conv1", 64, 3, 3), bn("bn1", 64), conv("conv2", 64, 64, 3), bn("bn2", 64)
    cin = 64
    for b in range(stem_blocks):
        p = f"layer1.{b}"
        conv(p + ".conv1", 64, cin, 1), bn(p + ".bn1", 64)
        conv(p + ".conv2", 64, 64, 3), bn(p + ".bn2", 64)
        conv(p + ".conv3", 256, 64, 1), bn(p + ".bn3", 256)
        if b == 0:
            conv(p + ".downsample.0", 256, 64, 1), bn(p + ".downsample.1", 256)
        cin = 256
    pre = [256]
    for s in range(3):
        ch = [width * 2**i for i in range(s + 2)]
        for i, c in enumerate(ch):
            if i < len(pre) and pre[i] != c:
                conv(f"transition{s + 1}.{i}.0", c, pre[i], 3), bn(f"transition{s + 1}.{i}.1", c)
            elif i >= len(pre):
                (
                    conv(f"transition{s + 1}.{i}.0.0", c, pre[-1], 3),
                    bn(f"transition{s + 1}.{i}.0.1", c),
                )
        for m in range(modules[s]):
            p = f"stage{s + 2}.{m}"
            for br, c in enumerate(ch):
                for b in range(blocks[s]):
                    q = f"{p}.branches.{br}.{b}"
                    (
                        conv(q + ".conv1", c, c, 3),
                        bn(q + ".bn1", c),
                        conv(q + ".conv2", c, c, 3),
                        bn(q + ".bn2", c),
                    )
            outputs = 1 if (s == 2 and m == modules[s] - 1) else len(ch)
            for i in range(outputs):
                for j in range(len(ch)):
                    q = f"{p}.fuse_layers.{i}.{j}"
                    if j > i:
                        conv(q + ".0", ch[i], ch[j], 1), bn(q + ".1", ch[i])
                    for k in range(i - j):
                        last = k == i - j - 1
                        (
                            conv(f"{q}.{k}.0", ch[i] if last else ch[j], ch[j], 3),
                            bn(f"{q}.{k}.1", ch[i] if last else ch[j]),
                        )
        pre = ch
    conv("final_layer", num_keypoints, width, 1, bias=True)
    return out


@pytest.mark.parametrize("width,published", [(32, 28.5e6), (48, 63.6e6)])
def test_hrnet_official_names_shapes_and_parameter_count(width, published):
    model = PoseHighResolutionNet(width=width)
    expected = official_hrnet_shapes(width)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
    assert abs(_count(model) - published) < 0.05e6, _count(model)
    # A checkpoint with those names loads strictly, with or without the BN step counters (older
    # PyTorch saved none) and with DataParallel's prefix or a wrapper.
    torch.manual_seed(0)
    sd = {k: torch.randn(s) if s else torch.tensor(7) for k, s in expected.items()}
    fresh = PoseHighResolutionNet(width=width)
    assert (
        load_official_hrnet_state_dict(
            fresh, {"state_dict": {"module." + k: v for k, v in sd.items()}}
        )
        == []
    )
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k].to(v.dtype)), k
    no_counters = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    fresh.load_state_dict(no_counters, strict=True)


def test_hrnet_output_shape_and_strict_errors():
    model = PoseHighResolutionNet(width=32).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 256, 192))
    assert list(out) == ["heatmap"] and out["heatmap"].shape == (2, 17, 64, 48)
    sd = model.state_dict()
    sd.pop("final_layer.bias")
    with pytest.raises(RuntimeError, match="final_layer.bias"):
        load_official_hrnet_state_dict(PoseHighResolutionNet(width=32), sd)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_official_hrnet_state_dict(
            PoseHighResolutionNet(width=48), PoseHighResolutionNet(width=32).state_dict()
        )


def test_hrnet_loads_an_imagenet_classification_checkpoint():
    """An ImageNet hrnet_w32 has the same backbone names plus a classification head and a
    multi-scale last module; the backbone loads, the rest is dropped and named."""
    torch.manual_seed(1)
    model = PoseHighResolutionNet(
        width=18, stem_blocks=2, num_modules=(1, 3, 2), num_blocks=(2, 2, 2)
    )
    sd = {
        k: torch.randn_like(v.float()).to(v.dtype)
        for k, v in model.state_dict().items()
        if not k.startswith("final_layer")
    }
    extra = {
        "stage4.1.fuse_layers.1.0.0.0.weight": torch.randn(36, 18, 3, 3),
        "incre_modules.0.0.conv1.weight": torch.randn(32, 18, 1, 1),
        "downsamp_modules.0.0.weight": torch.randn(256, 128, 3, 3),
        "final_layer.0.weight": torch.randn(2048, 1024, 1, 1),
        "classifier.weight": torch.randn(1000, 2048),
    }
    fresh = PoseHighResolutionNet(
        width=18, stem_blocks=2, num_modules=(1, 3, 2), num_blocks=(2, 2, 2)
    )
    head = fresh.final_layer.weight.clone()
    dropped = load_official_hrnet_state_dict(fresh, {**sd, **extra})
    assert dropped == sorted(extra)
    for k, v in sd.items():
        assert torch.equal(fresh.state_dict()[k], v), k
    assert torch.equal(fresh.final_layer.weight, head)
    sd.pop("layer1.0.conv1.weight")
    with pytest.raises(KeyError, match="layer1.0.conv1.weight"):
        load_official_hrnet_state_dict(fresh, {**sd, **extra})


def test_hrnet_w18_small_is_a_cpu_sized_model():
    model = PoseHighResolutionNet(
        width=18, stem_blocks=2, num_modules=(1, 3, 2), num_blocks=(2, 2, 2)
    )
    assert 3e6 < _count(model) < 4.5e6
    with pytest.raises(ValueError, match="three entries"):
        PoseHighResolutionNet(num_modules=(1, 4))


@pytest.mark.parametrize("depth,published", [(50, 34.0e6), (101, 53.0e6), (152, 68.6e6)])
def test_simple_baseline_parameter_counts(depth, published):
    model = PoseResNet(depth=depth)
    assert abs(_count(model) - published) < 0.05e6, _count(model)
    names = set(model.state_dict())
    # The official PoseResNet's names: torchvision's backbone names, deconv_layers, final_layer.
    for k in (
        "conv1.weight",
        "layer1.0.downsample.0.weight",
        "layer4.2.bn3.running_var",
        "deconv_layers.0.weight",
        "deconv_layers.1.running_mean",
        "deconv_layers.3.weight",
        "deconv_layers.7.weight",
        "final_layer.bias",
    ):
        assert k in names, k
    assert not any(k.startswith("fc.") for k in names)


def test_simple_baseline_and_hourglass_outputs():
    with torch.no_grad():
        out = PoseResNet(depth=50).eval()(torch.zeros(1, 3, 256, 192))
        assert {k: o.shape for k, o in out.items()} == {"heatmap": (1, 17, 64, 48)}
        hg = StackedHourglass(num_stacks=2, num_features=64).eval()
        outs = hg(torch.zeros(1, 3, 256, 256))
    assert {k: o.shape for k, o in outs.items()} == {
        "heatmap_stack0": (1, 17, 64, 64),
        "heatmap": (1, 17, 64, 64),
    }
    assert hg.supervised_outputs() == {"heatmap_stack0": 1.0, "heatmap": 1.0}
    # The published 8-stack hourglass: 25.1M parameters in the HRNet paper's table (Newell et al.
    # give none); this layout counts 25.44M (the table rounds or leaves out the stem's biases).
    assert abs(_count(StackedHourglass(num_stacks=8)) - 25.1e6) < 0.35e6
    with pytest.raises(ValueError, match="depth must be one of"):
        PoseResNet(depth=42)


@pytest.mark.parametrize("depth", [18, 34])
def test_simple_baseline_basic_block_depths(depth):
    """The official resnet_spec's 18 and 34: torchvision's backbone without its classifier, and
    deconvolutions fed by 512 channels (BasicBlock has no expansion)."""
    import torchvision

    model = PoseResNet(depth=depth)
    ref = getattr(torchvision.models, f"resnet{depth}")()
    backbone = sum(p.numel() for n, p in model.named_parameters()
                   if not n.startswith(("deconv_layers", "final_layer")))
    assert backbone == _count(ref) - _count(ref.fc)
    assert model.deconv_layers[0].in_channels == 512
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, 96, 64))
    assert out["heatmap"].shape == (1, 17, 24, 16)


def test_hrnet_every_branch_reaches_the_heatmaps():
    """Each branch feeds the final fuse (the official last module fuses all four into the
    highest resolution): every parameter gets a gradient from the heatmaps, and perturbing the
    input of any of the last module's branches changes them."""
    torch.manual_seed(0)
    model = PoseHighResolutionNet(
        width=8, num_keypoints=3, stem_blocks=1, num_modules=(1, 1, 1), num_blocks=(1, 1, 1)
    ).eval()
    torch.nn.init.normal_(model.final_layer.weight)  # heatmaps of order 1, not 1e-3
    x = torch.randn(1, 3, 128, 96)
    model(x)["heatmap"].square().sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad, f"parameters the heatmaps do not depend on: {no_grad}"
    last = model.stage4[-1]
    assert len(last.fuse_layers) == 1 and last.num_branches == 4
    seen = {}
    hook = last.register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0]))
    with torch.no_grad():
        base = model(x)["heatmap"]
    hook.remove()
    for j in range(4):

        def shift(m, inp, j=j):
            xs = list(inp[0])
            xs[j] = xs[j] + 1.0
            return (xs,)

        hook = last.register_forward_pre_hook(shift)
        with torch.no_grad():
            moved = model(x)["heatmap"]
        hook.remove()
        change = (moved - base).abs().max() / base.abs().max()
        assert change > 1e-3, f"branch {j} does not reach the heatmaps ({change:.2g})"
