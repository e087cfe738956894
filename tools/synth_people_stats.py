#!/usr/bin/env python
"""Statistics of the SynthPeople splits (generated into the cache when missing) as a markdown
table: persons per image, person heights, labelled / visible keypoint rates, overlap between
people. ``--anatomy`` adds the leg and trunk proportions of the real COCO sample next to each
split's (how the generator's hip and knee placement is checked against COCO's annotators).

    python tools/synth_people_stats.py                       # every registered split
    python tools/synth_people_stats.py --splits synth_people_basic_val --anatomy
    python tools/synth_people_stats.py --json path/to/person_keypoints.json   # any COCO file
"""

import sys

from multitask_pose.commands import synth_people_stats


def build_parser():
    return synth_people_stats.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/synth_people_stats.py)."""
    return synth_people_stats.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
