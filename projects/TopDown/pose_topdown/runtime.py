"""How inference runs a top-down pose network: ``TEST.TOPDOWN.BACKEND``.

- ``"eager"``: the module as trained, under ``torch.inference_mode()``.
- ``"fused"``: a copy with every BatchNorm folded into the convolution before it
  (``fold_batchnorm``), in channels-last memory, under ``torch.inference_mode()``. Runs on CPU
  and CUDA.
- ``"bf16"``: the fused network run under ``torch.autocast`` in bfloat16 on its device, returning
  fp32 predictions. It is fast only where the hardware computes bf16 natively (a CPU with AVX-512
  BF16 or AMX, a CUDA GPU with bf16); on a CPU without it bf16 is emulated and slower than fp32,
  so asking for it there runs it with a one-line warning.
- ``"onnxruntime"``: the network exported to ONNX (in memory, or the file ``TEST.TOPDOWN.ONNX_FILE``
  that ``tools/export_model.py`` wrote) and run by ONNX Runtime's CPU provider, with as many
  threads as torch uses.
- ``"int8"``: the ONNX export quantized to int8 by ONNX Runtime (static, QDQ: int8 weights per
  output channel, uint8 activations with the reduced 7-bit range that x86 CPUs without VNNI need
  to avoid saturating their uint8 x int8 products), its activation ranges calibrated on person
  crops of a dataset (``calibration``: TEST.TOPDOWN.INT8_CALIBRATION_*; the training split by
  default) and checked on those crops: decoded keypoints within ``INT8_CELLS`` of a heatmap cell of
  eager's (see ``check_keypoints``). Networks with cue channels are refused.
- ``"auto"`` (default): the fastest fp32 backend the environment has for the model's device:
  onnxruntime on CPU when it imports, otherwise fused (the README's performance section has the
  figures). It never picks bf16 or int8, whose outputs differ from eager's (bf16: up to
  ``BF16_TOLERANCE``; int8: ``check_keypoints``): the default's results do not depend on the
  machine; ask for them by name.

``InferenceNet`` keeps the built network and rebuilds it only when the weights change (a training
step, ``load_state_dict``, a move to another device), so the evaluator hook during training sees
the current weights. Every built network is checked against the eager forward on a random batch:
outputs must agree within ``TOLERANCE`` (relative to the output's largest magnitude, at least 1;
``BF16_TOLERANCE`` for bf16), else a ``RuntimeError`` names the backend and the difference (no
silent fallback).
"""

import contextlib
import copy
import hashlib
import io
import logging
import time
import warnings
from typing import Optional, Sequence

import torch
from torch import nn

from multitask_pose.engine.mixed_precision import cpu_has_native_bf16
from multitask_pose.shared.atomic_io import atomic_write
from multitask_pose.shared.onnx_runtime import cpu_session

__all__ = [
    "BACKENDS",
    "BF16_TOLERANCE",
    "INT8_CELLS",
    "InferenceNet",
    "OutputMismatch",
    "OnnxPoseNet",
    "StageTimes",
    "TOLERANCE",
    "calibration_crops",
    "check_keypoints",
    "export_onnx",
    "fold_batchnorm",
    "int8_calibration",
    "resolve_backend",
    "stage",
    "weights_digest",
]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "fused", "onnxruntime", "bf16", "int8")
TOLERANCE = 1e-4  # max |backend - eager| / max(1, max |eager|) on the check batch
# The same measure for bf16 (8 significant bits: each rounding is up to 2^-9 = 0.2%). In keypoint
# terms: the peak of a Gaussian heatmap of amplitude A and sigma s cells, perturbed by at most
# d * A per cell, moves by at most about d * s^2 cells under a quadratic (DARK-style) fit; with the
# recipes' s = 2, d = 0.025 keeps a decoded keypoint whose peak is near the output's maximum within
# a tenth of a cell even for the worst-placed errors. Measured on a 2-core EPYC without native bf16
# (the result is the same there, only slower): HRNet-W18-small memorised on the COCO sample, 0.7%
# on the check batch, 1.1% on the sample's crops (keypoints moved a median 0.012 cells, 98.7%
# within 0.1 cell; keypoint AP unchanged, 0.956); random He-initialised networks (outputs up to
# 1e10, worse conditioned than trained ones) 1.2-2.9%.
BF16_TOLERANCE = 0.025
# The int8 check (``check_keypoints``) on the calibration crops, in heatmap cells: of the joints
# whose peak is at least INT8_CONFIDENT of the crop's highest, INT8_WITHIN must move at most
# INT8_CELLS (a quarter cell) and their median at most INT8_MEDIAN_CELLS. Not a bound on every
# joint: where two cells hold nearly equal maxima, a rounding can move the peak a cell or more.
# Measured on a 2-core EPYC (AVX2, no VNNI), HRNet-W18-small 64x96: memorised on the COCO sample,
# median 0.034 cell, 97.7% within a quarter cell; trained on synth_people_basic, on its val split
# 0.033 and 97.9%, on the COCO sample's real crops 0.052 and 91.3%; heatmap maxima within 3-8%.
INT8_CELLS = 0.25
INT8_WITHIN = 0.9
INT8_MEDIAN_CELLS = 0.1
INT8_CONFIDENT = 0.3
OPSET = 17
_META_DIGEST = "multitask_pose.weights_sha256"
_META_INPUTS = "multitask_pose.inputs"  # "HxW+C": crop size and cue channels
OUTPUT = "prediction"  # the exported output: the pose network's prediction maps


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(name: str, device) -> str:
    """The backend ``name`` ("auto" resolved) for a model on ``device``; a clear error for an
    unknown name, or a backend where it cannot run."""
    if name not in BACKENDS:
        raise ValueError(f"TEST.TOPDOWN.BACKEND must be one of {BACKENDS}, got {name!r}")
    kind = torch.device(device).type
    cpu = kind == "cpu"
    if name == "auto":
        return "onnxruntime" if cpu and onnxruntime_available() else "fused"
    if name == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(
            f"TEST.TOPDOWN.BACKEND 'bf16': {device} does not compute bf16; use 'fused' or 'auto'"
        )
    if name in ("onnxruntime", "int8"):
        if not onnxruntime_available():
            raise ImportError(
                f"TEST.TOPDOWN.BACKEND {name!r} needs the onnxruntime package (the project's"
                " set-up installs it; `pip install onnxruntime onnx` in your own environment),"
                " or choose 'fused' / 'eager'"
            )
        if not cpu:
            raise ValueError(
                f"TEST.TOPDOWN.BACKEND {name!r} runs ONNX Runtime's CPU provider, but the"
                f" model is on {device}: use 'fused' or 'auto' there"
            )
    return name


def weights_digest(net: nn.Module) -> str:
    """sha256 of the network's state dict (names, dtypes, shapes and values, in order)."""
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def example_inputs(net, input_size: Sequence[int], batch: int = 2, seed: int = 0):
    """A seeded random (images, cues or None) batch of crops of ``input_size`` (w, h)."""
    g = torch.Generator().manual_seed(seed)
    w, h = input_size
    device = next(net.parameters()).device
    images = torch.randn(batch, 3, h, w, generator=g).to(device)
    cues = None
    if net.cue_channels:
        cues = torch.rand(batch, net.cue_channels, h, w, generator=g).to(device)
    return images, cues


class _Prediction(nn.Module):
    """The network's prediction alone, as a plain tensor (what tracing and export need)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.prediction = net.prediction

    def forward(self, images, cues=None):
        return self.net(images, cues)[self.prediction]


def fold_batchnorm(net: nn.Module, images: torch.Tensor, cues=None) -> nn.Module:
    """An eval-mode copy of a pose network with each BatchNorm2d that only ever normalises the
    output of one Conv2d folded into that convolution (``torch.nn.utils.fusion``) and replaced by
    an identity.

    The pairs come from one forward pass on ``images`` (and ``cues``) with hooks, not from
    tracing: torch.fx cannot trace the networks' input checks and loops over hops. A pair needs
    every call of the BatchNorm to take the output of the same convolution, and that
    convolution to be called as often as the BatchNorm. A convolution whose output also feeds
    something else is not detectable this way; ``InferenceNet`` compares the folded network with
    the eager one on every build and refuses it if it differs.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    produced, conv_calls, bn_inputs, held = {}, {}, {}, []

    def on_conv(m, inputs, output):
        produced[id(output)] = m
        conv_calls[m] = conv_calls.get(m, 0) + 1
        held.append(output)  # keeps ids unique during the pass

    def on_bn(m, inputs, output):
        bn_inputs.setdefault(m, []).append(produced.get(id(inputs[0])))

    hooks = [
        m.register_forward_hook(on_conv if isinstance(m, nn.Conv2d) else on_bn)
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
    ]
    try:
        with torch.no_grad():
            net(images, cues)
    finally:
        for h in hooks:
            h.remove()
    pairs = {}
    for bn, convs in bn_inputs.items():
        conv = convs[0]
        if conv is not None and all(c is conv for c in convs) and conv_calls[conv] == len(convs):
            pairs[bn] = conv
    parents = {id(child): (parent, name) for parent in net.modules()
               for name, child in parent.named_children()}  # fmt: skip
    for bn, conv in pairs.items():
        parent, name = parents[id(conv)]
        setattr(parent, name, fuse_conv_bn_eval(conv, bn))
        parent, name = parents[id(bn)]
        setattr(parent, name, nn.Identity())
    return net


def export_onnx(net: nn.Module, f, input_size: Sequence[int]) -> None:
    """Write the network's prediction as ONNX to ``f`` (a path or a binary file object): inputs
    ``images`` (N, 3, H, W) and, for a network with cue channels, ``cues``; output ``prediction``
    (the network's maps that the model's head turns into keypoints);
    N dynamic; opset 17; the weights' digest and input sizes in the metadata."""
    import onnx

    wrapped = _Prediction(copy.deepcopy(net).eval().cpu())
    images, cues = example_inputs(wrapped.net, input_size)
    args = (images,) if cues is None else (images, cues)
    names = ["images"] + (["cues"] if cues is not None else [])
    axes = {n: {0: "n"} for n in names + [OUTPUT]}
    buf = io.BytesIO()
    # The TorchScript exporter (dynamo=False): it exports HRNet-W32 in about 10 s here against
    # 46 s for the torch.export one, with outputs as close; its deprecation warning is muted.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, args, buf, input_names=names, output_names=[OUTPUT],
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    model = onnx.load_from_string(buf.getvalue())
    w, h = input_size
    for key, value in (
        (_META_DIGEST, weights_digest(net)),
        (_META_INPUTS, f"{h}x{w}+{net.cue_channels}"),
        ("multitask_pose.pose_net", type(net).__name__),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    data = model.SerializeToString()
    if hasattr(f, "write"):
        f.write(data)
    else:
        with open(f, "wb") as out:
            out.write(data)


class OnnxPoseNet:
    """An exported pose network run by ONNX Runtime: ``net(images, cues)`` returns the
    prediction (a CPU tensor); ``metadata`` holds what ``export_onnx`` recorded."""

    def __init__(self, model, threads: Optional[int] = None):
        """
        Args:
            model: the ONNX file's path or its bytes.
            threads: intra-op threads (default: ``torch.get_num_threads()``).
        """
        self.session = cpu_session(model, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        # One output: "prediction" (files exported before were named "heatmaps").
        self.output_name = self.session.get_outputs()[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, images: torch.Tensor, cues: Optional[torch.Tensor] = None) -> torch.Tensor:
        feeds = {"images": images.detach().cpu().float().contiguous().numpy()}
        if "cues" in self.input_names:
            if cues is None:
                raise ValueError("this ONNX pose network takes cues: none were given")
            feeds["cues"] = cues.detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run([self.output_name], feeds)[0])

    def check_matches(self, net: nn.Module, input_size: Sequence[int], source: str) -> None:
        """ValueError unless the file was exported from ``net``'s weights at this input size."""
        w, h = input_size
        want = {_META_DIGEST: weights_digest(net), _META_INPUTS: f"{h}x{w}+{net.cue_channels}"}
        for key, value in want.items():
            if self.metadata.get(key) != value:
                raise ValueError(
                    f"{source} was not exported from this model ({key}: file"
                    f" {self.metadata.get(key, '(missing)')!r}, model {value!r}); export it again"
                    " with tools/export_model.py"
                )


class OutputMismatch(RuntimeError):
    """A built network's outputs differ from the eager forward's beyond the tolerance."""


def check_outputs(
    fast, net: nn.Module, input_size: Sequence[int], what: str, tolerance: float = TOLERANCE
) -> float:
    """Max relative difference of ``fast`` to the eager prediction of ``net`` on a seeded random
    batch; RuntimeError above ``tolerance``."""
    images, cues = example_inputs(net, input_size)
    with torch.inference_mode():
        ref = net(images, cues)[net.prediction].float().cpu()
        got = fast(images, cues).float().cpu()
    if got.shape != ref.shape:
        raise OutputMismatch(f"{what}: output shape {tuple(got.shape)} != {tuple(ref.shape)}")
    err = float((got - ref).abs().max() / max(1.0, float(ref.abs().max())))
    if not err <= tolerance:
        raise OutputMismatch(
            f"{what}: outputs differ from the eager forward by {err:.2e} (relative), above"
            f" {tolerance:g}; use TEST.TOPDOWN.BACKEND 'eager'"
        )
    return err


class _Fused:
    """The folded network in channels-last memory; returns the prediction."""

    def __init__(self, net: nn.Module, input_size: Sequence[int]):
        images, cues = example_inputs(net, input_size)
        self.module = fold_batchnorm(net, images, cues).to(memory_format=torch.channels_last)
        self.prediction = net.prediction

    def __call__(self, images, cues=None):
        images = images.contiguous(memory_format=torch.channels_last)
        if cues is not None:
            cues = cues.contiguous(memory_format=torch.channels_last)
        return self.module(images, cues)[self.prediction]


class _BF16(_Fused):
    """The fused network under bf16 autocast on the model's device; returns an fp32 prediction.
    Autocast runs convolutions and matrix products in bf16 and keeps reductions and softmax in
    fp32, where the precision matters. Channels-last, as the fused network: HRNet-W32 at batch 1
    on a CPU without native bf16 ran 6x faster than in NCHW (0.30x against 0.05x of fp32
    eager), and on one with AVX-512 BF16 at batch 8 2.14x against 1.75x of fp32 eager."""

    def __init__(self, net: nn.Module, input_size: Sequence[int]):
        super().__init__(net, input_size)
        self.device_type = next(net.parameters()).device.type

    def __call__(self, images, cues=None):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return super().__call__(images, cues).float()


def calibration_crops(
    dataset: str,
    count: int,
    input_size: Sequence[int],
    pixel_mean: Sequence[float],
    pixel_std: Sequence[float],
    input_format: str = "RGB",
    padding: float = 1.25,
) -> torch.Tensor:
    """(N, 3, H, W) normalised person crops of a registered dataset for int8 calibration: the
    ground-truth boxes (not crowd) of its images in order, cropped as inference crops them
    (``box_to_center_size`` with ``padding``, no rotation), until ``count`` crops; then the mirror
    image of each, as the flip test feeds them (N = 2 x min(count, persons))."""
    import numpy as np
    from detectron2.data import DatasetCatalog
    from detectron2.data.detection_utils import read_image
    from detectron2.structures import BoxMode

    from .affine import box_to_center_size, crop_affine, warp_crops

    if dataset not in DatasetCatalog.list():
        raise ValueError(
            f"int8 calibration dataset {dataset!r} is not registered (TEST.TOPDOWN."
            "INT8_CALIBRATION_DATASET, or the first of DATASETS.TRAIN): name a registered"
            " dataset with person boxes"
        )
    w, h = input_size
    mean = np.asarray(pixel_mean, np.float32)
    std = np.asarray(pixel_std, np.float32)
    crops, n = [], 0
    for record in DatasetCatalog.get(dataset):
        if n >= count:
            break
        anns = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        if not anns:
            continue
        anns = anns[: count - n]
        boxes = np.array(
            [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns]
        )
        center, size = box_to_center_size(boxes, w / h, padding)
        image = read_image(record["file_name"], format=input_format).astype(np.float32)
        affine = crop_affine(center, size, 0.0, (w, h))
        crops.append((warp_crops(image, affine, (w, h)) - mean) / std)
        n += len(anns)
    if not n:
        raise ValueError(f"int8 calibration dataset {dataset!r} has no person boxes to crop")
    x = torch.from_numpy(np.concatenate(crops)).permute(0, 3, 1, 2).contiguous()
    return torch.cat([x, x.flip(-1)])


def int8_calibration(cfg):
    """The config's int8 calibration crops as a function (called when the network is built):
    TEST.TOPDOWN.INT8_CALIBRATION_DATASET, or the first of DATASETS.TRAIN; a ValueError for a
    dataset that is not registered, or that is evaluated but not trained on."""
    import functools

    from detectron2.data import DatasetCatalog

    t = cfg.TEST.TOPDOWN
    dataset = t.INT8_CALIBRATION_DATASET or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else "")
    if not dataset:
        raise ValueError(
            "TEST.TOPDOWN.BACKEND 'int8' calibrates on person crops: set"
            " TEST.TOPDOWN.INT8_CALIBRATION_DATASET (or DATASETS.TRAIN) to a registered dataset"
        )
    if dataset in cfg.DATASETS.TEST and dataset not in cfg.DATASETS.TRAIN:
        raise ValueError(
            f"TEST.TOPDOWN.INT8_CALIBRATION_DATASET {dataset!r} is evaluated (DATASETS.TEST) but"
            " not trained on: calibrate on training data, not on the data you measure"
        )
    if dataset not in DatasetCatalog.list():
        raise ValueError(
            f"TEST.TOPDOWN.INT8_CALIBRATION_DATASET {dataset!r} is not a registered dataset"
        )
    if t.INT8_CALIBRATION_CROPS < 1:
        raise ValueError(
            f"TEST.TOPDOWN.INT8_CALIBRATION_CROPS must be positive, got {t.INT8_CALIBRATION_CROPS}"
        )
    return functools.partial(
        calibration_crops, dataset, t.INT8_CALIBRATION_CROPS, tuple(cfg.MODEL.TOPDOWN.INPUT_SIZE),
        tuple(cfg.MODEL.PIXEL_MEAN), tuple(cfg.MODEL.PIXEL_STD), cfg.INPUT.FORMAT,
        cfg.INPUT.TOPDOWN.PADDING,
    )  # fmt: skip


def _peaks(maps: torch.Tensor):
    """(N, K, 2) heatmap peaks in cells (x, y): the argmax refined by a parabola through it and its
    two neighbours on each axis (within half a cell), and (N, K) the maxima."""
    n, k, h, w = maps.shape
    flat = maps.reshape(n, k, -1)
    val, idx = flat.max(-1)
    y, x = idx // w, idx % w

    def at(dy, dx):
        yy, xx = (y + dy).clamp(0, h - 1), (x + dx).clamp(0, w - 1)
        return flat.gather(-1, (yy * w + xx)[..., None])[..., 0]

    def refine(lo, hi, inside):
        curv = lo - 2 * val + hi
        off = torch.where(curv < 0, 0.5 * (lo - hi) / curv.clamp(max=-1e-12), torch.zeros_like(val))
        return off.clamp(-0.5, 0.5) * inside

    px = x + refine(at(0, -1), at(0, 1), (x > 0) & (x < w - 1))
    py = y + refine(at(-1, 0), at(1, 0), (y > 0) & (y < h - 1))
    return torch.stack([px, py], -1), val


def check_keypoints(fast, net: nn.Module, crops: torch.Tensor, what: str):
    """Peak shifts (heatmap cells) of ``fast``'s heatmaps from eager's on ``crops``: median and
    fraction within ``INT8_CELLS`` over the confident joints (peak at least ``INT8_CONFIDENT`` of
    the crop's highest); OutputMismatch unless the fraction is at least ``INT8_WITHIN`` and the
    median at most ``INT8_MEDIAN_CELLS``. Returns (median, fraction)."""
    with torch.inference_mode():
        ref = net(crops, None)[net.prediction].float().cpu()
        got = fast(crops, None).float().cpu()
    if got.shape != ref.shape:
        raise OutputMismatch(f"{what}: output shape {tuple(got.shape)} != {tuple(ref.shape)}")
    p_ref, v_ref = _peaks(ref)
    p_got, _ = _peaks(got)
    confident = v_ref >= INT8_CONFIDENT * v_ref.amax(1, keepdim=True)
    shift = (p_got - p_ref).norm(dim=-1)[confident]
    median = float(shift.median())
    within = float((shift <= INT8_CELLS).double().mean())
    if not (within >= INT8_WITHIN and median <= INT8_MEDIAN_CELLS):
        raise OutputMismatch(
            f"{what}: decoded keypoints moved from the eager forward's by a median"
            f" {median:.3f} heatmap cell (at most {INT8_MEDIAN_CELLS:g}), {within:.1%} within"
            f" {INT8_CELLS:g} cell (at least {INT8_WITHIN:.0%}) on {len(crops)} calibration"
            " crops; use TEST.TOPDOWN.BACKEND 'onnxruntime' (fp32)"
        )
    return median, within


def quantize_int8(net: nn.Module, input_size: Sequence[int], crops: torch.Tensor) -> bytes:
    """The network exported to ONNX and quantized by ONNX Runtime (static, QDQ, per-channel int8
    weights, uint8 activations in the reduced range), activation ranges from ``crops`` (MinMax)."""
    import os
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Crops(CalibrationDataReader):
        def __init__(self, x, batch=8):
            self.batches = iter(
                [{"images": x[i : i + batch].numpy()} for i in range(0, len(x), batch)]
            )

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as d:
        fp32, pre, q = (os.path.join(d, f) for f in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        export_onnx(net, fp32, input_size)
        # ONNX Runtime's recommended preprocessing (shape inference, graph optimisation); its
        # symbolic shape inference cannot follow the dynamic batch through HRNet: skipped.
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)
        quantize_static(
            pre, q, _Crops(crops.float().contiguous()), quant_format=QuantFormat.QDQ,
            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )  # fmt: skip
        with open(q, "rb") as f:
            return f.read()


class _Int8(OnnxPoseNet):
    """The int8 ONNX Runtime network (``quantize_int8``), calibrated on ``calibration()``'s crops;
    with ``cache_dir``, the quantized file is kept there under a key of the weights' digest, the
    calibration crops and the ONNX Runtime version, and reused."""

    def __init__(self, net: nn.Module, input_size: Sequence[int], calibration, cache_dir=""):
        import os

        import onnxruntime

        if net.cue_channels:
            raise ValueError(
                "TEST.TOPDOWN.BACKEND 'int8' calibrates on image crops alone: a network with cue"
                " channels is not supported (use 'onnxruntime')"
            )
        if calibration is None:
            raise ValueError(
                "TEST.TOPDOWN.BACKEND 'int8' needs calibration crops (TEST.TOPDOWN."
                "INT8_CALIBRATION_DATASET or DATASETS.TRAIN)"
            )
        self.crops = calibration()
        key = hashlib.sha256(
            f"{weights_digest(net)};{onnxruntime.__version__};{tuple(self.crops.shape)};".encode()
            + self.crops.float().contiguous().numpy().tobytes()
        ).hexdigest()[:32]
        path = os.path.join(os.path.expanduser(cache_dir), f"int8-{key}.onnx") if cache_dir else ""
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read()
            logger.info(f"int8 network from the cache: {path}")
        else:
            t = time.perf_counter()
            data = quantize_int8(net, input_size, self.crops)
            logger.info(f"int8 network quantized in {time.perf_counter() - t:.1f} s")
            if path:  # atomic_write makes the folder
                with atomic_write(path, "wb") as f:
                    f.write(data)
        super().__init__(data)


class InferenceNet:
    """The pose network as ``TEST.TOPDOWN.BACKEND`` runs it, rebuilt when the weights change.

    ``infer(net, images, cues)`` returns ``net``'s prediction (on the images' device)."""

    def __init__(
        self,
        backend: str = "auto",
        onnx_file: str = "",
        input_size=(192, 256),
        calibration=None,
        cache_dir: str = "",
    ):
        """
        Args:
            calibration: for "int8", a function returning the calibration crops
                (``calibration_crops``), called when the network is built.
            cache_dir: for "int8", where quantized networks are kept ("" none).
        """
        if backend not in BACKENDS:
            raise ValueError(f"TEST.TOPDOWN.BACKEND must be one of {BACKENDS}, got {backend!r}")
        if onnx_file and backend not in ("onnxruntime", "auto"):
            raise ValueError(
                f"TEST.TOPDOWN.ONNX_FILE is set but TEST.TOPDOWN.BACKEND is {backend!r}: the file"
                " runs only with 'onnxruntime' (or 'auto')"
            )
        self.backend, self.onnx_file, self.input_size = backend, onnx_file, tuple(input_size)
        self.calibration, self.cache_dir = calibration, cache_dir
        self._built = None
        self._key = None
        self.resolved = None  # the backend in use, once built

    @staticmethod
    def _weights_key(net: nn.Module):
        # data_ptr + version counter of every parameter and buffer: changed by optimizer steps,
        # load_state_dict and .to(). Read from the modules directly: state_dict() costs 2x more.
        return tuple(
            (t.data_ptr(), t._version)
            for m in net.modules()
            for d in (m._parameters, m._buffers)
            for t in d.values()
            if t is not None
        )

    def _build(self, net: nn.Module, device):
        name = resolve_backend(self.backend, device)
        if self.onnx_file and name != "onnxruntime":
            raise ValueError(
                f"TEST.TOPDOWN.ONNX_FILE {self.onnx_file} needs the onnxruntime backend, which"
                f" does not run on {device}"
            )
        built = self._build_backend(name, net, device)
        if name != self.resolved:
            logger.info(f"Top-down inference backend: {name} (TEST.TOPDOWN.BACKEND {self.backend})")
        self.resolved = name
        return built

    def _build_backend(self, name: str, net: nn.Module, device):
        if name == "eager":
            built = None
        elif name == "fused":
            built = _Fused(net, self.input_size)
            check_outputs(built, net, self.input_size, "the fused network")
        elif name == "bf16":
            if torch.device(device).type == "cpu" and not cpu_has_native_bf16() and (
                name != self.resolved
            ):
                logger.warning(
                    "TEST.TOPDOWN.BACKEND 'bf16': this CPU has no native bf16 (AVX-512 BF16 or"
                    " AMX): it is emulated, slower than fp32 ('auto' picks a faster backend)"
                )
            built = _BF16(net, self.input_size)
            check_outputs(built, net, self.input_size, "the bf16 network", BF16_TOLERANCE)
        elif name == "int8":
            built = _Int8(net, self.input_size, self.calibration, self.cache_dir)
            median, within = check_keypoints(built, net, built.crops, "the int8 network")
            logger.info(
                f"int8 network checked on {len(built.crops)} calibration crops: keypoints moved"
                f" a median {median:.3f} heatmap cell, {within:.1%} within {INT8_CELLS:g} cell"
            )
            del built.crops
        else:
            if self.onnx_file:
                built = OnnxPoseNet(self.onnx_file)
                built.check_matches(
                    net, self.input_size, f"TEST.TOPDOWN.ONNX_FILE {self.onnx_file}"
                )
            else:
                buf = io.BytesIO()
                export_onnx(net, buf, self.input_size)
                built = OnnxPoseNet(buf.getvalue())
            check_outputs(built, net, self.input_size, "the ONNX Runtime network")
        return built

    def infer(
        self, net: nn.Module, images: torch.Tensor, cues: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        key = self._weights_key(net)
        if self._key != key:
            self._built = self._build(net, images.device)
            self._key = key
        with torch.inference_mode():
            if self._built is None:
                return net(images, cues)[net.prediction]
            return self._built(images, cues).to(images.device)

    def __deepcopy__(self, memo):
        # A copied model (or a pickled one) rebuilds its own network: sessions do not copy.
        return InferenceNet(
            self.backend, self.onnx_file, self.input_size, self.calibration, self.cache_dir
        )

    def __getstate__(self):
        return {**self.__dict__, "_built": None, "_key": None}


class StageTimes:
    """Wall time of each named stage of top-down inference, summed while active:

        with StageTimes() as t:
            predictor(image, boxes=boxes)
        t.seconds  # {"crop": ..., "pose network": ..., "flip": ..., "decode": ..., ...}

    The meta-architecture and the predictor mark their stages with ``stage(name)``; with no
    ``StageTimes`` active a mark costs one attribute read. On CUDA each mark synchronises the
    device (so that the time lands in the right stage); use it for measurements only.
    """

    _active = None

    def __enter__(self):
        if StageTimes._active is not None:
            raise RuntimeError("StageTimes does not nest")
        self.seconds = {}
        StageTimes._active = self
        return self

    def __exit__(self, *exc):
        StageTimes._active = None
        return False


@contextlib.contextmanager
def stage(name: str, device=None):
    """Adds the block's wall time to the active ``StageTimes`` under ``name``."""
    times = StageTimes._active
    if times is None:
        yield
        return
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        times.seconds[name] = times.seconds.get(name, 0.0) + time.perf_counter() - start
