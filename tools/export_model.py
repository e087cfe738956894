#!/usr/bin/env python
"""Export a trained top-down pose network (projects/TopDown) to ONNX, or the multitask R-CNN to
ONNX or TorchScript, checked against PyTorch.

    python tools/export_model.py \\
        --config-file projects/TopDown/configs/Synthetic/hrnet_w18_small_synth_basic.yaml \\
        --output output/hrnet_w18_small.onnx MODEL.WEIGHTS output/.../model_final.pth

Writes the network's prediction heatmaps as an ONNX graph (opset 17): input ``images`` (N, 3, H, W),
normalised as the config's PIXEL_MEAN/STD in its INPUT.FORMAT, plus ``cues`` (N, C, H, W) for a
network with an instance cue; output ``heatmaps`` (N, K, h, w); N dynamic. Cropping, flip test,
decoding and NMS stay in Python (``TopDownPoseEstimator``): run the file there with
``TEST.TOPDOWN.BACKEND onnxruntime TEST.TOPDOWN.ONNX_FILE <file>``, which refuses a file exported
from other weights (their sha256 is in the file's metadata). Before the file is written, ONNX
Runtime's output is compared with PyTorch's on a random batch (relative difference at most
``topdown.runtime.TOLERANCE``); the last line printed is a one-line summary with that difference
and both backends' speed at ``--batch``. Trailing ``KEY VALUE`` pairs override the config. Every
top-down network exports. An empty MODEL.WEIGHTS, or a checkpoint without weights for part of the
model (e.g. the keypoint head), is refused in one line naming the modules: the file would
predict noise.

The multitask R-CNN (a ``GeneralizedRCNN`` config) exports to TorchScript (``--output *.ts``) or
ONNX (``--output *.onnx``, opset 17, the TorchScript-based exporter, run in ONNX Runtime):
``model.inference(do_postprocess=False)`` traced through detectron2's ``TracingAdapter`` on the
first image of DATASETS.TEST[0], resized as ``DefaultPredictor`` resizes (shortest edge
MIN_SIZE_TEST, at most MAX_SIZE_TEST). Input: one ``uint8`` (3, H, W) image in INPUT.FORMAT at that
scale, any H and W (ONNX: dynamic axes ``height``, ``width``); outputs, in this order:
``pred_boxes`` (N, 4), ``pred_classes`` (N,), the keypoint heatmaps (N, K, S, S), with
KeypointOffsetHead its offsets (N, 2K, S, S), ``pred_keypoints`` (N, K, 3), ``pred_masks`` (N, 1,
M, M: the RoI's mask probabilities, not pasted), ``scores`` (N,) and the image size (2,); boxes and
keypoints in the resized image's pixels; N dynamic, 0 included. Keypoints are decoded by the traced
graph: KeypointOffsetHead's vectorised decode (``RoIHeatmapCodec``, its search window sized from
each run's boxes) as in PyTorch; detectron2's head keeps detectron2's scripted decode in
TorchScript and, in ONNX (which cannot express it), uses the same vectorised decode, equal to
detectron2's up to its search window (the summary counts the keypoints where they agree). Before
the file is written it is run on up to 4 images of that dataset and must give PyTorch's outputs (at
most ``RCNN_TOLERANCE`` apart, relative to each output's largest value).
"""

import multitask_pose  # noqa: F401  (first: registers the datasets, filters a warning)

# isort: split
import argparse
import contextlib
import io
import os
import sys
import time
import warnings

import numpy as np
import torch
from detectron2.modeling import build_model

from multitask_pose.engine.checkpoint import checkpointer_for
from multitask_pose.engine.cli import (
    ConfigError,
    UserError,
    argument_parser,
    entry_point,
    load_config,
)
from multitask_pose.engine.weights_check import check_trained_weights, check_weights_given
from multitask_pose.shared.atomic_io import atomic_write
from multitask_pose.shared.onnx_runtime import rcnn_onnx_runner
from multitask_pose.shared.timing import median_seconds


class ExportCheckError(UserError, ValueError):
    """The exported file does not give PyTorch's outputs: refused, nothing written."""


def build_parser():
    parser = argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="a top-down or R-CNN config")
    parser.add_argument(
        "--output", required=True, help="the .onnx to write (or .ts: TorchScript, R-CNN only)"
    )
    parser.add_argument("--batch", type=int, default=8, help="crops per call in the timing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def load_cfg(args):
    from topdown import add_topdown_config

    # The R-CNN's keys too: both stages' configs export.
    cfg = load_config(add_topdown_config(multitask_pose.get_multitask_cfg()), args.config_file,
                      args.opts)  # fmt: skip
    rcnn = cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    torchscript = args.output.endswith((".ts", ".pt"))
    if not args.output.endswith((".ts", ".pt", ".onnx")):
        raise ConfigError(
            f"--output {args.output}: give a file ending in .onnx (ONNX) or .ts (TorchScript,"
            " the R-CNN only)"
        )
    if not rcnn and cfg.MODEL.META_ARCHITECTURE != "TopDownPoseEstimator":
        raise ConfigError(
            f"{args.config_file} is a {cfg.MODEL.META_ARCHITECTURE} config: export_model.py"
            " exports the top-down networks and the multitask R-CNN"
        )
    if rcnn and cfg.TEST.AUG.ENABLED:
        # The file holds model.inference on one image at one scale; the test-time augmentation
        # (GeneralizedRCNNWithTTA: scales, flips, merged keypoints) runs around it in Python.
        raise ConfigError(
            "TEST.AUG.ENABLED (test-time augmentation) does not export: export with it off and"
            " run the file once per scale and flip"
        )
    if not rcnn and torchscript:
        raise ConfigError("top-down networks export to ONNX: give an --output ending in .onnx")
    check_weights_given(cfg.MODEL.WEIGHTS, flag=None)
    if args.batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {args.batch}")
    cfg.MODEL.DEVICE = "cpu"  # ONNX Runtime's CPU provider; the R-CNN is traced on the CPU
    cfg.TEST.TOPDOWN.BOX_SOURCE = "gt"  # the network alone: no detector to load
    cfg.freeze()
    return cfg


def export(cfg, output: str, batch: int = 8) -> str:
    """Export, check and time; returns the summary line."""
    from topdown.engine import TopDownCheckpointer
    from topdown.runtime import OnnxPoseNet, check_outputs, example_inputs, export_onnx

    model = build_model(cfg).eval()
    checkpointer = checkpointer_for(cfg, TopDownCheckpointer)(model)
    checkpointer.load(cfg.MODEL.WEIGHTS)
    check_trained_weights(model, checkpointer, cfg.MODEL.WEIGHTS, flag=None)  # no random heads
    net, size = model.pose_net, tuple(cfg.MODEL.TOPDOWN.INPUT_SIZE)
    t0 = time.perf_counter()
    buf = io.BytesIO()
    export_onnx(net, buf, size)
    seconds = time.perf_counter() - t0
    session = OnnxPoseNet(buf.getvalue())
    err = check_outputs(session, net, size, f"ONNX Runtime on {output}")
    images, cues = example_inputs(net, size, batch=batch, seed=1)
    with torch.inference_mode():
        eager_ms = 1000 * median_seconds(lambda: net(images, cues), 5)
    onnx_ms = 1000 * median_seconds(lambda: session(images, cues), 5)
    with atomic_write(output, "wb") as f:
        f.write(buf.getvalue())
    mb = os.path.getsize(output) / 2**20
    return (
        f"export_model: {cfg.MODEL.TOPDOWN.POSE_NET} {size[0]}x{size[1]} -> {output} ({mb:.1f} MB,"
        f" exported in {seconds:.1f} s); max relative difference to PyTorch {err:.1e};"
        f" batch {batch}: eager {eager_ms / batch:.1f} ms/crop, onnxruntime"
        f" {onnx_ms / batch:.1f} ms/crop ({eager_ms / onnx_ms:.2f}x) on"
        f" {torch.get_num_threads()} threads"
    )


# Largest difference of the exported R-CNN from PyTorch, relative to each output's largest value
# (at least 1): heatmap logits reach about 60 and boxes the image size; ONNX Runtime's kernels
# differ from torch's by about 1e-5 of that (TorchScript, about 1e-7).
RCNN_TOLERANCE = 1e-4
RCNN_OPSET = 17  # RoiAlign with half_pixel (detectron2's aligned=True) needs 16


def _tracing_adapter():
    """detectron2's ``TracingAdapter``. Its package's ``__init__`` imports caffe2, which recent
    torch lacks: the ``flatten`` module is loaded under a bare package of the same path."""
    import importlib
    import types

    import detectron2

    try:
        from detectron2.export.flatten import TracingAdapter
    except ImportError:
        pkg = types.ModuleType("detectron2.export")
        pkg.__path__ = [os.path.join(detectron2.__path__[0], "export")]
        sys.modules["detectron2.export"] = pkg
        TracingAdapter = importlib.import_module("detectron2.export.flatten").TracingAdapter
    return TracingAdapter


def rcnn_images(cfg, count=4):
    """Up to ``count`` images of DATASETS.TEST[0] as the traced model takes them: (3, H, W)
    uint8 in INPUT.FORMAT, resized as DefaultPredictor does."""
    from detectron2.data import DatasetCatalog
    from detectron2.data import transforms as T

    from multitask_pose.data.image_check import read_image_checked

    if not cfg.DATASETS.TEST:
        raise ConfigError("DATASETS.TEST is empty: the R-CNN is traced and checked on its images")
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    out = []
    for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])[:count]:
        img = read_image_checked(d["file_name"], format=cfg.INPUT.FORMAT)
        img = resize.get_transform(img).apply_image(img)
        out.append(torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1))))
    return out


@contextlib.contextmanager
def _codec_keypoint_decode():
    """detectron2's heatmap decode (``heatmaps_to_keypoints``, called by its keypoint heads'
    inference) replaced by ``RoIHeatmapCodec.decode`` while the R-CNN is exported to ONNX:
    detectron2's is scripted, one RoI at a time at each box's size, which ONNX cannot express;
    ours is vectorised and traceable, and gives the same keypoints up to its search window (see
    ``RoIHeatmapCodec.decode``). ``KeypointOffsetHead`` decodes with the codec anyway."""
    from detectron2.modeling.roi_heads import keypoint_head

    from multitask_pose.codecs import RoIHeatmapCodec

    def decode(maps, rois):
        xy, score = RoIHeatmapCodec(maps.shape[-1]).decode(maps, rois)
        # detectron2's (x, y, logit, probability) columns; its caller keeps x, y, probability
        return torch.cat([xy, score[..., None], score[..., None]], dim=2)

    original = keypoint_head.heatmaps_to_keypoints
    keypoint_head.heatmaps_to_keypoints = decode
    try:
        yield
    finally:
        keypoint_head.heatmaps_to_keypoints = original


def _rcnn_output_names(model, image):
    """The flattened outputs' names: the Instances fields in the adapter's (sorted) order, then
    the image size."""
    with torch.no_grad():
        inst = model.inference([{"image": image}], do_postprocess=False)[0]
    return sorted(inst.get_fields()) + ["image_size"]


def export_rcnn(cfg, output: str) -> str:
    """Trace the R-CNN to TorchScript (``*.ts``) or ONNX (``*.onnx``), check the file on the
    test images against PyTorch, write it; the summary line."""
    model = build_model(cfg).eval()
    checkpointer = checkpointer_for(cfg)(model)
    checkpointer.load(cfg.MODEL.WEIGHTS)
    check_trained_weights(model, checkpointer, cfg.MODEL.WEIGHTS, flag=None)  # no random heads
    images = rcnn_images(cfg)
    onnx = output.endswith(".onnx")

    def inference(model, inputs):
        return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]

    # (eval: torch.onnx.export restores the wrapper's own mode afterwards, a new module's is train)
    adapter = _tracing_adapter()(model, [{"image": images[0]}], inference).eval()
    decode = _codec_keypoint_decode() if onnx else contextlib.nullcontext()
    t0 = time.perf_counter()
    with decode, torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at every Python-side shape use; the outputs are checked below instead.
        warnings.simplefilter("ignore")
        if onnx:
            names = _rcnn_output_names(model, images[0])
            buf = io.BytesIO()
            torch.onnx.export(
                adapter, adapter.flattened_inputs, buf, input_names=["image"],
                output_names=names, opset_version=RCNN_OPSET, dynamo=False,
                dynamic_axes={"image": {1: "height", 2: "width"},
                              **{n: {0: "detections"} for n in names[:-1]}},
            )  # fmt: skip
            exported = rcnn_onnx_runner(buf.getvalue())
        else:
            exported = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
        seconds = time.perf_counter() - t0
        err, counts, outputs = 0.0, [], []
        for x in images:
            got, ref = exported(x), adapter(x)
            outputs.append(got)
            shapes = [tuple(t.shape) for t in got], [tuple(t.shape) for t in ref]
            if shapes[0] != shapes[1]:
                raise ExportCheckError(
                    f"the exported R-CNN's outputs {shapes[0]} differ from PyTorch's {shapes[1]}"
                )
            err = max([err] + [_relative_difference(a, b) for a, b in zip(got, ref)])
            counts.append(len(ref[0]))
        eager_ms = 1000 * median_seconds(lambda: adapter(images[0]), 5)
        exported_ms = 1000 * median_seconds(lambda: exported(images[0]), 5)
    if err > RCNN_TOLERANCE:
        raise ExportCheckError(
            f"the exported R-CNN differs from PyTorch by {err:.1e} relative to its outputs"
            f" (> {RCNN_TOLERANCE})"
        )
    agree = ""
    offset_head = cfg.MODEL.ROI_KEYPOINT_HEAD.NAME == "KeypointOffsetHead"
    if onnx and "pred_keypoints" in names and not offset_head:
        # How often the file's decode gives detectron2's own keypoints (the model as PyTorch runs
        # it): the same up to the codec's search window.
        k = names.index("pred_keypoints")
        same = total = 0
        with torch.no_grad():
            for x, got in zip(images, outputs):
                ours, d2 = got[k], adapter(x)[k]
                same += int(((ours[..., :2] - d2[..., :2]).abs().amax(-1) <= 1e-3).sum())
                total += d2.shape[0] * d2.shape[1]
        agree = f", keypoints equal to detectron2's decode {same}/{total}"
    with atomic_write(output, "wb") as f:
        if onnx:
            f.write(buf.getvalue())
        else:
            torch.jit.save(exported, f)
    mb = os.path.getsize(output) / 2**20
    kind, runner = ("ONNX", "onnxruntime") if onnx else ("TorchScript", "traced")
    return (
        f"export_model: GeneralizedRCNN ({cfg.MODEL.ROI_HEADS.NAME},"
        f" {cfg.MODEL.ROI_KEYPOINT_HEAD.NAME}) -> {output} ({kind}, {mb:.1f} MB, exported in"
        f" {seconds:.1f} s); on {len(images)} {cfg.DATASETS.TEST[0]} images"
        f" ({'/'.join(map(str, counts))} detections) max relative difference to PyTorch"
        f" {err:.1e}{agree};"
        f" eager {eager_ms:.0f} ms/img, {runner} {exported_ms:.0f} ms/img on"
        f" {torch.get_num_threads()} threads"
    )


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(1, max |b|); 0 for empty outputs."""
    if not b.numel():
        return 0.0
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1))


@entry_point("export_model")
def main(argv=None):
    args = parse_args(argv)
    cfg = load_cfg(args)
    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
        print(export_rcnn(cfg, args.output))
        return 0
    print(export(cfg, args.output, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
