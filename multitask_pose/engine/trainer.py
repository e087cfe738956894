"""The trainer both stages subclass (``PoseTrainer``) and the R-CNN's (``MultiTaskTrainer``); the
config set-up is in :mod:`setup`, the body of the train_net scripts in :mod:`train_net`."""

import glob
import logging
import os
import pickle
import random
import warnings
from unittest import mock

import numpy as np
import torch
from detectron2.engine import DefaultTrainer, HookBase
from detectron2.engine import defaults as d2_defaults
from detectron2.engine import hooks as d2_hooks
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from fvcore.common.param_scheduler import ParamScheduler

from ..config import add_multitask_config, add_pose_config
from ..data.build import build_rcnn_train_loader, build_test_loader
from ..data.resumable_loader import mix_seed
from ..evaluation import PoseCOCOEvaluator
from ..layers import deform_offset_parameters
from ..modeling.meta_arch import MultiTaskRCNN
from .checkpoint import SafeCheckpointer, UnsafeCheckpointError, checkpointer_for
from .cli import ConfigError
from .launch import create_ddp_model
from .mixed_precision import build_train_loop

logger = logging.getLogger(__name__)

# What loading a checkpoint raises when its file is missing (fvcore asserts), cut short or not
# a checkpoint.
_LOAD_ERRORS = (AssertionError, EOFError, OSError, RuntimeError, pickle.UnpicklingError)

__all__ = ["MultiTaskTrainer", "PoseTrainer", "RepeatedWarmup", "scale_lr"]


class PoseTrainer(DefaultTrainer):
    """The trainer base of both stages: detectron2's ``DefaultTrainer`` with the project's COCO
    evaluator (bbox, segm, keypoints with the dataset's OKS sigmas), SOLVER.OPTIMIZER, and
    multi-process training on CPU as well as CUDA."""

    # Loads MODEL.WEIGHTS and saves checkpoints; a project whose released weights need a name
    # mapping sets its own subclass of SafeCheckpointer here.
    checkpointer_class = SafeCheckpointer
    # Adds the config keys of the trainer's models to detectron2's (train_net_main calls it).
    add_config = staticmethod(add_pose_config)
    stage = None  # the configs a subclass takes: "rcnn" or "topdown" (cli.config_stage)

    def __init__(self, cfg):
        # DefaultTrainer wraps the model with detectron2's create_ddp_model, which gives CPU
        # modules device ids that DistributedDataParallel rejects; use the CPU-aware one. Its
        # AMPTrainer (SOLVER.AMP.ENABLED) runs on CUDA alone: ours chooses the precision per
        # device (mixed_precision.py).
        with (
            mock.patch.object(d2_defaults, "create_ddp_model", create_ddp_model),
            mock.patch.object(d2_defaults, "AMPTrainer", build_train_loop(cfg)),
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
    def build_lr_scheduler(cls, cfg, optimizer):
        """detectron2's; with SOLVER.START_ITER its warm-up is repeated from that iteration."""
        start, max_iter = cfg.SOLVER.START_ITER, cfg.SOLVER.MAX_ITER
        if start < 0 or (start and start >= max_iter):  # 0 stays valid for any MAX_ITER
            raise ConfigError(f"SOLVER.START_ITER={start}: expected 0 <= it < SOLVER.MAX_ITER"
                              f" ({max_iter})")  # fmt: skip
        if start and not cfg.MODEL.WEIGHTS:
            raise ConfigError(
                f"SOLVER.START_ITER={start} continues a training from its weights: set"
                " MODEL.WEIGHTS to them (an empty one would start from random weights midway)"
            )
        scheduler = super().build_lr_scheduler(cfg, optimizer)
        if start:
            # detectron2's LRMultiplier keeps its fvcore schedule in _multiplier and computes
            # each step's lr from it alone (its state_dict holds the position only), so
            # wrapping that schedule changes the lr of every later step, resumed ones included.
            scheduler._multiplier = RepeatedWarmup(
                scheduler._multiplier,
                start / max_iter,
                cfg.SOLVER.WARMUP_ITERS / max_iter,
                cfg.SOLVER.WARMUP_FACTOR,
                cfg.SOLVER.WARMUP_METHOD,
            )
        return scheduler

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return PoseCOCOEvaluator.from_cfg(cfg, dataset_name, output_dir=output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        """The R-CNN's training data (:func:`multitask_pose.data.build.build_rcnn_train_loader`):
        image files checked, several datasets in the first one's keypoint layout mixed by
        DATASETS.TRAIN_RATIOS, hard negatives, resumable exactly with DATALOADER.EXACT_RESUME."""
        return build_rcnn_train_loader(cfg)

    def build_hooks(self):
        """detectron2's hooks, after :class:`IterationSeed` with DATALOADER.EXACT_RESUME; the
        periodic checkpointer keeps SOLVER.CHECKPOINT_MAX_TO_KEEP checkpoints when it is set."""
        hooks = super().build_hooks()
        if self.cfg.DATALOADER.EXACT_RESUME:
            hooks.insert(0, IterationSeed(self.cfg.SEED))
        keep = self.cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP
        for hook in hooks:
            if keep > 0 and isinstance(hook, d2_hooks.PeriodicCheckpointer):
                # fvcore's own pruning (max_to_keep), told of the checkpoints a resumed run
                # already has, oldest first, so that they count too.
                hook.max_to_keep = keep
                pattern = os.path.join(self.cfg.OUTPUT_DIR, "model_[0-9]*.pth")
                hook.recent_checkpoints = sorted(glob.glob(pattern))
        return hooks

    @classmethod
    def build_test_loader(cls, cfg, dataset_name, mapper=None):
        """detectron2's test loader of ``dataset_name``, its image files checked first
        (:func:`multitask_pose.data.build.build_test_loader`)."""
        return build_test_loader(cfg, dataset_name, mapper)

    def resume_or_load(self, resume=True):
        """detectron2's; when resuming and ``last_checkpoint`` names no checkpoint (an empty
        name, a missing file) or one that does not load (a run killed while writing it), the
        newest checkpoint of OUTPUT_DIR that loads instead, with a warning, and ``last_checkpoint``
        pointed at it. Raises RuntimeError naming OUTPUT_DIR when none loads."""
        # MODEL.WEIGHTS_EXCLUDE applies to the starting weights, never to the run's own checkpoints
        starting = not (resume and self.checkpointer.has_checkpoint())
        self.checkpointer.exclude = tuple(self.cfg.MODEL.WEIGHTS_EXCLUDE) if starting else ()
        try:
            super().resume_or_load(resume)
            if starting:
                self._start_at(self.cfg.SOLVER.START_ITER)
            return self._start_data_at_iteration()
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
            return self._start_data_at_iteration()
        raise RuntimeError(
            f"cannot resume from {out}: last_checkpoint names {os.path.basename(failed)!r}, which"
            f" does not load ({error}), and no other model_*.pth there loads; start without"
            " --resume or with another OUTPUT_DIR"
        )

    def state_dict(self):
        """detectron2 v0.6's, plus the optimizer's state (SimpleTrainer's state_dict), which
        v0.6's DefaultTrainer leaves out of its checkpoints (fixed upstream after v0.6): without
        it a resumed run restarts SGD momentum / Adam moments from zero."""
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning(
                "the checkpoint has no optimizer state (written before it was saved): the "
                "optimizer starts afresh from the loaded weights"
            )

    def _start_at(self, iteration):
        """Begin a run started from MODEL.WEIGHTS at ``iteration`` (SOLVER.START_ITER): the
        scheduler's position too, so that the first step's lr is that of ``iteration``."""
        if not iteration:
            return
        self.start_iter = iteration
        self.scheduler.last_epoch = iteration - 1
        with warnings.catch_warnings():
            # torch warns of a scheduler step before any optimizer step; this one only moves
            # the schedule to where the run begins
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        logger.info(
            "SOLVER.START_ITER: training continues at iteration %d from %s with a fresh"
            " optimizer, lr %.3g (the warm-up repeated over %d iterations)",
            iteration, self.cfg.MODEL.WEIGHTS, self.optimizer.param_groups[0]["lr"],
            self.cfg.SOLVER.WARMUP_ITERS,
        )  # fmt: skip

    def _start_data_at_iteration(self):
        """Point an exactly resumable loader at the iteration training continues from."""
        if hasattr(self.data_loader, "start_at"):
            self.data_loader.start_at(self.start_iter)
            logger.info("training data continues at iteration %d", self.start_iter)

    @classmethod
    def test_with_TTA(cls, cfg, model):
        raise ValueError(f"TEST.AUG.ENABLED: {cls.__name__} has no test-time augmentation")


class IterationSeed(HookBase):
    """Seeds Python's, numpy's and torch's generators from (SEED, rank, iteration) before every
    step, so the model's own randomness (proposal sampling, dropout) in an iteration does not
    depend on what ran before it: a resumed run draws what the uninterrupted one drew."""

    def __init__(self, seed):
        self.seed = seed if seed >= 0 else comm.shared_random_seed()

    def before_step(self):
        s = mix_seed(self.seed, comm.get_rank(), self.trainer.iter)
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)


class MultiTaskTrainer(PoseTrainer):
    """The multitask R-CNN's trainer: its config keys and keypoint test-time augmentation."""

    add_config = staticmethod(add_multitask_config)
    stage = "rcnn"

    @classmethod
    def build_model(cls, cfg):
        """detectron2's model; with INPUT.HARD_NEGATIVES.FILE one that takes the inputs' hard
        negatives as proposals: a GeneralizedRCNN config builds its subclass ``MultiTaskRCNN``
        (the same parameters), another meta-architecture is refused."""
        if cfg.INPUT.HARD_NEGATIVES.FILE and cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
            cfg = cfg.clone()
            cfg.defrost()
            cfg.MODEL.META_ARCHITECTURE = "MultiTaskRCNN"
        model = super().build_model(cfg)
        if cfg.INPUT.HARD_NEGATIVES.FILE and not isinstance(model, MultiTaskRCNN):
            raise ConfigError(
                "INPUT.HARD_NEGATIVES.FILE needs MODEL.META_ARCHITECTURE MultiTaskRCNN (the"
                " R-CNN that trains on the inputs' hard negatives), not"
                f" {cfg.MODEL.META_ARCHITECTURE}"
            )
        return model

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


class RepeatedWarmup(ParamScheduler):
    """``schedule`` (an fvcore ParamScheduler over the fraction of training done) with its
    warm-up repeated from ``start``: over the following ``length`` the value rises from
    ``factor`` x the schedule's to the schedule's, linearly ("linear") or in one jump at the end
    ("constant"), as detectron2's WarmupParamScheduler does from 0. Neither detectron2 nor fvcore
    has a warm-up that starts midway (their composite schedulers join schedules, they do not
    multiply them)."""

    def __init__(self, schedule, start, length, factor, method="linear"):
        if method not in ("linear", "constant"):
            raise ValueError(f"warm-up method {method!r}; expected 'linear' or 'constant'")
        self.schedule, self.start, self.length = schedule, start, length
        self.factor, self.method = factor, method

    def __call__(self, where):
        value = self.schedule(where)
        done = (where - self.start) / self.length if self.length > 0 else 1.0
        if 0 <= done < 1:
            linear = self.method == "linear"
            value *= self.factor + (1 - self.factor) * done if linear else self.factor
        return value


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
