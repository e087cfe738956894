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
top-down network exports; the multitask R-CNN does not yet (the ecosystem issue extends this).
"""

import argparse
import io
import os
import sys
import time

import numpy as np
import torch
from detectron2.modeling import build_model

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.engine.checkpoint import checkpointer_for
from multitask_pose.shared.atomic_io import atomic_write


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="a top-down config")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
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
    if cfg.MODEL.META_ARCHITECTURE != "TopDownPoseEstimator":
        raise ValueError(
            f"{args.config_file} is a {cfg.MODEL.META_ARCHITECTURE} config: export_model.py"
            " exports the top-down networks (projects/TopDown/configs) only for now"
        )
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("no MODEL.WEIGHTS: give the trained checkpoint (MODEL.WEIGHTS <file>)")
    if not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise FileNotFoundError(f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS}: no such file")
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    cfg.MODEL.DEVICE = "cpu"  # ONNX Runtime's CPU provider
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


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_cfg(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"export_model: {e}", file=sys.stderr)
        return 2
    print(export(cfg, args.output, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
