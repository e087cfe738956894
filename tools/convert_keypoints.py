#!/usr/bin/env python
"""Convert AI Challenger or CrowdPose annotations to COCO-format json (data/converters.py).

    PY=$(tools/install/setup_env.sh)
    # AI Challenger's raw release (a list of image entries, visibility 1/2/3), images read for sizes
    $PY tools/convert_keypoints.py aic --input keypoint_train_annotations.json \
        --images keypoint_train_images --output aic_train_coco.json [--layout coco|own]
    # CrowdPose (COCO-style, no areas; each person keeps the release's num_keypoints)
    $PY tools/convert_keypoints.py crowdpose --input crowdpose_train.json --output cp_train.json

``--layout coco`` (default) maps to COCO's 17 keypoints (12 limb joints; head top and neck dropped,
face points unlabelled), ``own`` keeps the dataset's 14. Invalid persons stop the conversion with
the image and person named; ``--skip-invalid`` skips and counts them. Prints a one-line summary.
Register the output with ``multitask_pose.data.register_coco_person(name, output, images, spec)``
(``spec``: COCO_PERSON for ``coco``, AIC_PERSON / CROWDPOSE_PERSON for ``own``).
"""

import sys

from multitask_pose.data.converters import convert_aic, convert_crowdpose, summary
from multitask_pose.data.datasets import DatasetFormatError
from multitask_pose.engine.cli import argument_parser, entry_point


@entry_point("convert_keypoints")
def main(argv=None):
    ap = argument_parser(__doc__.split("\n")[0])
    ap.add_argument("dataset", choices=("aic", "crowdpose"))
    ap.add_argument("--input", required=True, help="the release's annotation json")
    ap.add_argument("--images", help="the image folder (AI Challenger: required, for sizes)")
    ap.add_argument("--output", required=True, help="the COCO json to write")
    ap.add_argument("--layout", choices=("coco", "own"), default="coco")
    ap.add_argument("--skip-invalid", action="store_true", help="skip and count invalid persons")
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


if __name__ == "__main__":
    sys.exit(main())
