"""The code of ``tools/train_zoo.py``, whose docstring is its help text."""


from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.model_zoo import ENTRIES
from multitask_pose.model_zoo.training import LEVELS, evaluate_levels, export, train_leg, zoo_table


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    parser = argument_parser(doc)
    parser.add_argument("name", nargs="?", choices=sorted(ENTRIES), help="the zoo entry")
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--table", action="store_true",
        help="print the zoo's table (markdown, from the records in model_zoo/) and exit",
    )  # fmt: skip
    what.add_argument(
        "--export", action="store_true",
        help="only store the newest checkpoint as the entry's fp16 weights",
    )  # fmt: skip
    what.add_argument(
        "--finish", action="store_true",
        help=f"after the last iteration: evaluate on {', '.join(LEVELS)}, then store",
    )  # fmt: skip
    return parser


@entry_point("train_zoo")
def main(argv=None, parser=None) -> int:
    """The tool (``parser``: the script's, for its help)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)
    if args.table:
        print(zoo_table())
        return 0
    if args.name is None:
        parser.error("name an entry (or pass --table)")
    levels = None
    if args.finish:
        levels = evaluate_levels(args.name)
    elif not args.export:
        train_leg(args.name)
    print(export(args.name, levels))
    return 0
