#!/usr/bin/env python
r"""Convert a checkpoint of another toolbox into this project's names, checked against a config.

    PY=$(tools/install/setup_env.sh)
    # MMPose 1.x / 0.x top-down HRNet or SimpleBaseline -> a top-down config
    $PY tools/convert_checkpoint.py --from mmpose \
        --input td-hm_hrnet-w32_8xb64-210e_coco-256x192-81c58e40_20220909.pth \
        --output hrnet_w32_mmpose.pth \
        --config-file projects/TopDown/configs/COCO/hrnet_w32_256x192.yaml
    # the official HRNet / SimpleBaseline release (also loadable as it is)
    $PY tools/convert_checkpoint.py --from official --input pose_hrnet_w32_256x192.pth ...
    # detectron2 deformable ResNets (conv2_offset) -> ours (conv2.offset); run the model with
    # MODEL.RESNETS.DEFORM_MODULATION sigmoid (detectron2's modulation)
    $PY tools/convert_checkpoint.py --from detectron2 --input model_final.pth \
        --output ours.pth \
        --config-file configs/COCO-MultiTask/multitask_rcnn_R_50_FPN_dcn_rb_1x.yaml

The mapping is multitask_pose/engine/checkpoint_conversion.py's. It prints what it renamed,
dropped and could not map; with --config-file the result must load strictly into that config's
model (each differing shape, missing or unexpected key is named, exit 2). Files are read without
running code (torch.load(weights_only=True), a restricted unpickler for .pkl); --trust-pickle
reads a trusted file the safe loaders refuse. The output ({"model": state dict}) is written
atomically; a one-line summary ends the run.
"""

import sys

from multitask_pose.engine import checkpoint_conversion


def build_parser():
    return checkpoint_conversion.build_parser(__doc__)


def main(argv=None):
    """The tool (multitask_pose/engine/checkpoint_conversion.py)."""
    return checkpoint_conversion.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
