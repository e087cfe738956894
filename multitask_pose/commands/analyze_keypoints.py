"""The code of ``tools/analyze_keypoints.py``, whose docstring is its help text."""

import sys

import multitask_pose  # noqa: F401  (registers the built-in datasets)
from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.evaluation.error_analysis import (
    AnalysisInputError,
    analyze_keypoint_errors,
    error_summary,
    write_report,
)


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    parser = argument_parser(doc and doc.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="registered keypoint dataset")
    parser.add_argument("--results", required=True, help="COCO keypoint results json")
    parser.add_argument("--output", required=True, help="folder for report.md and the plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--missing-area-factor",
        type=float,
        default=None,
        help="ground truth without 'area': box area x this (default 0.53, as the evaluator)",
    )
    return parser


@entry_point("analyze_keypoints")
def main(argv=None, parser=None) -> int:
    """The tool (``parser``: the script's, for its help)."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        analysis = analyze_keypoint_errors(
            args.dataset,
            args.results,
            progress=not args.quiet,
            missing_area_factor=args.missing_area_factor,
        )
    except AnalysisInputError as e:
        print(f"analyze_keypoints: error: {e}", file=sys.stderr)
        return 2
    report = write_report(analysis, args.output)
    print(f"analyze_keypoints: wrote {report} and its plots")
    print(error_summary(analysis))
    return 0
