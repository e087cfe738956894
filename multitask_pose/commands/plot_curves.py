"""The code of ``tools/plot_curves.py``, whose docstring is its help text."""

import sys
from pathlib import Path

from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.engine.learning_curves import (
    SOURCES,
    curves_summary,
    plot_learning_curves,
    read_learning_curves,
)


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    parser = argument_parser(doc and doc.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="training OUTPUT_DIRs (with metrics.json)")
    parser.add_argument("--output", help="PNG to write (default: <first run>/learning_curves.png)")
    parser.add_argument("--metric", default="AP", choices=("AP", "AP50", "AP75"))
    parser.add_argument("--names", nargs="*", help="a label per run (default: folder names)")
    parser.add_argument(
        "--source", default="auto", choices=SOURCES,
        help="metrics.json (json), the event files (tensorboard), auto: json if present",
    )  # fmt: skip
    return parser


@entry_point("plot_curves")
def main(argv=None, parser=None) -> int:
    """The tool (``parser``: the script's, for its help)."""
    parser = parser or build_parser()
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
