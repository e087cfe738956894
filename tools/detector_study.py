#!/usr/bin/env python
"""Person detectors compared on SynthPeople, and what their boxes give the top-down stage.

    PY=$(tools/install/setup_env.sh)
    $PY tools/detector_study.py --seeds 42 43 --jobs 2 --topdown zoo://hrnet_w18_small_synthpeople

``--jobs 2``: the seeds in two processes at once (multitask_pose/studies/jobs.py), the
table once both have finished.

Steps, each skipped when its output exists, so a killed study resumes with the same command:

1. train each detector config (default: every configs/Synthetic/detectors/*.yaml: Faster R-CNN,
   Cascade Mask R-CNN, HTC, HTC + keypoints on one backbone, data and schedule) per seed with
   the studies' runner into ``<output>/<config>/seed<seed>`` (TEST.EVAL_PERIOD 0 and the
   overrides after ``--``);
2. its person detections on each evaluation dataset with tools/detect_persons.py (top 100 per
   image, score >= 0.05): ``<run>/detections/<dataset>.json``;
3. person box AP and AR@100 of those files against the dataset's annotations (pycocotools):
   ``<run>/detections/results_<dataset>.json``;
4. the keypoint AP of a trained top-down model (``--topdown``: its output folder, or a model zoo
   entry such as ``zoo://hrnet_w18_small_synthpeople``) on those boxes
   (``--eval-only`` with TEST.TOPDOWN.BOX_SOURCE "file" into ``<run>/topdown/<dataset>``), and on
   the ground-truth boxes for reference;
5. with ``--record DIR``, each run is recorded once evaluated on every dataset (rows, metrics,
   error analysis; no weights), and a study whose output folder was lost resumes from it;
6. the table: ``mean (seed values)`` per cell, written to ``<output>/detector_study.md`` and
   printed, with a one-line summary.
"""

import sys

from multitask_pose.engine.cli import entry_point
from multitask_pose.studies import detector_study


def build_parser():
    return detector_study.build_parser(__doc__)


@entry_point("detector_study")
def main(argv=None):
    """The study (multitask_pose/studies/detector_study.py)."""
    detector_study.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
