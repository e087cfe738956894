#!/usr/bin/env python
"""Train a model zoo entry, resumably, and store it in model_zoo/ (fp16 weights and a record).

  $PY tools/train_zoo.py hrnet_w18_small_synthpeople            # train (or continue) a leg
  $PY tools/train_zoo.py hrnet_w18_small_synthpeople --export   # store the newest checkpoint
  $PY tools/train_zoo.py hrnet_w18_small_synthpeople --finish   # evaluate every level, store
  $PY tools/train_zoo.py --table                                 # the zoo table (markdown)

The run lives in $MTP_CACHE/zoo/<name> (default ~/.cache/multitask_pose/zoo/<name>); a killed
leg continues from its last checkpoint. Use it in a config as MODEL.WEIGHTS zoo://<name>.
"""

import sys

from multitask_pose.commands import train_zoo


def build_parser():
    return train_zoo.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/train_zoo.py)."""
    return train_zoo.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
