"""Trainer and checkpointer of the top-down stage (used by projects/TopDown/train_net.py)."""

import logging
import os

from multitask_pose.engine import PoseTrainer
from multitask_pose.engine.checkpoint import SafeCheckpointer
from multitask_pose.evaluation import PoseCOCOEvaluator

from .config import add_topdown_config
from .data.build import build_topdown_test_loader, build_topdown_train_loader
from .data.mapper import TopDownTestMapper

__all__ = ["TopDownCheckpointer", "TopDownTrainer"]

logger = logging.getLogger(__name__)


class TopDownCheckpointer(SafeCheckpointer):
    """The project's safe checkpointer (detectron2's, refusing code in pickles) that also takes
    the official HRNet / SimpleBaseline checkpoints (and ImageNet backbones) as they are
    released: their names lack this model's ``pose_net.`` prefix, may carry DataParallel's
    ``module.`` and a ``state_dict`` wrapper. Keys the model does not have (an ImageNet
    classifier) are reported by fvcore as unexpected and not loaded."""

    def _load_file(self, filename):
        loaded = super()._load_file(filename)
        state = loaded["model"]
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not any(k.startswith("pose_net.") for k in state):
            state = {
                "pose_net." + (k[len("module.") :] if k.startswith("module.") else k): v
                for k, v in state.items()
            }
            logger.info(
                "%s: official checkpoint names, mapped under pose_net.", os.path.basename(filename)
            )
        loaded["model"] = state
        return loaded


class TopDownTrainer(PoseTrainer):
    """Trains on person crops of DATASETS.TRAIN and evaluates images of DATASETS.TEST with the
    configured box source, with the same COCO evaluator (boxes and keypoints) as the R-CNN."""

    checkpointer_class = TopDownCheckpointer
    add_config = staticmethod(add_topdown_config)
    stage = "topdown"

    def __init__(self, cfg):
        # The training mapper encodes with the model's own codec: one object makes the targets
        # and decodes the predictions. detectron2's trainer builds the model, then the loader,
        # through these two methods; the instance attributes pass the model between them.
        if cfg.TEST.TOPDOWN.BOX_SOURCE == "file" or cfg.MODEL.TOPDOWN.CUE:
            # The detection (or keypoint results) file and a cue's hint file are read at the
            # first evaluation: check them now, not after the training (a missing or mismatched
            # file, or a hint cue without hints, is an error here).
            for name in cfg.DATASETS.TEST:
                TopDownTestMapper(cfg, name)
        built = []
        self.build_model = lambda c: built.append(type(self).build_model(c)) or built[-1]
        self.build_train_loader = lambda c: type(self).build_train_loader(c, built[-1].codec)
        super().__init__(cfg)
        del self.build_model, self.build_train_loader

    @classmethod
    def build_train_loader(cls, cfg, codec=None):
        """Person crops of DATASETS.TRAIN with the targets of ``codec`` (the model's; by default
        built from the config as the model builds it): :func:`build_topdown_train_loader`."""
        return build_topdown_train_loader(cfg, codec)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_topdown_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        # from_cfg describes the results by the config's model (their record).
        return PoseCOCOEvaluator.from_cfg(
            cfg, dataset_name, output_dir=output_folder, tasks=("bbox", "keypoints")
        )

    @classmethod
    def test_with_TTA(cls, cfg, model):
        raise ValueError(
            "TEST.AUG does not apply to the top-down stage: its flip test is TEST.TOPDOWN.FLIP_TEST"
        )
