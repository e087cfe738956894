#!/usr/bin/env python
"""Refine any model's keypoint results file with a trained PoseFix refiner
(pose_topdown/posefix.py).

    python projects/TopDown/posefix_refine.py \\
        --config-file projects/TopDown/configs/Synthetic/posefix_hrnet_w18_small_synth_basic.yaml \\
        --weights output/topdown/posefix_.../model_final.pth \\
        --results output/.../inference/synth_people_basic_val/coco_instances_results.json \\
        --output output/posefix_refined

Each entry of ``--results`` (a COCO keypoint results list with ``bbox``, as detectron2's
evaluator writes it) is refined as the config says (the recipe: as PoseFix's official test, the
crop from the entry's pose extent x 1.2, every keypoint of the pose drawn, the entry's score
kept, then OKS-NMS 0.9 over each image's refined poses). Writes ``coco_instances_results.json``
(the refined list, as detectron2's evaluator names it) into ``--output``, computes the
keypoint AP of the input and of the refined results on ``--dataset`` (default: the config's
DATASETS.TEST[0]) and prints a one-line summary last. The refined file's record
(``coco_instances_results.json.meta.json``) names the refiner, its keypoint score scale (each
keypoint carries its person's score) and the file it refined. Trailing ``KEY VALUE`` pairs
override the config.
"""

import multitask_pose  # noqa: F401  (first: registers the datasets, filters a warning)

# isort: split
import sys

from pose_topdown import posefix_refine


def build_parser():
    return posefix_refine.build_parser(__doc__.split("\n\n")[0])


def main(argv=None) -> int:
    """The tool (pose_topdown/posefix_refine.py)."""
    return posefix_refine.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
