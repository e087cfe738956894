#!/usr/bin/env python
"""Train or evaluate a top-down config: the same flags, hooks and summary line as
tools/train_net.py.

python projects/TopDown/train_net.py \
    --config-file projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml
python projects/TopDown/train_net.py --config-file ... --eval-only \
    MODEL.WEIGHTS pose_hrnet_w32_256x192.pth
python projects/TopDown/train_net.py --config-file ... --eval-only ... TEST.TOPDOWN.BOX_SOURCE file
python projects/TopDown/train_net.py --config-file ... --resume
"""

from detectron2.engine import default_argument_parser

import multitask_pose  # noqa: F401  (registers the datasets)
import topdown  # noqa: F401  (registers the top-down models)
from multitask_pose.engine import launch, train_net_main
from multitask_pose.engine.weights_check import add_allow_random_weights_argument, refusal_exits
from topdown.engine import TopDownTrainer


def main(args):
    return train_net_main(args, TopDownTrainer, prefix="topdown train_net")


if __name__ == "__main__":
    args = add_allow_random_weights_argument(default_argument_parser()).parse_args()
    with refusal_exits("topdown train_net"):
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
