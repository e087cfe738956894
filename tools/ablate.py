#!/usr/bin/env python
"""Train a list of configs with one budget and one or more seeds and tabulate their COCO AP and
cost.

    python tools/ablate.py                      # every configs/Synthetic/ablation/*.yaml
    python tools/ablate.py --seeds 42 43        # two seeds per config
    python tools/ablate.py --configs plain offset --max-iter 300 -- TEST.EVAL_PERIOD 0

Each config is trained with tools/train_net.py (projects/TopDown/train_net.py for the configs of
the top-down project, e.g. ``--configs projects/TopDown/configs/Synthetic/*_basic.yaml``) once
per seed into ``<output>/<name>/seed<seed>``
(SEED set, the same SOLVER.MAX_ITER/STEPS when --max-iter is given, any further overrides after
``--``), evaluated on its DATASETS.TEST at the end, and the table (box/mask/keypoint AP, keypoint
AP50/AP75, training minutes, inference ms/image from detectron2's inference log) is written to
``<output>/ablation.md`` and printed, with a last line to paste into a note. With several seeds
each AP cell gives the mean and every seed's value, and a last column says by how much each
config's keypoint AP differs from the first config's and whether that difference exceeds the seed
spread (the larger of the two configs' max - min over seeds): a smaller difference is noise.

``--jobs N``: the seeds shared among N processes at once (one seed's runs per process, the CPU's
threads divided among them); the table once all have finished.

Killed half-way? Run the same command again: finished configs are read back from their results
files, an interrupted one resumes from its last checkpoint (train_net --resume; its training
minutes then count the resumed part only). A different budget needs a different --output.
``--record DIR`` keeps each finished run's row, metrics and error analysis (no weights) in DIR
and restores them from it, so that a study whose output folder was lost resumes from them.
"""

import sys

from multitask_pose.engine.cli import entry_point
from multitask_pose.studies import rcnn_ablation


def build_parser():
    return rcnn_ablation.build_parser(__doc__)


@entry_point("ablate")
def main(argv=None):
    """The study (multitask_pose/studies/rcnn_ablation.py)."""
    rcnn_ablation.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
