#!/usr/bin/env python
"""Drop person annotations whose box and keypoints disagree (multitask_pose/data/selection.py).

    PY=$(tools/install/setup_env.sh)
    $PY tools/select_data.py --input person_keypoints_train.json --output selected.json \
        --report output/selection

Keeps an annotation with n labelled keypoints when ks = exp(-|c_box - c_kps|^2 / (2 area_box)) >
0.45 + 0.2 (n - 1) / (K - 1) (the OKS team's line; K from the file's category). Crowd
annotations and persons without keypoints are kept unjudged. Writes the filtered json (images,
categories and everything else unchanged) and, with --report, report.md and scatter.png (ks
against n, kept and dropped, the line). Prints a one-line summary.
"""

import sys

from multitask_pose.commands import select_data


def build_parser():
    return select_data.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/select_data.py)."""
    return select_data.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
