#!/usr/bin/env python
"""Hard-example selection with a trained model (the OKS team's step 2; data/selection.py).

    PY=$(tools/install/setup_env.sh)
    # the model's predictions on the external set, e.g.
    $PY projects/TopDown/train_net.py --config-file <recipe> --eval-only MODEL.WEIGHTS <model> \
        DATASETS.TEST '("<external set>",)' OUTPUT_DIR output/on_external
    $PY tools/select_hard_examples.py --dataset <external set> \
        --results output/on_external/inference/<external set>/coco_instances_results.json \
        --thresh 0.5 --output hard.json

Keeps the persons with labelled keypoints whose best OKS with the model's predictions on their
image is below --thresh (no prediction: OKS 0), and writes them as a COCO json (their images,
their annotations only: crops for a top-down model). Results for another dataset (a record naming
it, image ids or boxes that are not the dataset's: multitask_pose/evaluation/results_record.py),
an empty results file or a dataset without keypoints stop with the file and the mismatch named.
Prints a one-line summary.
"""

import sys

from multitask_pose.commands import select_hard_examples


def build_parser():
    return select_hard_examples.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/select_hard_examples.py)."""
    return select_hard_examples.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
