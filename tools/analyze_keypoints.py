#!/usr/bin/env python
"""Keypoint error analysis of a COCO-format results file (Ronchi & Perona, ICCV 2017).

    python tools/analyze_keypoints.py --dataset coco_person_sample \\
        --results output/.../inference/coco_instances_results.json --output output/analysis

``--dataset`` is any registered keypoint dataset (``import multitask_pose`` registers the
built-in ones; its keypoint names, flip map and OKS sigmas come from its metadata). ``--results``
is a COCO keypoint results list, as detectron2's COCOEvaluator (``coco_instances_results.json``)
or ``tools/demo.py`` write it; results made for another dataset are refused (exit 2): a record
(``<results>.meta.json``) naming another registered dataset, image ids the dataset lacks, or boxes
reaching beyond its images (multitask_pose/evaluation/results_record.py). Writes ``report.md``
and PNG plots into ``--output`` and prints a one-line summary last. Definitions:
``multitask_pose/evaluation/error_analysis/``.
"""

import sys

from multitask_pose.commands import analyze_keypoints


def build_parser():
    return analyze_keypoints.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/analyze_keypoints.py)."""
    return analyze_keypoints.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
