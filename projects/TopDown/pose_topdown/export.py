"""Export of a top-down pose network to an ONNX file, checked against PyTorch and timed before it
is written (``tools/export_model.py``); the file runs with ``TEST.TOPDOWN.BACKEND onnxruntime
TEST.TOPDOWN.ONNX_FILE <file>``. The graph is written by the runtime's one ONNX writer
(``runtime.export_onnx``), which the in-memory onnxruntime backend uses too."""

import io
import os
import time

import torch
from detectron2.modeling import build_model

from multitask_pose.engine.checkpoint import checkpointer_for
from multitask_pose.engine.weights_check import check_trained_weights
from multitask_pose.shared.atomic_io import atomic_write
from multitask_pose.shared.timing import median_seconds

from .engine import TopDownCheckpointer
from .runtime import OnnxPoseNet, check_outputs, example_inputs, export_onnx

__all__ = ["export_pose_net"]


def export_pose_net(cfg, output: str, batch: int = 8) -> str:
    """Export, check and time; returns the summary line."""
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
