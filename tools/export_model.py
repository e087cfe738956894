#!/usr/bin/env python
"""Export a trained top-down pose network (projects/TopDown) to ONNX, checked against PyTorch.

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
top-down network exports.

The multitask R-CNN (a ``GeneralizedRCNN`` config) exports to TorchScript (``--output *.ts``):
``model.inference(do_postprocess=False)`` traced through detectron2's ``TracingAdapter`` on the
first image of DATASETS.TEST[0], resized as ``DefaultPredictor`` resizes (shortest edge
MIN_SIZE_TEST, at most MAX_SIZE_TEST). Input: one ``uint8`` (3, H, W) image in INPUT.FORMAT at
that scale, any H and W; outputs, in this order: ``pred_boxes`` (N, 4), ``pred_classes`` (N,),
the keypoint heatmaps (N, K, S, S), with KeypointOffsetHead its offsets (N, 2K, S, S),
``pred_keypoints`` (N, K, 3), ``pred_masks`` (N, 1, M, M: the RoI's mask logits, not pasted),
``scores`` (N,) and the image size (2,); boxes and keypoints in the resized image's pixels.
Before the file is written the traced module is run on up to 4 images of that dataset and must
give PyTorch's outputs (at most ``RCNN_TOLERANCE`` apart). Not yet: ONNX for the R-CNN
(detectron2's keypoint decode, ``heatmaps_to_keypoints``, is scripted with indexing ONNX cannot
express) and the KeypointOffsetHead (its decode's window is sized from the boxes at run time).
"""

import argparse
import io
import os
import sys
import time
import warnings

import numpy as np
import torch
from detectron2.modeling import build_model

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.engine.checkpoint import checkpointer_for
from multitask_pose.shared.atomic_io import atomic_write


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="a top-down or R-CNN config")
    parser.add_argument("--output", required=True, help="the .onnx (.ts for the R-CNN) to write")
    parser.add_argument("--batch", type=int, default=8, help="crops per call in the timing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def load_cfg(args):
    from topdown import add_topdown_config

    if not os.path.isfile(args.config_file):
        raise FileNotFoundError(f"--config-file {args.config_file}: no such file")
    # The R-CNN's keys too, so that an R-CNN config gets the clear refusal below.
    cfg = add_topdown_config(multitask_pose.get_multitask_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    rcnn = cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
    torchscript = args.output.endswith((".ts", ".pt"))
    if rcnn and not torchscript:
        raise ValueError(
            f"{args.config_file} is a multitask R-CNN config: it exports to TorchScript (an"
            " --output ending in .ts); ONNX is not offered yet (detectron2's keypoint decode has"
            " no ONNX form)"
        )
    if not rcnn and cfg.MODEL.META_ARCHITECTURE != "TopDownPoseEstimator":
        raise ValueError(
            f"{args.config_file} is a {cfg.MODEL.META_ARCHITECTURE} config: export_model.py"
            " exports the top-down networks and the multitask R-CNN"
        )
    if rcnn and cfg.MODEL.KEYPOINT_ON and cfg.MODEL.ROI_KEYPOINT_HEAD.NAME == "KeypointOffsetHead":
        # Its decode sizes its search window from the boxes (int(...) of a tensor): a trace would
        # freeze the traced image's window for every later image.
        raise ValueError(
            "MODEL.ROI_KEYPOINT_HEAD.NAME KeypointOffsetHead does not export yet: its decode's"
            " search window depends on the box sizes, which tracing would freeze"
        )
    if not rcnn and torchscript:
        raise ValueError("top-down networks export to ONNX: give an --output ending in .onnx")
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("no MODEL.WEIGHTS: give the trained checkpoint (MODEL.WEIGHTS <file>)")
    if not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise FileNotFoundError(f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS}: no such file")
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    cfg.MODEL.DEVICE = "cpu"  # ONNX Runtime's CPU provider; the R-CNN is traced on the CPU
    cfg.TEST.TOPDOWN.BOX_SOURCE = "gt"  # the network alone: no detector to load
    cfg.freeze()
    return cfg


def _median_ms(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def export(cfg, output: str, batch: int = 8) -> str:
    """Export, check and time; returns the summary line."""
    from topdown.engine import TopDownCheckpointer
    from topdown.runtime import OnnxPoseNet, check_outputs, example_inputs, export_onnx

    model = build_model(cfg).eval()
    checkpointer_for(cfg, TopDownCheckpointer)(model).load(cfg.MODEL.WEIGHTS)
    net, size = model.pose_net, tuple(cfg.MODEL.TOPDOWN.INPUT_SIZE)
    t0 = time.perf_counter()
    buf = io.BytesIO()
    export_onnx(net, buf, size)
    seconds = time.perf_counter() - t0
    session = OnnxPoseNet(buf.getvalue())
    err = check_outputs(session, net, size, f"ONNX Runtime on {output}")
    images, cues = example_inputs(net, size, batch=batch, seed=1)
    with torch.inference_mode():
        eager_ms = _median_ms(lambda: net(images, cues))
    onnx_ms = _median_ms(lambda: session(images, cues))
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


RCNN_TOLERANCE = 1e-4  # largest absolute difference of the traced R-CNN from PyTorch


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
        raise ValueError("DATASETS.TEST is empty: the R-CNN is traced and checked on its images")
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    out = []
    for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])[:count]:
        img = read_image_checked(d["file_name"], format=cfg.INPUT.FORMAT)
        img = resize.get_transform(img).apply_image(img)
        out.append(torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1))))
    return out


def export_rcnn(cfg, output: str) -> str:
    """Trace the R-CNN to TorchScript, check it on the test images, write it; the summary."""
    model = build_model(cfg).eval()
    checkpointer_for(cfg)(model).load(cfg.MODEL.WEIGHTS)
    images = rcnn_images(cfg)

    def inference(model, inputs):
        return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]

    adapter = _tracing_adapter()(model, [{"image": images[0]}], inference)
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at every Python-side shape use; the outputs are checked below instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    seconds = time.perf_counter() - t0
    err, counts = 0.0, []
    with torch.no_grad():
        for x in images:
            got, ref = traced(x), adapter(x)
            shapes = [tuple(t.shape) for t in got], [tuple(t.shape) for t in ref]
            if shapes[0] != shapes[1]:
                raise ValueError(
                    f"the traced R-CNN's outputs {shapes[0]} differ from PyTorch's {shapes[1]}"
                )
            err = max(
                [err]
                + [
                    float((a.float() - b.float()).abs().max())
                    for a, b in zip(got, ref)
                    if a.numel()
                ]
            )
            counts.append(len(ref[0]))
        eager_ms = _median_ms(lambda: adapter(images[0]))
        traced_ms = _median_ms(lambda: traced(images[0]))
    if err > RCNN_TOLERANCE:
        raise ValueError(f"the traced R-CNN differs from PyTorch by {err:.1e} (> {RCNN_TOLERANCE})")
    with atomic_write(output, "wb") as f:
        torch.jit.save(traced, f)
    mb = os.path.getsize(output) / 2**20
    return (
        f"export_model: GeneralizedRCNN ({cfg.MODEL.ROI_HEADS.NAME},"
        f" {cfg.MODEL.ROI_KEYPOINT_HEAD.NAME}) -> {output} (TorchScript, {mb:.1f} MB, traced in"
        f" {seconds:.1f} s); on {len(images)} {cfg.DATASETS.TEST[0]} images"
        f" ({'/'.join(map(str, counts))} detections) max difference to PyTorch {err:.1e};"
        f" eager {eager_ms:.0f} ms/img, traced {traced_ms:.0f} ms/img on"
        f" {torch.get_num_threads()} threads"
    )


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_cfg(args)
        if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
            print(export_rcnn(cfg, args.output))
            return 0
    except (FileNotFoundError, ValueError) as e:
        print(f"export_model: {e}", file=sys.stderr)
        return 2
    print(export(cfg, args.output, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
