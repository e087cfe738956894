#!/usr/bin/env python
"""Train or evaluate a multitask R-CNN config (detectron2's train_net, with the project's keys,
datasets, evaluator and CPU-capable launch).

    python tools/train_net.py --config-file configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS ... \\
        TEST.AUG.ENABLED True                                     # + flip TTA
    python tools/train_net.py --config-file ... --resume          # continue an interrupted run
    python tools/train_net.py --config-file ... --num-gpus 2      # 2 processes (CPU: gloo)
"""
from detectron2.engine import default_argument_parser

import multitask_pose  # noqa: F401  (registers models and datasets)
from multitask_pose.engine import MultiTaskTrainer, launch, train_net_main
from multitask_pose.engine.weights_check import add_allow_random_weights_argument, refusal_exits


def main(args):
    return train_net_main(args, MultiTaskTrainer)


if __name__ == "__main__":
    args = add_allow_random_weights_argument(default_argument_parser()).parse_args()
    with refusal_exits("train_net"):
        launch(main, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
