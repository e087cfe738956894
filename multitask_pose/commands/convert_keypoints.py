"""The code of ``tools/convert_keypoints.py``, whose docstring is its help text."""

import sys

from multitask_pose.data.converters import convert_aic, convert_crowdpose, summary
from multitask_pose.data.datasets import DatasetFormatError
from multitask_pose.engine.cli import argument_parser, entry_point


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    ap = argument_parser(doc and doc.split("\n")[0])
    ap.add_argument("dataset", choices=("aic", "crowdpose"))
    ap.add_argument("--input", required=True, help="the release's annotation json")
    ap.add_argument("--images", help="the image folder (AI Challenger: required, for sizes)")
    ap.add_argument("--output", required=True, help="the COCO json to write")
    ap.add_argument("--layout", choices=("coco", "own"), default="coco")
    ap.add_argument("--skip-invalid", action="store_true", help="skip and count invalid persons")
    return ap


@entry_point("convert_keypoints")
def main(argv=None, parser=None):
    """The tool (``parser``: the script's, for its help)."""
    ap = parser or build_parser()
    args = ap.parse_args(argv)
    if args.dataset == "aic" and not args.images:
        ap.error("aic needs --images: the raw release has no image sizes")
    try:
        if args.dataset == "aic":
            report = convert_aic(args.input, args.images, args.output, args.layout,
                                 args.skip_invalid)  # fmt: skip
        else:
            report = convert_crowdpose(args.input, args.output, args.layout, args.skip_invalid)
    except (DatasetFormatError, FileNotFoundError, ValueError) as e:
        print(f"convert_keypoints: {e}", file=sys.stderr)
        return 2
    print(summary(report, f"convert_keypoints {args.dataset}"))
    return 0
