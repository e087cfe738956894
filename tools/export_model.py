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
``pose_topdown.runtime.TOLERANCE``); the last line printed is a one-line summary with that
difference and both backends' speed at ``--batch``. Trailing ``KEY VALUE`` pairs override the
config. Every top-down network exports. An empty MODEL.WEIGHTS, or a checkpoint without weights for
part of the model (e.g. the keypoint head), is refused in one line naming the modules: the file
would predict noise.

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
import sys

from pose_topdown import export


def build_parser():
    return export.build_parser(__doc__.split("\n\n")[0])


def main(argv=None):
    """The tool (pose_topdown/export.py)."""
    return export.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
