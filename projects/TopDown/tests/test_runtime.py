"""Inference backends (pose_topdown/runtime.py): the folded + channels-last network and the ONNX
Runtime export give the eager forward's prediction within 1e-4 for every registered top-down
network, on random weights with non-trivial BatchNorm statistics; the bf16 network within its own
tolerance, and a network too ill-conditioned for bf16 is refused; "auto" never picks bf16 (fp32
on every machine); an exported file runs only with the weights it came from; the built network
follows the weights as they change; bad settings are refused."""

import copy
import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model

from pose_topdown import get_topdown_cfg, runtime
from pose_topdown.data import TopDownTestMapper
from pose_topdown.modeling import build_pose_net
from pose_topdown.modeling.build import POSE_NET_REGISTRY
from pose_topdown.runtime import (
    _BF16,
    BF16_TOLERANCE,
    TOLERANCE,
    InferenceNet,
    OnnxPoseNet,
    OutputMismatch,
    _Fused,
    check_outputs,
    export_onnx,
    resolve_backend,
)
from topdown_testing import SAMPLE, SMALL, member, sample_cfg

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL_RESNET = ["MODEL.POSE_RESNET.DEPTH", "18", *SMALL]

# One small recipe per registered network (the ensemble is built from member files below).
NETS = {
    "PoseHighResolutionNet": ("Synthetic/hrnet_w18_small_synth_basic.yaml", []),
    "PoseResNet": ("Synthetic/simple_baseline_R50_synth.yaml", SMALL_RESNET),
    "StackedHourglass": ("Synthetic/hourglass_2stack_synth.yaml", []),
    "PCRHRNet": ("Synthetic/pcr_hrnet_w18_small_synth_basic.yaml", []),
    "PCRResNet": ("COCO/pcr_R50_256x192.yaml", SMALL_RESNET),
    "HintPoseHRNet": ("Synthetic/hintpose_w18_small_synth_basic.yaml", []),
    "PoseFixHRNet": ("Synthetic/posefix_hrnet_w18_small_synth_basic.yaml", []),
}


def randomise(net, seed=0):
    """Weights that give heatmaps well above zero and BatchNorm statistics far from (0, 1), so a
    wrong folding shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                # He init (the official N(0, 0.001) makes heatmaps of about 1e-3)
                fan_in = (
                    m.weight[0].numel()
                    if isinstance(m, torch.nn.Conv2d)
                    else (m.weight.shape[0] * m.weight[0, 0].numel())
                )
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return net.eval()


def build_net(name):
    recipe, opts = NETS[name]
    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(CONFIGS / recipe))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    torch.manual_seed(0)
    return randomise(build_pose_net(cfg)), tuple(cfg.MODEL.TOPDOWN.INPUT_SIZE)


def test_every_registered_network_is_covered():
    ours = {n for n, obj in POSE_NET_REGISTRY if obj.__module__.startswith("pose_topdown.")}
    assert ours == set(NETS) | {"HeatmapEnsemble"}


@pytest.mark.parametrize("name", sorted(NETS))
def test_fused_and_onnx_equal_the_eager_forward(name, tmp_path):
    net, size = build_net(name)
    fused = _Fused(net, size)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.module.modules())
    assert n_bn > 0 and left < n_bn / 2, f"{left} of {n_bn} BatchNorms left unfolded"
    assert check_outputs(fused, net, size, "fused") <= TOLERANCE
    path = tmp_path / f"{name}.onnx"
    export_onnx(net, str(path), size)
    onnx_net = OnnxPoseNet(str(path))
    assert onnx_net.metadata["multitask_pose.pose_net"] == name
    assert check_outputs(onnx_net, net, size, "onnx") <= TOLERANCE
    # Another batch size than the export's example (the batch axis is dynamic).
    images = torch.randn(5, 3, size[1], size[0])
    cues = torch.rand(5, net.cue_channels, size[1], size[0]) if net.cue_channels else None
    with torch.inference_mode():
        ref = net(images, cues)[net.prediction]
    scale = max(1.0, float(ref.abs().max()))
    assert float(ref.abs().max()) > 1e-2  # heatmaps well above zero: the check means something
    for fast in (fused, onnx_net):
        got = fast(images, cues)
        assert float((got - ref).abs().max()) / scale <= TOLERANCE


def test_the_ensemble_exports_too(tmp_path):
    a_cfg, a_w, _ = member(tmp_path, "a", 0)
    b_cfg, b_w, _ = member(tmp_path, "b", 1, "MODEL.TOPDOWN.INPUT_SIZE", "(32, 64)",
                           "MODEL.TOPDOWN.HEATMAP_SIZE", "(8, 16)")  # fmt: skip
    cfg = sample_cfg(*SMALL, "MODEL.TOPDOWN.POSE_NET", "HeatmapEnsemble",
                     "MODEL.ENSEMBLE.CONFIGS", str([a_cfg, b_cfg]),
                     "MODEL.ENSEMBLE.WEIGHTS", str([a_w, b_w]))  # fmt: skip
    net = randomise(build_model(cfg).pose_net)
    size = tuple(cfg.MODEL.TOPDOWN.INPUT_SIZE)
    assert check_outputs(_Fused(net, size), net, size, "fused") <= TOLERANCE
    export_onnx(net, str(tmp_path / "ens.onnx"), size)
    assert check_outputs(OnnxPoseNet(str(tmp_path / "ens.onnx")), net, size, "onnx") <= TOLERANCE


def _model(*opts):
    torch.manual_seed(0)
    model = build_model(sample_cfg(*SMALL, *opts))
    randomise(model.pose_net)
    return model.eval()


def _poses(model, x):
    with torch.no_grad():
        return model([x])[0]["instances"]


def _same_poses(got, want):
    """Equal but for rounding: random networks make flat heatmaps, whose argmax can move to a
    near-equal cell when the last digits change, so a few keypoints may jump."""
    assert len(got) == len(want) > 0
    d = (got.pred_keypoints[..., :2] - want.pred_keypoints[..., :2]).norm(dim=-1)
    assert float((d < 0.01).float().mean()) >= 0.95, d
    torch.testing.assert_close(got.pred_keypoints[..., 2], want.pred_keypoints[..., 2],
                               atol=1e-4, rtol=1e-4)  # fmt: skip


@pytest.mark.parametrize("backend", ["fused", "onnxruntime"])
def test_the_pipeline_runs_the_backend_and_follows_weight_changes(backend):
    x = TopDownTestMapper(sample_cfg(*SMALL), SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    eager = _model("TEST.TOPDOWN.BACKEND", "eager")
    fast = _model("TEST.TOPDOWN.BACKEND", backend)
    crops = torch.randn(3, 3, 96, 64)

    def same_heatmaps():
        want = eager._outputs(crops, None, inference=True)["heatmap"]
        got = fast._outputs(crops, None, inference=True)["heatmap"]
        assert float((got - want).abs().max()) <= TOLERANCE * max(1, float(want.abs().max()))
        return want

    before = same_heatmaps()
    assert fast.runner.resolved == backend and eager.runner.resolved == "eager"
    _same_poses(_poses(fast, x), _poses(eager, x))
    # A training step (in-place optimizer update) must reach the built network.
    for m in (eager, fast):
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        for p in m.parameters():
            p.grad = torch.full_like(p, 0.01)
        opt.step()
        m.eval()
    after = same_heatmaps()
    assert float((after - before).abs().max()) > 1e-2
    # So must load_state_dict.
    with torch.no_grad():
        for p in eager.parameters():
            p.mul_(0.9)
    fast.load_state_dict(eager.state_dict())
    same_heatmaps()


def test_an_onnx_file_runs_only_with_its_weights(tmp_path):
    x = TopDownTestMapper(sample_cfg(*SMALL), SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    eager = _model("TEST.TOPDOWN.BACKEND", "eager")
    path = tmp_path / "model.onnx"
    export_onnx(eager.pose_net, str(path), (64, 96))
    model = _model("TEST.TOPDOWN.BACKEND", "onnxruntime", "TEST.TOPDOWN.ONNX_FILE", str(path))
    _same_poses(_poses(model, x), _poses(eager, x))
    with torch.no_grad():
        next(model.pose_net.parameters()).add_(0.1)
    with pytest.raises(ValueError, match="was not exported from this model.*export_model.py"):
        _poses(model, x)
    other = _model(
        "TEST.TOPDOWN.BACKEND",
        "onnxruntime",
        "TEST.TOPDOWN.ONNX_FILE",
        str(path),
        "MODEL.TOPDOWN.INPUT_SIZE",
        "(32, 64)",
        "MODEL.TOPDOWN.HEATMAP_SIZE",
        "(8, 16)",
    )
    with pytest.raises(ValueError, match="was not exported from this model"):
        _poses(other, x)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="BACKEND must be one of"):
        _model("TEST.TOPDOWN.BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="ONNX_FILE is set but.*'fused'"):
        _model("TEST.TOPDOWN.BACKEND", "fused", "TEST.TOPDOWN.ONNX_FILE", "x.onnx")
    with pytest.raises(ValueError, match="CPU provider.*cuda"):
        resolve_backend("onnxruntime", "cuda")
    assert resolve_backend("auto", "cuda") == "fused"
    assert resolve_backend("auto", "cpu") == "onnxruntime"  # the set-up installs it


def test_export_tool_writes_a_checked_file_that_the_pipeline_runs(tmp_path, capsys):
    from pose_topdown import export as export_model

    eager = _model("TEST.TOPDOWN.BACKEND", "eager")
    torch.save({"model": eager.state_dict()}, tmp_path / "model.pth")
    cfg = sample_cfg(*SMALL)
    (tmp_path / "cfg.yaml").write_text(cfg.dump())
    out = tmp_path / "out" / "model.onnx"
    args = ["--config-file", str(tmp_path / "cfg.yaml"), "--output", str(out), "--batch", "2"]
    assert export_model.main([*args, "MODEL.WEIGHTS", str(tmp_path / "model.pth")]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("export_model: PoseHighResolutionNet 64x96 ->") and "x) on" in summary
    x = TopDownTestMapper(cfg, SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    model = _model("TEST.TOPDOWN.BACKEND", "onnxruntime", "TEST.TOPDOWN.ONNX_FILE", str(out))
    model.load_state_dict(eager.state_dict())
    _same_poses(_poses(model, x), _poses(eager, x))
    # Clear refusals, and nothing written.
    bad = tmp_path / "bad.onnx"
    assert (
        export_model.main(["--config-file", str(tmp_path / "cfg.yaml"), "--output", str(bad)]) == 2
    )
    assert "MODEL.WEIGHTS is empty" in capsys.readouterr().err
    weights = ["MODEL.WEIGHTS", str(tmp_path / "model.pth")]
    for name, message in (("bad.ts", "top-down networks export to ONNX"),
                          ("bad.bin", "give a file ending in .onnx")):  # fmt: skip
        argv = ["--config-file", str(tmp_path / "cfg.yaml"), "--output", str(tmp_path / name)]
        assert export_model.main([*argv, *weights]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / name).exists()
    assert not bad.exists()


def test_stage_times_cover_the_inference_stages():
    from pose_topdown.runtime import StageTimes

    x = TopDownTestMapper(sample_cfg(*SMALL), SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    model = _model("TEST.TOPDOWN.BACKEND", "eager")
    _poses(model, x)  # nothing is recorded without an active StageTimes
    with StageTimes() as times:
        _poses(model, x)
        with pytest.raises(RuntimeError, match="does not nest"):
            with StageTimes():
                pass
    stages = {"crop", "pose network", "flip", "decode", "rescore + NMS"}
    assert set(times.seconds) == stages and all(v > 0 for v in times.seconds.values())
    with StageTimes() as again:  # usable again after the block
        _poses(model, x)
    assert set(again.seconds) == stages


# --- bf16 --------------------------------------------------------------------------------------


def test_bf16_is_within_its_tolerance_of_the_eager_forward():
    net, size = build_net("PoseHighResolutionNet")
    bf16 = _BF16(net, size)
    err = check_outputs(bf16, net, size, "bf16", BF16_TOLERANCE)
    # Above fp32's tolerance: the network really ran in bf16 (1.7% measured).
    assert 10 * TOLERANCE < err <= BF16_TOLERANCE
    images = torch.randn(5, 3, size[1], size[0])
    with torch.inference_mode():
        ref = net(images)[net.prediction]
        got = bf16(images)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert float((got - ref).abs().max()) / float(ref.abs().max()) <= BF16_TOLERANCE


def ill_conditioned(net):
    """The network with its final convolution's output offset by 256x the heatmaps' largest
    magnitude and the offset removed after it: equal in fp32 (24 significant bits: about 2e-5 of
    the heatmaps at the offset), but bf16's 8 significant bits at the offset are coarser than the
    heatmaps themselves. (At 1024x, fp32's own rounding reached the 1e-4 tolerance on 2 threads.)"""
    images, _ = runtime.example_inputs(net, (64, 96))
    with torch.inference_mode():
        offset = 256 * float(net(images)[net.prediction].abs().max())
    with torch.no_grad():
        net.final_layer.bias.add_(offset)
    net.final_layer.register_forward_hook(lambda m, i, out: out - offset)
    return net


def test_bf16_refuses_a_network_it_cannot_run_within_its_tolerance():
    net, size = build_net("PoseHighResolutionNet")
    ill_conditioned(net)
    assert check_outputs(_Fused(net, size), net, size, "fused") <= 1e-3  # fine in fp32
    images = torch.randn(2, 3, size[1], size[0])
    with pytest.raises(OutputMismatch, match=r"the bf16 network: outputs differ from the eager"
                                             r" forward by .* above 0.025"):  # fmt: skip
        InferenceNet("bf16", input_size=size).infer(net, images)


def test_auto_never_picks_bf16(monkeypatch, tmp_path):
    """bf16 changes the outputs (up to BF16_TOLERANCE): only asked for by name, so the default's
    results are the same on every machine."""
    for native in (False, True):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
        assert resolve_backend("auto", "cpu") == "onnxruntime"
        assert resolve_backend("auto", "cuda") == "fused"
        assert resolve_backend("bf16", "cpu") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="'bf16': cuda does not compute bf16"):
        resolve_backend("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_backend("bf16", "cuda") == "bf16"
    # An ONNX file runs with onnxruntime under "auto", native bf16 or not.
    net, size = build_net("PoseHighResolutionNet")
    path = str(tmp_path / "net.onnx")
    export_onnx(net, path, size)
    auto = InferenceNet("auto", onnx_file=path, input_size=size)
    auto.infer(net, torch.randn(1, 3, size[1], size[0]))
    assert auto.resolved == "onnxruntime"


@pytest.mark.parametrize("native", [False, True])
def test_bf16_asked_for_without_native_bf16_warns_once(native, monkeypatch, caplog):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    model = _model("TEST.TOPDOWN.BACKEND", "bf16")
    crops = torch.randn(3, 3, 96, 64)
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        got = model._outputs(crops, None, inference=True)["heatmap"]
        with torch.no_grad():  # a weight change rebuilds the network, without a second warning
            next(model.pose_net.parameters()).mul_(0.9)
        model._outputs(crops, None, inference=True)
    assert model.runner.resolved == "bf16"
    warned = [r for r in caplog.records if "no native bf16" in r.getMessage()]
    if native:
        assert not warned
    else:
        assert len(warned) == 1 and "emulated, slower than fp32" in warned[0].getMessage()
    assert got.dtype == torch.float32


# --- int8 --------------------------------------------------------------------------------------


class _GaussianNet(torch.nn.Module):
    """Heatmaps of Gaussians (sigma 2 cells) at given sub-cell positions, one crop per row of
    ``centers`` (N, K, 2): a network whose decoded keypoints are known."""

    prediction = "heatmap"
    cue_channels = 0

    def __init__(self, centers, h=24, w=16):
        super().__init__()
        self.centers, self.h, self.w = centers, h, w

    def forward(self, images, cues=None):
        ys, xs = torch.meshgrid(torch.arange(self.h), torch.arange(self.w), indexing="ij")
        c = self.centers[..., None, None]
        d2 = (xs - c[:, :, 0]) ** 2 + (ys - c[:, :, 1]) ** 2
        return {"heatmap": torch.exp(-d2 / 8.0)}


def test_the_int8_check_counts_keypoints_within_a_quarter_cell():
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(4, 10, 2, generator=g) * torch.tensor([10.0, 18.0]) + 3
    net, crops = _GaussianNet(centers), torch.zeros(4, 3, 96, 64)

    def moved(shift):
        return lambda images, cues=None: _GaussianNet(centers + shift)(images)["heatmap"]

    # The peak fit of a sampled Gaussian measures shifts to within a few hundredths of a cell.
    median, within = runtime.check_keypoints(moved(torch.tensor([0.05, 0.0])), net, crops, "q")
    assert median == pytest.approx(0.05, abs=0.03) and within == 1.0
    with pytest.raises(OutputMismatch, match=r"q: decoded keypoints moved .* median 0.[23]\d\d"
                                             r" heatmap cell \(at most 0.1\), 0.0% within 0.25"):
        runtime.check_keypoints(moved(torch.tensor([0.3, 0.0])), net, crops, "q")
    # A few joints may jump (near-equal maxima): one in ten of every crop by two cells passes ...
    one = torch.zeros(10, 2)
    one[0] = torch.tensor([2.0, 0.0])
    assert runtime.check_keypoints(moved(one), net, crops, "q")[1] == pytest.approx(0.9)
    # ... two in ten do not.
    one[1] = torch.tensor([0.0, 2.0])
    with pytest.raises(OutputMismatch, match=r"80.0% within 0.25 cell \(at least 90%\)"):
        runtime.check_keypoints(moved(one), net, crops, "q")


def _int8_model(monkeypatch, *opts):
    """A small model with the int8 backend whose quantizer is replaced by the fp32 export of the
    network it is given (or of a perturbed copy), recording the calibration crops."""
    seen = {}

    def fake_quantize(net, input_size, crops):
        seen["crops"] = crops
        net = copy.deepcopy(net)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * seen.get("perturb", 0.0))
        buf = io.BytesIO()
        export_onnx(net, buf, input_size)
        return buf.getvalue()

    monkeypatch.setattr(runtime, "quantize_int8", fake_quantize)
    return _model("TEST.TOPDOWN.BACKEND", "int8", *opts), seen


def test_int8_calibrates_on_the_configured_dataset_and_is_checked(monkeypatch, tmp_path):
    crops = torch.randn(3, 3, 96, 64)
    for opts, dataset, persons in [
        ((), "coco_person_sample", 14),  # the default: DATASETS.TRAIN's first
        (("TEST.TOPDOWN.INT8_CALIBRATION_DATASET", "aic_person_sample"), "aic_person_sample", 9),
        (("TEST.TOPDOWN.INT8_CALIBRATION_CROPS", "5"), "coco_person_sample", 5),
    ]:
        model, seen = _int8_model(monkeypatch, *opts)
        model._outputs(crops, None, inference=True)
        assert model.runner.resolved == "int8"
        got = seen["crops"]
        assert got.shape == (2 * persons, 3, 96, 64)  # each person's crop and its mirror
        torch.testing.assert_close(got[persons:], got[:persons].flip(-1))
        cfg = sample_cfg(*SMALL)
        want = runtime.calibration_crops(dataset, persons, (64, 96), cfg.MODEL.PIXEL_MEAN,
                                         cfg.MODEL.PIXEL_STD, "RGB", 1.25)  # fmt: skip
        torch.testing.assert_close(got, want)
    # The first crop is the first annotated person's box, padded 1.25x to the 2:3 crop.
    d = DatasetCatalog.get("coco_person_sample")[0]
    x, y, w, h = d["annotations"][0]["bbox"]
    img = read_image(d["file_name"], format="RGB").astype("float32")
    hh = max(h, w * 1.5) * 1.25
    scale = 64 / (hh / 1.5)
    m = np.array([[scale, 0, 32 - scale * (x + w / 2)], [0, scale, 48 - scale * (y + h / 2)]])
    crop = cv2.warpAffine(img, m, (64, 96), flags=cv2.INTER_LINEAR)
    crop = (crop - np.array(cfg.MODEL.PIXEL_MEAN)) / np.array(cfg.MODEL.PIXEL_STD)
    np.testing.assert_allclose(want[0].permute(1, 2, 0).numpy(), crop, atol=1e-3)
    # A quantized network whose keypoints move is refused at build time, naming the check.
    model, seen = _int8_model(monkeypatch)
    seen["perturb"] = 0.05
    with pytest.raises(OutputMismatch, match="the int8 network: decoded keypoints moved"):
        model._outputs(crops, None, inference=True)


def test_int8_refuses_bad_calibration_sources_and_auto_never_picks_it(monkeypatch):
    with pytest.raises(ValueError, match="'no_such_set' is not a registered dataset"):
        _model("TEST.TOPDOWN.BACKEND", "int8", "TEST.TOPDOWN.INT8_CALIBRATION_DATASET",
               "no_such_set")  # fmt: skip
    with pytest.raises(ValueError, match="'coco_person_sample' is evaluated .* but not trained"):
        _model("TEST.TOPDOWN.BACKEND", "int8", "TEST.TOPDOWN.INT8_CALIBRATION_DATASET",
               "coco_person_sample", "DATASETS.TRAIN", "('synth_people_mini_train',)")  # fmt: skip
    with pytest.raises(ValueError, match=r"set TEST.TOPDOWN.INT8_CALIBRATION_DATASET \(or"):
        _model("TEST.TOPDOWN.BACKEND", "int8", "DATASETS.TRAIN", "()")
    with pytest.raises(ValueError, match="must be positive, got 0"):
        _model("TEST.TOPDOWN.BACKEND", "int8", "TEST.TOPDOWN.INT8_CALIBRATION_CROPS", "0")
    net, size = build_net("HintPoseHRNet")
    with pytest.raises(ValueError, match="'int8' calibrates on image crops alone"):
        runtime._Int8(net, size, lambda: torch.zeros(2, 3, size[1], size[0]))
    assert resolve_backend("auto", "cpu") == "onnxruntime"
    with pytest.raises(ValueError, match="'int8' runs ONNX Runtime's CPU provider.*cuda"):
        resolve_backend("int8", "cuda")


def test_int8_quantizes_every_convolution_per_channel_and_caches(tmp_path, caplog):
    import onnx
    import onnx.numpy_helper

    net, size = build_net("PoseHighResolutionNet")
    crops = torch.randn(4, 3, size[1], size[0])
    model = onnx.load_from_string(runtime.quantize_int8(net, size, crops))
    init = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    producer = {o: n for n in model.graph.node for o in n.output}
    assert len(convs) > 10
    for conv in convs:
        dq = producer[conv.input[1]]  # weights: int8, one scale per output channel
        assert dq.op_type == "DequantizeLinear", conv.name
        assert init[dq.input[0]].data_type == onnx.TensorProto.INT8
        assert init[dq.input[1]].dims == [init[dq.input[0]].dims[0]]
        # ... in the reduced 7-bit range (no VNNI: AVX2's uint8 x int8 pair sums saturate int16)
        assert 32 < np.abs(onnx.numpy_helper.to_array(init[dq.input[0]])).max() <= 64
        act = producer[conv.input[0]]  # activations: uint8
        assert act.op_type == "DequantizeLinear"
        assert init[act.input[2]].data_type == onnx.TensorProto.UINT8
    # The cache: a second build with the same weights and crops reads the file.
    with caplog.at_level(logging.INFO, logger=runtime.__name__):
        a = runtime._Int8(net, size, lambda: crops, str(tmp_path))
        b = runtime._Int8(net, size, lambda: crops, str(tmp_path))
    assert len(list(tmp_path.glob("int8-*.onnx"))) == 1
    assert [r.getMessage().startswith("int8 network from the cache") for r in caplog.records] == [
        False, True]  # fmt: skip
    images = torch.randn(2, 3, size[1], size[0])
    torch.testing.assert_close(a(images), b(images))
