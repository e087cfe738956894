#!/usr/bin/env python
r"""Run a trained model on images: draw masks and skeletons, write COCO-format results.

    python tools/demo.py --config-file configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml \
        --input datasets/samples/coco --output output/demo MODEL.WEIGHTS output/.../model_final.pth
    python tools/demo.py --topdown \
        --config-file projects/TopDown/configs/Synthetic/hrnet_w18_small_synth_rcnn_boxes.yaml \
        --input ... --output ... MODEL.WEIGHTS output/.../hrnet/model_final.pth

``--topdown`` runs a top-down config (projects/TopDown) through ``TopDownPredictor``: person boxes
from its detector (TEST.TOPDOWN.BOX_SOURCE "detector"), or with ``--dataset`` from that dataset's
annotations ("gt") or detection file ("file"), or for photos (no ``--dataset``) from the file
tools/detect_persons.py wrote over the same ``--input`` folder (BOX_SOURCE "file",
TEST.TOPDOWN.DET_FILE; a file made on other images is refused):

    python tools/detect_persons.py --config-file <detector.yaml> --input photos --output dets.json
    python tools/demo.py --topdown --config-file <top-down.yaml> --input photos --output out
    (each with MODEL.WEIGHTS <its model_final.pth>; the second also with
    TEST.TOPDOWN.BOX_SOURCE file TEST.TOPDOWN.DET_FILE dets.json)

Paths: ``--config-file`` and MODEL.WEIGHTS are taken from the current directory (detectron2's
rule; ``_BASE_`` from the yaml that names it); a relative TEST.TOPDOWN.DETECTOR_CONFIG,
DETECTOR_WEIGHTS or DET_FILE from the current directory and, when no such file is there, from
the repository root (where the shipped configs' paths start), so the command works from any
directory.

Thresholds: ``--confidence-threshold`` keeps persons scoring at least this (it sets
MODEL.ROI_HEADS.SCORE_THRESH_TEST, and with ``--topdown`` TEST.TOPDOWN.DET_SCORE_THRESH, in place
of the config's: the run prints which). ``--keypoint-threshold`` draws a keypoint, and the limbs
between two drawn ones, when its score is above it; its default depends on what the model's
keypoint scores are (the R-CNN's softmax probabilities are small, the top-down heatmap peaks near
1). Both only filter what is drawn and written; they do not change the model.

The model must be trained: an empty MODEL.WEIGHTS, or a checkpoint without weights for part of
the model (e.g. an ImageNet backbone alone), is refused naming the key; ``--allow-random-weights``
runs anyway, for smoke tests.

``--input`` takes image files and/or folders. Files of a folder that are not images (by
extension) are skipped and counted; damaged images (empty, cut short, not an image, not
decodable) stop the run before it starts, naming the file, unless DATALOADER.SKIP_DAMAGED_IMAGES
True skips them (counted, each with its reason): the rule of tools/detect_persons.py and of
training (multitask_pose/data/image_folder.py). Writes one drawn image per input into ``--output``
and ``results.json`` there: a COCO results list (boxes xywh, RLE masks, keypoints, scores), each
entry with the ``file_name`` it came from and, when ``--dataset`` names a registered dataset that
contains the image, that dataset's ``image_id`` (otherwise the input's position). Every results
file gets its record, ``<results>.meta.json`` (multitask_pose/evaluation/results_record.py): the
dataset or input, the model type and what its keypoint scores are.

``--video-input FILE`` runs on every frame of a video (OpenCV reads it) and writes the drawn
video, ``<stem>_pred.mp4`` (same size and frame rate, MPEG-4), and ``<stem>_results.json``: the
COCO results list with ``image_id`` = ``frame`` = the frame's index and ``time_s`` its time.
``--webcam`` does the same on camera 0 until Ctrl-C or ``--max-frames``, into ``webcam_pred.mp4``
and ``webcam_results.json``. Both are written whole or not at all; the progress bar shows frames
per second. A file OpenCV cannot open or decode, or a machine without a camera, is an error
naming it.

    python tools/demo.py --config-file ... --video-input walk.mp4 --output output/demo_video \
        MODEL.WEIGHTS output/.../model_final.pth
"""

import sys

from multitask_pose.commands import demo


def build_parser():
    return demo.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/demo.py)."""
    return demo.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
