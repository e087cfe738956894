"""Export of the multitask R-CNN (a ``GeneralizedRCNN`` config) to TorchScript or ONNX, checked
against PyTorch before anything is written: ``tools/export_model.py`` (its help text describes the
files). The top-down networks' export is the top-down project's (``pose_topdown/export.py``, on the
one ONNX writer of its runtime)."""

import contextlib
import dataclasses
import io
import os
import sys
import time
import warnings
from typing import Callable, List, Union

import numpy as np
import torch
from detectron2.modeling import build_model
from detectron2.structures import Instances

from .engine.checkpoint import checkpointer_for
from .engine.weights_check import check_trained_weights
from .shared.atomic_io import atomic_write
from .shared.errors import ConfigError, UserError
from .shared.onnx_runtime import rcnn_onnx_runner
from .shared.timing import median_seconds

__all__ = ["ExportCheckError", "ExportedRCNN", "RCNN_TOLERANCE", "export_rcnn", "rcnn_images",
           "relative_difference", "trace_rcnn"]  # fmt: skip


class ExportCheckError(UserError, ValueError):
    """The exported file does not give PyTorch's outputs: refused, nothing written."""


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


@dataclasses.dataclass
class ExportedRCNN:
    """An R-CNN traced to TorchScript or ONNX (in memory) and checked against PyTorch, by
    ``trace_rcnn``. ``run(image)``: a (3, H, W) uint8 tensor resized as DefaultPredictor does ->
    the outputs as flat tensors (``names``); ``instances(outputs)``: the same as detectron2's
    ``Instances`` before post-processing (``model.inference(..., do_postprocess=False)``)."""

    run: Callable[[torch.Tensor], List[torch.Tensor]]
    adapter: torch.nn.Module  # the eager model as traced (TracingAdapter): the reference
    names: List[str]  # the outputs' names: Instances fields (sorted), then "image_size"
    artifact: Union[bytes, torch.jit.ScriptModule]  # the ONNX file's bytes or the module
    seconds: float  # time taken to trace / export
    max_difference: float  # largest relative_difference to PyTorch over the check images
    detections: List[int]  # per check image
    outputs: List[List[torch.Tensor]]  # the exported outputs on the check images

    def instances(self, outputs: List[torch.Tensor]) -> Instances:
        inst = self.adapter.outputs_schema(outputs)[0]["instances"]
        return Instances(tuple(int(v) for v in inst.image_size), **inst.get_fields())


def trace_rcnn(
    model, images: List[torch.Tensor], onnx: bool, tolerance: float = RCNN_TOLERANCE
) -> ExportedRCNN:
    """Trace ``model`` (an eval-mode ``GeneralizedRCNN``) on ``images[0]`` to TorchScript or, with
    ``onnx``, to ONNX run by ONNX Runtime, and check it on every image of ``images`` (resized
    (3, H, W) uint8 tensors, as ``rcnn_images`` gives) against PyTorch: ``ExportCheckError``
    when any output's shape differs or a value differs by more than ``tolerance`` relative to
    the output's largest value (at least 1). Nothing is written."""

    def inference(model, inputs):
        return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]

    # (eval: torch.onnx.export restores the wrapper's own mode afterwards, a new module's is train)
    adapter = _tracing_adapter()(model, [{"image": images[0]}], inference).eval()
    names = _rcnn_output_names(model, images[0])
    decode = _codec_keypoint_decode() if onnx else contextlib.nullcontext()
    t0 = time.perf_counter()
    with decode, torch.no_grad(), warnings.catch_warnings():
        # The tracer warns at every Python-side shape use; the outputs are checked below instead.
        warnings.simplefilter("ignore")
        if onnx:
            buf = io.BytesIO()
            torch.onnx.export(
                adapter, adapter.flattened_inputs, buf, input_names=["image"],
                output_names=names, opset_version=RCNN_OPSET, dynamo=False,
                dynamic_axes={"image": {1: "height", 2: "width"},
                              **{n: {0: "detections"} for n in names[:-1]}},
            )  # fmt: skip
            artifact = buf.getvalue()
            exported = rcnn_onnx_runner(artifact)
        else:
            exported = artifact = torch.jit.trace(
                adapter, adapter.flattened_inputs, check_trace=False
            )
        seconds = time.perf_counter() - t0
        err, worst, counts, outputs = 0.0, "", [], []
        for x in images:
            got, ref = exported(x), adapter(x)
            outputs.append(got)
            shapes = [tuple(t.shape) for t in got], [tuple(t.shape) for t in ref]
            if shapes[0] != shapes[1]:
                raise ExportCheckError(
                    f"the exported R-CNN's outputs {shapes[0]} differ from PyTorch's {shapes[1]}"
                )
            for name, a, b in zip(names, got, ref):
                diff = relative_difference(a, b)
                if diff > err:
                    err, worst = diff, name
            counts.append(len(ref[0]))
    if err > tolerance:
        raise ExportCheckError(
            f"the exported R-CNN differs from PyTorch by {err:.1e} relative to its outputs"
            f" (> {tolerance}), most in {worst}"
        )
    return ExportedRCNN(exported, adapter, names, artifact, seconds, err, counts, outputs)


def export_rcnn(cfg, output: str) -> str:
    """Trace the R-CNN to TorchScript (``*.ts``) or ONNX (``*.onnx``), check the file on the
    test images against PyTorch, write it; the summary line."""
    model = build_model(cfg).eval()
    checkpointer = checkpointer_for(cfg)(model)
    checkpointer.load(cfg.MODEL.WEIGHTS)
    check_trained_weights(model, checkpointer, cfg.MODEL.WEIGHTS, flag=None)  # no random heads
    images = rcnn_images(cfg)
    onnx = output.endswith(".onnx")
    traced = trace_rcnn(model, images, onnx)
    adapter, names = traced.adapter, traced.names
    with torch.no_grad():
        eager_ms = 1000 * median_seconds(lambda: adapter(images[0]), 5)
        exported_ms = 1000 * median_seconds(lambda: traced.run(images[0]), 5)
    agree = ""
    offset_head = cfg.MODEL.ROI_KEYPOINT_HEAD.NAME == "KeypointOffsetHead"
    if onnx and "pred_keypoints" in names and not offset_head:
        # How often the file's decode gives detectron2's own keypoints (the model as PyTorch runs
        # it): the same up to the codec's search window.
        k = names.index("pred_keypoints")
        same = total = 0
        with torch.no_grad():
            for x, got in zip(images, traced.outputs):
                ours, d2 = got[k], adapter(x)[k]
                same += int(((ours[..., :2] - d2[..., :2]).abs().amax(-1) <= 1e-3).sum())
                total += d2.shape[0] * d2.shape[1]
        agree = f", keypoints equal to detectron2's decode {same}/{total}"
    with atomic_write(output, "wb") as f:
        if onnx:
            f.write(traced.artifact)
        else:
            torch.jit.save(traced.artifact, f)
    mb = os.path.getsize(output) / 2**20
    kind, runner = ("ONNX", "onnxruntime") if onnx else ("TorchScript", "traced")
    return (
        f"export_model: GeneralizedRCNN ({cfg.MODEL.ROI_HEADS.NAME},"
        f" {cfg.MODEL.ROI_KEYPOINT_HEAD.NAME}) -> {output} ({kind}, {mb:.1f} MB, exported in"
        f" {traced.seconds:.1f} s); on {len(images)} {cfg.DATASETS.TEST[0]} images"
        f" ({'/'.join(map(str, traced.detections))} detections) max relative difference to"
        f" PyTorch {traced.max_difference:.1e}{agree};"
        f" eager {eager_ms:.0f} ms/img, {runner} {exported_ms:.0f} ms/img on"
        f" {torch.get_num_threads()} threads"
    )


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max(1, max |b|); 0 for empty outputs."""
    if not b.numel():
        return 0.0
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1))
