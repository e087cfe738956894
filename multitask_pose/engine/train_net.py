"""The body of the train_net scripts (``tools/train_net.py`` and the projects'): train or
evaluate, write ``results_<dataset>.json`` and print one summary line per dataset."""

import contextlib
import os
import time

from detectron2.evaluation import verify_results
from detectron2.utils import comm

from ..shared.atomic_io import write_json_atomic
from .checkpoint import checkpointer_for
from .setup import setup_cfg
from .trainer import MultiTaskTrainer
from .weights_check import check_trained_weights

__all__ = ["results_summary", "train_net_main"]


def results_summary(results, minutes=None, prefix="summary") -> str:
    """One line a person can paste into a note: each task's AP (0-1 scale) and the minutes.

    ``results`` is one dataset's results as detectron2's evaluators return them
    (``{"bbox": {"AP": ...}, "keypoints": {...}}``, AP in percent).
    """
    parts = []
    for task, name in (("bbox", "box AP"), ("segm", "mask AP"), ("keypoints", "keypoint AP")):
        if task in results:
            r = results[task]
            parts.append(
                f"{name} {r['AP'] / 100:.3f} (AP50 {r['AP50'] / 100:.3f}, "
                f"AP75 {r['AP75'] / 100:.3f})"
            )
    if minutes is not None:
        parts.append(f"{minutes:.1f} min")
    return f"{prefix}: " + ", ".join(parts)


def train_net_main(args, trainer_cls=MultiTaskTrainer, add_config_fns=(), prefix="train_net"):
    """The body of a train_net script (detectron2's flags): train, or ``--eval-only`` evaluate
    MODEL.WEIGHTS (plus TEST.AUG test-time augmentation when enabled); then write
    ``results_<dataset>.json`` next to the checkpoints and print one summary line per dataset.
    The config has ``trainer_cls.add_config``'s keys and those of ``add_config_fns``."""
    with contextlib.ExitStack() as lock_stack:  # OUTPUT_DIR's run lock, held to the end
        return _train_net_main(args, trainer_cls, add_config_fns, prefix, lock_stack)


def _train_net_main(args, trainer_cls, add_config_fns, prefix, lock_stack):
    start = time.perf_counter()
    if getattr(args, "allow_random_weights", False):  # the scripts' --allow-random-weights
        args.opts = [*args.opts, "MODEL.ALLOW_RANDOM_WEIGHTS", "True"]
    cfg = setup_cfg(args, (trainer_cls.add_config, *add_config_fns), lock_stack=lock_stack,
                    stage=trainer_cls.stage)  # fmt: skip
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        checkpointer = checkpointer_for(cfg, trainer_cls.checkpointer_class)(
            model, save_dir=cfg.OUTPUT_DIR
        )
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        check_trained_weights(model, checkpointer, cfg.MODEL.WEIGHTS,
                              allow=cfg.MODEL.ALLOW_RANDOM_WEIGHTS)  # fmt: skip
        results = trainer_cls.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:  # flip/multi-scale test-time augmentation, keypoints included
            results.update(trainer_cls.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = trainer_cls(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        results = getattr(trainer, "_last_eval_results", None) or {}
    if comm.is_main_process() and results:
        # detectron2 unwraps the results of a single test dataset.
        per_dataset = results if len(cfg.DATASETS.TEST) > 1 else {cfg.DATASETS.TEST[0]: results}
        minutes = (time.perf_counter() - start) / 60
        for name, res in per_dataset.items():
            # Kept next to the checkpoints so scripts can read the figures without parsing logs.
            write_json_atomic(os.path.join(cfg.OUTPUT_DIR, f"results_{name}.json"), res, indent=1)
            print(results_summary(res, minutes, prefix=f"{prefix} {name}"))
            tta = {k[: -len("_TTA")]: v for k, v in res.items() if k.endswith("_TTA")}
            if tta:
                print(results_summary(tta, minutes, prefix=f"{prefix} {name} TTA"))
    return results
