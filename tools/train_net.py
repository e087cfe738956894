#!/usr/bin/env python
r"""Train or evaluate a multitask R-CNN config (configs/): detectron2's train_net with the
project's config keys, datasets, COCO evaluator (boxes, masks, keypoints), keypoint test-time
augmentation, OUTPUT_DIR run lock, resumable data loader and CPU-capable launch. Top-down configs
(projects/TopDown/configs) train with projects/TopDown/train_net.py.

    python tools/train_net.py --config-file configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS ... \
        TEST.AUG.ENABLED True                                     # + flip TTA
    python tools/train_net.py --config-file ... --resume          # continue an interrupted run
    python tools/train_net.py --config-file ... --num-gpus 2      # 2 processes (CPU: gloo)
"""
import multitask_pose  # noqa: F401  (first: registers models and datasets, filters a warning)

# isort: split
from multitask_pose.engine import MultiTaskTrainer, launch, train_net_main
from multitask_pose.engine.cli import tool_errors, train_net_parser


def build_parser():
    return train_net_parser(__doc__)


def main(args):
    return train_net_main(args, MultiTaskTrainer)


if __name__ == "__main__":
    args = build_parser().parse_args()
    with tool_errors("train_net", args.debug):
        launch(main, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
