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

import argparse
import sys

import torch

from multitask_pose.engine.checkpoint import UnsafeCheckpointError
from multitask_pose.engine.checkpoint_conversion import (
    FORMATS,
    check_state,
    convert_state,
    read_checkpoint,
)
from multitask_pose.engine.cli import UserError, argument_parser, entry_point
from multitask_pose.shared.atomic_io import atomic_write


def build_model(config_file, opts):
    """The config's model (a top-down config when it sets a top-down meta-architecture)."""
    from detectron2.modeling import build_model as d2_build

    import multitask_pose
    from multitask_pose.engine.cli import load_config
    from pose_topdown import add_topdown_config

    cfg = add_topdown_config(multitask_pose.get_multitask_cfg())
    load_config(cfg, config_file, ["MODEL.DEVICE", "cpu", *opts])
    return d2_build(cfg)


@entry_point("convert_checkpoint")
def main(argv=None):
    ap = argument_parser(__doc__)
    ap.add_argument("--from", dest="fmt", required=True, choices=FORMATS)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--config-file", help="check the result against this config's model")
    ap.add_argument("--trust-pickle", action="store_true", help="full pickle (trusted files)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = ap.parse_args(argv)
    try:
        state = read_checkpoint(args.input, trusted=args.trust_pickle)
        out, report = convert_state(state, args.fmt)
        checked = ""
        if args.config_file:
            check_state(build_model(args.config_file, args.opts), out)
            checked = f"; loads strictly into {args.config_file}'s model"
    except UserError:
        raise  # its own one line (entry_point)
    except (OSError, ValueError, UnsafeCheckpointError) as e:
        print(f"convert_checkpoint: {args.input}: {e}", file=sys.stderr)
        return 2
    for old, new in report["renamed"][:5]:
        print(f"  renamed {old} -> {new}")
    if len(report["renamed"]) > 5:
        print(f"  ... and {len(report['renamed']) - 5} more renamed")
    for what in ("dropped", "unmapped"):
        for key in report[what]:
            print(f"  {what} {key}")
    with atomic_write(args.output, "wb") as f:
        torch.save({"model": out}, f)
    note = ""
    if args.fmt == "detectron2" and any(".conv2_offset." in o for o, _ in report["renamed"]):
        note = "; deformable blocks: run with MODEL.RESNETS.DEFORM_MODULATION sigmoid"
    print(
        f"convert_checkpoint: {args.fmt} -> ours: {len(out)} tensors, {len(report['renamed'])}"
        f" renamed, {len(report['dropped'])} dropped, {len(report['unmapped'])} not mapped"
        f"{checked}{note} -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
