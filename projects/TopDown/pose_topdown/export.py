"""``tools/export_model.py`` (its help text describes the files): a top-down pose network to an
ONNX file, checked against PyTorch and timed before it is written (it runs with
``TEST.TOPDOWN.BACKEND onnxruntime TEST.TOPDOWN.ONNX_FILE <file>``), or the multitask R-CNN through
``multitask_pose.export``. The top-down graph is written by the runtime's one ONNX writer
(``runtime.export_onnx``), which the in-memory onnxruntime backend uses too. The tool takes either
stage's config, so it lives here, where both stages' keys are known."""

import argparse
import io
import os
import time

import torch
from detectron2.modeling import build_model

from multitask_pose.config import get_multitask_cfg
from multitask_pose.engine.checkpoint import checkpointer_for
from multitask_pose.engine.cli import ConfigError, argument_parser, entry_point, load_config
from multitask_pose.engine.weights_check import check_trained_weights, check_weights_given
from multitask_pose.export import export_rcnn
from multitask_pose.shared.atomic_io import atomic_write
from multitask_pose.shared.timing import median_seconds

from .config import add_topdown_config
from .engine import TopDownCheckpointer
from .runtime import OnnxPoseNet, check_outputs, example_inputs, export_onnx

__all__ = ["build_parser", "export_pose_net", "load_cfg", "main"]


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


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    parser = argument_parser(doc)
    parser.add_argument("--config-file", required=True, help="a top-down or R-CNN config")
    parser.add_argument(
        "--output", required=True, help="the .onnx to write (or .ts: TorchScript, R-CNN only)"
    )
    parser.add_argument("--batch", type=int, default=8, help="crops per call in the timing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def load_cfg(args):
    """The config of ``args``, checked for export (one line naming the culprit otherwise)."""
    # The R-CNN's keys too: both stages' configs export.
    cfg = load_config(add_topdown_config(get_multitask_cfg()), args.config_file,
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


@entry_point("export_model")
def main(argv=None, parser=None):
    """The tool (``parser``: the script's, for its help): either stage's export, checked; the
    summary line printed."""
    args = (parser or build_parser()).parse_args(argv)
    cfg = load_cfg(args)
    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
        print(export_rcnn(cfg, args.output))
        return 0
    print(export_pose_net(cfg, args.output, args.batch))
    return 0
