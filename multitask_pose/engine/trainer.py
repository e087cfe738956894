"""The trainer and ``main`` shared by ``tools/train_net.py`` and the projects' train scripts."""

import glob
import json
import logging
import os
import pickle
import time
from unittest import mock

import torch
from detectron2.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data import build as d2_build
from detectron2.engine import DefaultTrainer, default_setup
from detectron2.engine import defaults as d2_defaults
from detectron2.evaluation import verify_results
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm

from ..config import add_multitask_config, add_pose_config, get_pose_cfg
from ..data.image_check import screen_dataset_images
from ..evaluation import PoseCOCOEvaluator
from ..layers import deform_offset_parameters
from .checkpoint import SafeCheckpointer, UnsafeCheckpointError, checkpointer_for
from .launch import create_ddp_model

logger = logging.getLogger(__name__)

# What loading a checkpoint raises when its file is missing (fvcore asserts), cut short or not
# a checkpoint.
_LOAD_ERRORS = (AssertionError, EOFError, OSError, RuntimeError, pickle.UnpicklingError)

__all__ = [
    "MultiTaskTrainer",
    "PoseTrainer",
    "scale_lr",
    "setup_cfg",
    "summary_line",
    "train_net_main",
]


class PoseTrainer(DefaultTrainer):
    """The trainer base of both stages: detectron2's ``DefaultTrainer`` with the project's COCO
    evaluator (bbox, segm, keypoints with the dataset's OKS sigmas), SOLVER.OPTIMIZER, and
    multi-process training on CPU as well as CUDA."""

    # Loads MODEL.WEIGHTS and saves checkpoints; a project whose released weights need a name
    # mapping sets its own subclass of SafeCheckpointer here.
    checkpointer_class = SafeCheckpointer
    # Adds the config keys of the trainer's models to detectron2's (train_net_main calls it).
    add_config = staticmethod(add_pose_config)

    def __init__(self, cfg):
        # DefaultTrainer wraps the model with detectron2's create_ddp_model, which gives CPU
        # modules device ids that DistributedDataParallel rejects; use the CPU-aware one.
        with (
            mock.patch.object(d2_defaults, "create_ddp_model", create_ddp_model),
            mock.patch.object(
                d2_defaults, "DetectionCheckpointer", checkpointer_for(cfg, self.checkpointer_class)
            ),
        ):
            super().__init__(cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        """detectron2's parameter groups and gradient clipping with SOLVER.OPTIMIZER, and the
        DCNv2 offset/modulation predictors at SOLVER.DEFORM_OFFSET_LR_FACTOR x their lr."""
        optimizers = {
            "SGD": (
                torch.optim.SGD,
                dict(momentum=cfg.SOLVER.MOMENTUM, nesterov=cfg.SOLVER.NESTEROV),
            ),
            "AdamW": (torch.optim.AdamW, {}),
            "RMSprop": (torch.optim.RMSprop, {}),
        }
        if cfg.SOLVER.OPTIMIZER not in optimizers:
            raise ValueError(
                f"SOLVER.OPTIMIZER={cfg.SOLVER.OPTIMIZER!r}; expected 'SGD', 'AdamW' or 'RMSprop'"
            )
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        params = scale_lr(
            params, set(deform_offset_parameters(model)), cfg.SOLVER.DEFORM_OFFSET_LR_FACTOR
        )
        optimizer, kwargs = optimizers[cfg.SOLVER.OPTIMIZER]
        return maybe_add_gradient_clipping(cfg, optimizer)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY, **kwargs
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return PoseCOCOEvaluator.from_cfg(cfg, dataset_name, output_dir=output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's loader of DATASETS.TRAIN, whose image files are checked first
        (:func:`check_images`)."""
        # detectron2's dataset dicts for the config (a placeholder sampler: the real one is
        # built below, on the checked list's length).
        dicts = d2_build._train_loader_from_config(cfg, sampler=[])["dataset"]
        dicts = check_images(cfg, dicts, f"DATASETS.TRAIN {tuple(cfg.DATASETS.TRAIN)}")
        return build_detection_train_loader(cfg, dataset=dicts)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name, mapper=None):
        """detectron2's test loader of ``dataset_name`` (with ``mapper``, default detectron2's
        DatasetMapper), whose image files are checked first (:func:`check_images`)."""
        kwargs = d2_build._test_loader_from_config(cfg, dataset_name, mapper=mapper)
        kwargs["dataset"] = check_images(cfg, kwargs["dataset"], f"test dataset {dataset_name!r}")
        return build_detection_test_loader(**kwargs)

    def resume_or_load(self, resume=True):
        """detectron2's; when resuming and ``last_checkpoint`` names no checkpoint (an empty
        name, a missing file) or one that does not load (a run killed while writing it), the
        newest checkpoint of OUTPUT_DIR that loads instead, with a warning, and ``last_checkpoint``
        pointed at it. Raises RuntimeError naming OUTPUT_DIR when none loads."""
        try:
            return super().resume_or_load(resume)
        except UnsafeCheckpointError:
            raise  # refused for safety: never replaced by another file
        except _LOAD_ERRORS as e:
            if not (resume and self.checkpointer.has_checkpoint()):
                raise
            failed, error = self.checkpointer.get_checkpoint_file(), e
        out = self.cfg.OUTPUT_DIR
        for path in sorted(glob.glob(os.path.join(out, "model_*.pth")), reverse=True):
            if os.path.abspath(path) == os.path.abspath(failed):
                continue
            self.checkpointer.tag_last_checkpoint(os.path.basename(path))
            try:
                super().resume_or_load(True)
            except UnsafeCheckpointError:
                raise
            except _LOAD_ERRORS as e:
                logger.warning("Cannot resume from %s either: %s", path, e)
                continue
            logger.warning(
                "last_checkpoint of %s names %r, which does not load (%s): resumed from %s instead",
                out, os.path.basename(failed), error, os.path.basename(path),
            )  # fmt: skip
            return None
        raise RuntimeError(
            f"cannot resume from {out}: last_checkpoint names {os.path.basename(failed)!r}, which"
            f" does not load ({error}), and no other model_*.pth there loads; start without"
            " --resume or with another OUTPUT_DIR"
        )

    @classmethod
    def test_with_TTA(cls, cfg, model):
        raise ValueError(f"TEST.AUG.ENABLED: {cls.__name__} has no test-time augmentation")


def check_images(cfg, dicts, what):
    """``screen_dataset_images`` as DATALOADER.CHECK_IMAGES / SKIP_DAMAGED_IMAGES say: raises
    DamagedImageError naming the damaged files, or (skip) returns the dicts of the good ones."""
    if not cfg.DATALOADER.CHECK_IMAGES:
        return dicts
    return screen_dataset_images(dicts, what, skip=cfg.DATALOADER.SKIP_DAMAGED_IMAGES)


class MultiTaskTrainer(PoseTrainer):
    """The multitask R-CNN's trainer: its config keys and keypoint test-time augmentation."""

    add_config = staticmethod(add_multitask_config)

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Evaluate with test-time augmentation (TEST.AUG.*): boxes, masks and keypoints, results
        keyed with a "_TTA" suffix as detectron2's examples do."""
        from collections import OrderedDict

        from ..modeling.test_time_augmentation import MultiTaskRCNNWithTTA

        evaluators = [
            cls.build_evaluator(
                cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name)
            )
            for name in cfg.DATASETS.TEST
        ]
        results = cls.test(cfg, MultiTaskRCNNWithTTA(cfg, model), evaluators)
        return OrderedDict((k + "_TTA", v) for k, v in results.items())


def scale_lr(param_groups, chosen, factor):
    """Optimizer parameter groups with the lr of the ``chosen`` parameters (a set) times
    ``factor``."""
    out = []
    for group in param_groups:
        for inside in (False, True):
            members = [p for p in group["params"] if (p in chosen) == inside]
            if members:
                out.append(
                    {**group, "params": members, **({"lr": group["lr"] * factor} if inside else {})}
                )
    return out


def setup_cfg(args, add_config_fns=(), base_cfg=None):
    """Build the config from ``--config-file`` and ``opts`` on top of the project's keys, check
    the device, and run detectron2's ``default_setup`` (logging, output dir, seed)."""
    cfg = base_cfg if base_cfg is not None else get_pose_cfg()
    for fn in add_config_fns:
        fn(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    check_device(cfg)
    check_datasets(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def check_device(cfg):
    """No silent fallback from CUDA to CPU: a CUDA config on a CPU machine is an error."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but this machine has no CUDA; "
            "add `MODEL.DEVICE cpu` to the command line (or use a configs/Synthetic recipe)"
        )
    deform = any(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE)
    if deform and cfg.MODEL.BACKBONE.NAME in ("build_resnet_backbone", "build_resnet_fpn_backbone"):
        from ..env import detectron2_has_cpp_ops

        if not (cfg.MODEL.DEVICE.startswith("cuda") and detectron2_has_cpp_ops()):
            # detectron2's own deformable blocks run only through its CUDA extension.
            raise RuntimeError(
                "MODEL.RESNETS.DEFORM_ON_PER_STAGE with MODEL.BACKBONE.NAME "
                f"{cfg.MODEL.BACKBONE.NAME!r} needs detectron2's CUDA ops; use "
                "MODEL.BACKBONE.NAME build_multitask_resnet_fpn_backbone (or "
                "build_multitask_resnet_backbone), whose DCNv2 runs on CPU and CUDA"
            )


def check_datasets(cfg):
    """Fail early, naming the key, on an unregistered dataset or a keypoint head whose size does
    not match the keypoint layout of the data."""
    known = set(DatasetCatalog.list())
    for key in ("TRAIN", "TEST"):
        for name in getattr(cfg.DATASETS, key):
            if name not in known:
                raise KeyError(
                    f"DATASETS.{key} names {name!r}, which is not a registered dataset; "
                    f"registered: {sorted(known)}"
                )
            names = MetadataCatalog.get(name).get("keypoint_names")
            if (
                cfg.MODEL.KEYPOINT_ON
                and names
                and len(names) != cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS
            ):
                raise ValueError(
                    "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS is "
                    f"{cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS} "
                    f"but dataset {name!r} has {len(names)} keypoints"
                )


def summary_line(results, minutes=None, prefix="summary") -> str:
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
    start = time.perf_counter()
    cfg = setup_cfg(args, (trainer_cls.add_config, *add_config_fns))
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        checkpointer_for(cfg, trainer_cls.checkpointer_class)(
            model, save_dir=cfg.OUTPUT_DIR
        ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
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
            with open(os.path.join(cfg.OUTPUT_DIR, f"results_{name}.json"), "w") as f:
                json.dump(res, f, indent=1)
            print(summary_line(res, minutes, prefix=f"{prefix} {name}"))
            tta = {k[: -len("_TTA")]: v for k, v in res.items() if k.endswith("_TTA")}
            if tta:
                print(summary_line(tta, minutes, prefix=f"{prefix} {name} TTA"))
    return results
