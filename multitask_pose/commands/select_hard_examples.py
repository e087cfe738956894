"""The code of ``tools/select_hard_examples.py``, whose docstring is its help text."""

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


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the first line of the script's
    docstring)."""
    ap = argument_parser(doc and doc.split("\n")[0])
    ap.add_argument("--dataset", required=True, help="a registered dataset with keypoints")
    ap.add_argument("--results", required=True, help="the model's COCO keypoint results on it")
    ap.add_argument("--thresh", type=float, default=0.5, help="OKS below which a person is hard")
    ap.add_argument("--output", required=True, help="the COCO json of the hard persons")
    return ap


@entry_point("select_hard_examples")
def main(argv=None, parser=None):
    """The tool (``parser``: the script's, for its help)."""
    ap = parser or build_parser()
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
