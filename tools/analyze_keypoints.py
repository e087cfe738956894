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

import multitask_pose  # noqa: F401  (registers the built-in datasets)
from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.evaluation.error_analysis import (
    AnalysisInputError,
    analyze_keypoint_errors,
    error_summary,
    write_report,
)


def parse_args(argv=None):
    parser = argument_parser(__doc__.split("\n\n")[0])
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
    return parser.parse_args(argv)


@entry_point("analyze_keypoints")
def main(argv=None) -> int:
    args = parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
