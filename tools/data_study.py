#!/usr/bin/env python
"""The reports' data strategies compared on SynthPeople: HRNet-W18-small trained on the
basic level alone, and with each strategy, at one training budget and the same seeds.

    PY=$(tools/install/setup_env.sh)
    $PY tools/data_study.py --detector zoo://multitask_rcnn_R_18_FPN_synthpeople --seeds 42 43

Rows (every training the same recipe, hrnet_w18_small_synth_basic.yaml, and iterations):

- baseline: ``--train`` alone;
- joint AIC layout: ``--train`` + ``--aic`` (AI Challenger's 14-keypoint layout and raw format,
  converted; mapped into COCO's, face points unlabelled), the two concatenated as the reports
  join AI Challenger and COCO (every sample equally likely);
- pseudo-labels: ``--train`` + the baseline's (same seed) confident keypoints on ``--unlabelled``
  (its poses on the detector's boxes, tools/pseudo_label.py: keypoints above ``--kp-thresh``,
  boxes above ``--box-thresh``, persons with ``--min-keypoints``), concatenated as PCR adds
  them to COCO's training set;
- HNDM: ``--train`` + hard negatives mined from the detector's boxes on it
  (INPUT.HARD_NEGATIVES.FILE): by the PCR report's rule (no intersection with any
  person), by IoU below 0.3 with every person (INPUT.HARD_NEGATIVES.RULE "iou", not a
  report's), and by that IoU rule keeping only the boxes that hold no labelled keypoint of any
  person (INPUT.HARD_NEGATIVES.MAX_KEYPOINTS 0);
- inconsistent: ``--train`` + ``--inconsistent`` (30% of its persons with keypoints displaced
  from their boxes), DATASETS.TRAIN_RATIOS 1:1, without and with data selection
  (DATASETS.KEYPOINT_SELECTION).

``--jobs 2`` (added to the command): the detector's boxes computed by two processes, then the
seeds in two processes at once (multitask_pose/studies/jobs.py), the table once both have
finished.

Steps, each skipped when its output exists, so a killed study resumes with the same command:
the detector's boxes on the training, unlabelled and validation sets (tools/detect_persons.py);
the trainings (the studies' runner, ``<output>/<row>/seed<seed>``); the baseline's
evaluation on the unlabelled set (its AP there, against the hidden labels, is the pseudo-labels'
quality) and the pseudo-label file; every model's keypoint AP on ``--val`` with ground-truth
and detector boxes; the table (``mean (seed values)``, the difference from the baseline and
whether it exceeds the seed spread) in ``<output>/data_study.md``, printed with the data counts
and a one-line summary. With ``--record DIR``, each run is recorded once evaluated (rows,
metrics, error analysis; the pseudo-labels; no weights), and a study whose output folder was
lost resumes from it (the detector's boxes made again).
"""

import sys

from multitask_pose.engine.cli import entry_point
from multitask_pose.studies import data_study


def build_parser():
    return data_study.build_parser(__doc__)


@entry_point("data_study")
def main(argv=None):
    """The study (multitask_pose/studies/data_study.py)."""
    data_study.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
