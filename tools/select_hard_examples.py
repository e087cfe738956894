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

import multitask_pose  # noqa: F401  (registers the built-in datasets)
from multitask_pose.data.selection import hard_examples
from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.evaluation.error_analysis import (
    AnalysisInputError,
    load_ground_truth,
    load_results,
)
from multitask_pose.shared.atomic_io import write_json_atomic


@entry_point("select_hard_examples")
def main(argv=None):
    ap = argument_parser(__doc__.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="a registered dataset with keypoints")
    ap.add_argument("--results", required=True, help="the model's COCO keypoint results on it")
    ap.add_argument("--thresh", type=float, default=0.5, help="OKS below which a person is hard")
    ap.add_argument("--output", required=True, help="the COCO json of the hard persons")
    args = ap.parse_args(argv)
    if not 0 < args.thresh <= 1:
        ap.error(f"--thresh must be in (0, 1], got {args.thresh}")
    try:
        coco, spec, _ = load_ground_truth(args.dataset)
        results = load_results(args.results, coco, spec, args.dataset)
    except AnalysisInputError as e:
        print(f"select_hard_examples: {e}", file=sys.stderr)
        return 2
    gt = coco.dataset
    hard, best = hard_examples(gt, results, spec.oks_sigmas, args.thresh)
    images = {a["image_id"] for a in hard}
    write_json_atomic(
        args.output,
        {
            "images": [im for im in gt["images"] if im["id"] in images],
            "annotations": hard,
            "categories": gt["categories"],
        },
    )
    print(
        f"select_hard_examples: {len(hard)} of {len(best)} persons below OKS {args.thresh}"
        f" in {len(images)} images -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
