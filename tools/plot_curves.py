#!/usr/bin/env python
"""Learning curves of one or several training runs: losses and COCO AP against iteration.

    python tools/plot_curves.py output/main_job/train [more OUTPUT_DIRs ...] \\
        [--output curves.png] [--metric AP|AP50|AP75] [--names a b ...]

Reads each run's ``metrics.json`` or, with ``--source tensorboard`` (or when there is no
metrics.json), its TensorBoard event files, and its final ``results_<dataset>.json``; writes a
PNG (by default ``learning_curves.png`` in the first run) and prints a one-line summary.
"""

import sys

from multitask_pose.commands import plot_curves


def build_parser():
    return plot_curves.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/plot_curves.py)."""
    return plot_curves.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
