#!/usr/bin/env python
"""Train a model zoo entry, resumably, and store it in model_zoo/ (fp16 weights and a record).

  $PY tools/train_zoo.py hrnet_w18_small_synthpeople            # train (or continue) a leg
  $PY tools/train_zoo.py hrnet_w18_small_synthpeople --export   # store the newest checkpoint
  $PY tools/train_zoo.py hrnet_w18_small_synthpeople --finish   # evaluate every level, store

The run lives in $MTP_CACHE/zoo/<name> (default ~/.cache/multitask_pose/zoo/<name>); a killed
leg continues from its last checkpoint. Use it in a config as MODEL.WEIGHTS zoo://<name>.
"""

import sys

from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.model_zoo import ENTRIES
from multitask_pose.model_zoo.training import LEVELS, evaluate_levels, export, train_leg


@entry_point("train_zoo")
def main(argv=None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("name", choices=sorted(ENTRIES), help="the zoo entry")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--export", action="store_true",
        help="only store the newest checkpoint as the entry's fp16 weights",
    )  # fmt: skip
    what.add_argument(
        "--finish", action="store_true",
        help=f"after the last iteration: evaluate on {', '.join(LEVELS)}, then store",
    )  # fmt: skip
    args = parser.parse_args(argv)
    levels = None
    if args.finish:
        levels = evaluate_levels(args.name)
    elif not args.export:
        train_leg(args.name)
    print(export(args.name, levels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
