#!/usr/bin/env python
"""Learning curves of one or several training runs: losses and COCO AP against iteration.

    python tools/plot_curves.py output/main_job/train [more OUTPUT_DIRs ...] \\
        [--output curves.png] [--metric AP|AP50|AP75] [--names a b ...]

Reads each run's ``metrics.json`` or, with ``--source tensorboard`` (or when there is no
metrics.json), its TensorBoard event files, and its final ``results_<dataset>.json``; writes a
PNG (by default ``learning_curves.png`` in the first run) and prints a one-line summary.
"""

import sys
from pathlib import Path

from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.engine.learning_curves import (
    SOURCES,
    curves_summary,
    plot_learning_curves,
    read_learning_curves,
)


@entry_point("plot_curves")
def main(argv=None) -> int:
    parser = argument_parser(__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="training OUTPUT_DIRs (with metrics.json)")
    parser.add_argument("--output", help="PNG to write (default: <first run>/learning_curves.png)")
    parser.add_argument("--metric", default="AP", choices=("AP", "AP50", "AP75"))
    parser.add_argument("--names", nargs="*", help="a label per run (default: folder names)")
    parser.add_argument(
        "--source", default="auto", choices=SOURCES,
        help="metrics.json (json), the event files (tensorboard), auto: json if present",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.runs):
        parser.error(f"--names has {len(args.names)} labels for {len(args.runs)} runs")
    names = args.names or [Path(r).name for r in args.runs]
    try:
        runs = [read_learning_curves(r, n, args.source) for r, n in zip(args.runs, names)]
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"plot_curves: error: {e}", file=sys.stderr)
        return 2
    path = plot_learning_curves(runs, args.output or Path(args.runs[0]) / "learning_curves.png",
                                args.metric)  # fmt: skip
    print(curves_summary(runs, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
