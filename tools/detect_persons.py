#!/usr/bin/env python
"""Run any detectron2 detector over a registered dataset or a folder of images and write the
person detections as a COCO detection-results json, the box file of the top-down stage.

    python tools/detect_persons.py --dataset synth_people_basic_val \\
        --config-file configs/Synthetic/multitask_rcnn_R_18_FPN_synth_basic.yaml \\
        --output output/dets/basic_val.json \\
        MODEL.WEIGHTS output/main_job/train/model_final.pth
    python tools/detect_persons.py --config-file ... --input images/ --output dets.json --masks

Keeps the person class (the class named "person" in the config's test dataset, else class 0):
boxes xywh, scores, with ``--masks`` RLE masks (the detector needs a mask head), and the
keypoints when the detector predicts them (the "keypoints" hint source of the top-down stage
reads them); at most ``--topk`` per image (100; 20 in the OKS team's set-up), boxes whose shorter
side is at least ``--min-size`` pixels (32 in HintPose's), scores at least ``--score-thresh``.
Image ids: the dataset's, or for ``--input`` the position in the sorted list of image files (and
the file names are listed in ``<output>.images.json``). Files of a folder that are not images
(by extension) are skipped and counted; damaged images (empty, cut short, not an image, not
decodable) stop the run before it starts, naming the file, unless DATALOADER.SKIP_DAMAGED_IMAGES
True skips them (counted, each with its reason): the rule of tools/demo.py and of training
(multitask_pose/data/image_folder.py). A progress bar; a killed or failed run continues with
``--resume`` (refused if the input changed) or starts again with ``--overwrite``; an existing
output or an unfinished run's partial files need one of them. The output is written
atomically and loads in the top-down stage unchanged (TEST.TOPDOWN.DET_FILE; for a folder,
``tools/demo.py --topdown`` on the same ``--input``), with its record ``<output>.meta.json``
(multitask_pose/evaluation/results_record.py: the dataset or the folder's absolute path, the
detector, and its keypoint score scale when it predicts keypoints). ``--num-gpus N``
(and ``--num-machines``, ``--machine-rank``, ``--dist-url`` as detectron2's launcher; CPU processes
without CUDA) shares the images among processes, which need one file system; the file is the same
as one process writes. Prints a one-line summary last.
"""

import sys

from multitask_pose.commands import detect_persons


def build_parser():
    return detect_persons.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/detect_persons.py)."""
    return detect_persons.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
