#!/usr/bin/env python
"""Train or evaluate a multitask R-CNN config (detectron2's train_net, with the project's keys,
datasets, evaluator and CPU-capable launch).

    python tools/train_net.py --config-file configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS output/.../model_final.pth
    python tools/train_net.py --config-file ... --eval-only MODEL.WEIGHTS ... TEST.AUG.ENABLED True  # + flip TTA
    python tools/train_net.py --config-file ... --resume          # continue an interrupted run
    python tools/train_net.py --config-file ... --num-gpus 2      # 2 processes (CPU: gloo)
"""
import json
import os
import time

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import multitask_pose  # noqa: F401  (registers models and datasets)
from multitask_pose.engine import MultiTaskTrainer, launch, setup_cfg, summary_line


def main(args):
    start = time.perf_counter()
    cfg = setup_cfg(args)
    if args.eval_only:
        model = MultiTaskTrainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = MultiTaskTrainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:  # flip/multi-scale test-time augmentation, keypoints included
            results.update(MultiTaskTrainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = MultiTaskTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        results = getattr(trainer, "_last_eval_results", None) or {}
    if comm.is_main_process() and results:
        # detectron2 unwraps the results of a single test dataset.
        per_dataset = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
        minutes = (time.perf_counter() - start) / 60
        for name, res in per_dataset.items():
            # Kept next to the checkpoints so scripts can read the figures without parsing logs.
            with open(os.path.join(cfg.OUTPUT_DIR, f"results_{name}.json"), "w") as f:
                json.dump(res, f, indent=1)
            print(summary_line(res, minutes, prefix=f"train_net {name}"))
            tta = {k[: -len("_TTA")]: v for k, v in res.items() if k.endswith("_TTA")}
            if tta:
                print(summary_line(tta, minutes, prefix=f"train_net {name} TTA"))
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
