"""ONNX Runtime sessions of the exported networks of both stages (``tools/export_model.py``),
on the CPU provider with the same options everywhere."""

from typing import Callable, List, Optional

import torch

__all__ = ["cpu_session", "rcnn_onnx_runner"]


def cpu_session(model, threads: Optional[int] = None):
    """An ``onnxruntime.InferenceSession`` of ``model`` (an ONNX file's path or its bytes) on the
    CPU provider, ``threads`` intra-op threads (default ``torch.get_num_threads()``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # No busy-waiting after a run: ORT's spinning threads would take the cores from the torch
    # work between two runs (cropping, decoding: 2-3x slower with spinning on).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def rcnn_onnx_runner(model, threads: Optional[int] = None) -> Callable[[torch.Tensor], List]:
    """An exported multitask R-CNN (an ONNX file's path or its bytes) as a function of one
    (3, H, W) uint8 image tensor returning its outputs as tensors, in the order and meaning of
    the TorchScript module's (boxes, classes, heatmaps, keypoints, masks, scores, size)."""
    session = cpu_session(model, threads)
    name = session.get_inputs()[0].name
    return lambda x: [torch.from_numpy(o) for o in session.run(None, {name: x.numpy()})]
