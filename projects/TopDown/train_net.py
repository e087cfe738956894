#!/usr/bin/env python
r"""Train or evaluate a top-down config (projects/TopDown/configs): person crops from
DATASETS.TRAIN, evaluation on the images of DATASETS.TEST with the person boxes of
TEST.TOPDOWN.BOX_SOURCE (ground truth, a detection file or the detector), the same flags, hooks,
evaluator and summary line as tools/train_net.py (which trains the R-CNN configs of configs/).

    python projects/TopDown/train_net.py \
        --config-file projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml
    python projects/TopDown/train_net.py --config-file ... --eval-only \
        MODEL.WEIGHTS pose_hrnet_w32_256x192.pth
    python projects/TopDown/train_net.py --config-file ... --eval-only ... \
        TEST.TOPDOWN.BOX_SOURCE file
    python projects/TopDown/train_net.py --config-file ... --resume
"""
import multitask_pose  # noqa: F401  (first: registers the datasets, filters a warning)

# isort: split
import pose_topdown  # noqa: F401  (registers the top-down models)
from multitask_pose.engine import launch, train_net_main
from multitask_pose.engine.cli import tool_errors, train_net_parser
from pose_topdown.engine import TopDownTrainer


def build_parser():
    return train_net_parser(__doc__)


def main(args):
    return train_net_main(args, TopDownTrainer, prefix="topdown train_net")


if __name__ == "__main__":
    args = build_parser().parse_args()
    with tool_errors("topdown train_net", args.debug):
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
