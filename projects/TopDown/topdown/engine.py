"""Trainer and checkpointer of the top-down stage (used by projects/TopDown/train_net.py)."""

import logging
import os

from detectron2.data import (
    get_detection_dataset_dicts,
)

from multitask_pose.engine import PoseTrainer
from multitask_pose.engine.checkpoint import SafeCheckpointer
from multitask_pose.engine.trainer import training_parts
from multitask_pose.evaluation import PoseCOCOEvaluator

from .config import add_topdown_config
from .data.mapper import TopDownTestMapper, TopDownTrainMapper, person_dicts

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
        built from the config as the model builds it). Several datasets are mapped into the
        first one's keypoint layout and mixed by DATASETS.TRAIN_RATIOS
        (:mod:`multitask_pose.data.joint_training`); a dataset's hard negatives
        (INPUT.TOPDOWN.HARD_NEGATIVES_FILE, over the first dataset's images) are drawn with its
        persons."""
        parts = training_parts(
            cfg, lambda name: get_detection_dataset_dicts([name], filter_empty=False), True
        )
        samples = []
        for i, (name, dicts) in enumerate(zip(cfg.DATASETS.TRAIN, parts)):
            persons = person_dicts(
                dicts, cfg.INPUT.TOPDOWN.MIN_KEYPOINTS, cfg.INPUT.TOPDOWN.GT_BOX_MINUS_ONE
            )
            if not persons:
                raise ValueError(
                    f"DATASETS.TRAIN dataset {name!r} has no person with at least"
                    f" {cfg.INPUT.TOPDOWN.MIN_KEYPOINTS} labelled keypoints"
                    " (INPUT.TOPDOWN.MIN_KEYPOINTS)"
                )
            logger.info(
                "Top-down training on %d persons from %d images of %s",
                len(persons), len(dicts), name,
            )  # fmt: skip
            if cfg.INPUT.TOPDOWN.HARD_NEGATIVES_FILE and i == 0:
                persons = persons + cls._hard_negatives(cfg, dicts)
            samples.append(persons)
        return cls.build_resumable_train_loader(
            cfg,
            samples,
            TopDownTrainMapper(cfg, is_train=True, codec=codec),
            aspect_ratio_grouping=False,
        )

    @staticmethod
    def _hard_negatives(cfg, dicts):
        """INPUT.TOPDOWN.HARD_NEGATIVES_FILE's mined crops (:func:`negative_person_dicts`)."""
        from multitask_pose.data.hard_negatives import (
            check_max_keypoints,
            check_rule,
            holding_note,
            load_detection_file,
            rule_note,
        )

        from .data.mapper import negative_person_dicts

        path, tin = cfg.INPUT.TOPDOWN.HARD_NEGATIVES_FILE, cfg.INPUT.TOPDOWN
        if cfg.MODEL.TOPDOWN.CUE:
            raise ValueError(
                "INPUT.TOPDOWN.HARD_NEGATIVES_FILE with a cue model (MODEL.TOPDOWN.CUE"
                f" {cfg.MODEL.TOPDOWN.CUE!r}) is not supported: negatives have no hints"
            )
        check_rule(tin.HARD_NEGATIVE_RULE, "INPUT.TOPDOWN.HARD_NEGATIVE_RULE")
        key = "INPUT.TOPDOWN.HARD_NEGATIVE_MAX_KEYPOINTS"
        check_max_keypoints(tin.HARD_NEGATIVE_MAX_KEYPOINTS, key)
        # (mined over the first training set's images: a file made for other images is refused)
        detections = load_detection_file(path, "INPUT.TOPDOWN.HARD_NEGATIVES_FILE",
                                         cfg.DATASETS.TRAIN[0], dicts)  # fmt: skip
        try:
            negatives, report = negative_person_dicts(
                dicts, detections, cfg.MODEL.TOPDOWN.NUM_KEYPOINTS,
                tin.HARD_NEGATIVE_SCORE, tin.HARD_NEGATIVE_IOU, tin.HARD_NEGATIVE_MAX_KEYPOINTS,
                rule=tin.HARD_NEGATIVE_RULE,
            )  # fmt: skip
        except ValueError as e:
            raise ValueError(f"INPUT.TOPDOWN.HARD_NEGATIVES_FILE {path}: {e}") from None
        logger.info(
            "Hard negatives: %d crops mined from %d of %d detections scoring >= %s (%s%s) in %d"
            " images",
            len(negatives), report["confident"], report["detections"], tin.HARD_NEGATIVE_SCORE,
            rule_note(report), holding_note(report), report["images_with_negatives"],
        )  # fmt: skip
        return negatives

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return super().build_test_loader(cfg, dataset_name, TopDownTestMapper(cfg, dataset_name))

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
