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

from multitask_pose.commands import convert_keypoints


def build_parser():
    return convert_keypoints.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/commands/convert_keypoints.py)."""
    return convert_keypoints.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
