#!/usr/bin/env python
"""Pseudo-labels from a trained model's keypoint results (multitask_pose/data/pseudo_labels.py).

    PY=$(tools/install/setup_env.sh)
    # the report's producer: a top-down model's results on a registered set of unlabelled images
    $PY tools/pseudo_label.py --results .../inference/<name>/coco_instances_results.json \
        --dataset <name> --output pseudo.json
    # or on a folder's images (tools/detect_persons.py --input: <output>.images.json)
    $PY tools/pseudo_label.py --results output/pl/dets.json \
        --images output/pl/dets.json.images.json --output output/pl/pseudo.json \
        --kp-thresh <threshold on its scale> --kp-thresh-scale <its scale>

Keypoints scoring above --kp-thresh (0.9, the PCR report's) are labelled, the rest unlabelled;
detections below --box-thresh and persons with fewer than --min-keypoints labelled points are
dropped. The threshold is on --kp-thresh-scale, by default the report's: a top-down model's
heatmap peaks. The results' record (``<results>.meta.json``, written by the evaluator and the
tools) must state that scale: a file on another scale (an R-CNN's softmax probabilities) or on an
unknown one is refused, naming it, unless --kp-thresh-scale states the scale of both (for a file
without a record, on the caller's word, with a warning). With --dataset, results made for
another dataset are refused: a record naming another registered dataset, or boxes reaching beyond
the dataset's images (multitask_pose/evaluation/results_record.py). The output is COCO
person-keypoints json in the COCO layout (or --layout aic/crowdpose), written atomically; register
it with ``register_coco_person``. Prints a one-line summary with the scale.
"""

import sys

from multitask_pose.commands import pseudo_label


def build_parser():
    return pseudo_label.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/pseudo_label.py)."""
    return pseudo_label.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
