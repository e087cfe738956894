"""The top-down stage's training and test data, on the shared preparation of
``multitask_pose/data/build.py`` (joint training, image checks, selection, hard negatives, the
resumable loader): the trainer's loader builders only call these.

Training works on persons: each dataset's dicts become one sample per labelled person
(``mapper.person_dicts``), the first dataset's with its mined hard negatives as extra samples
(``multitask_pose/data/hard_negatives.py``), cropped and encoded by :class:`TopDownTrainMapper`.
"""

import logging

from detectron2.data import get_detection_dataset_dicts

from multitask_pose.data.build import (
    build_resumable_train_loader,
    build_test_loader,
    training_parts,
)
from multitask_pose.data.hard_negatives import log_mined, mine_from_config, negative_person_dicts

from .mapper import TopDownTestMapper, TopDownTrainMapper, person_dicts

__all__ = [
    "build_topdown_test_loader",
    "build_topdown_train_loader",
    "hard_negative_samples",
    "topdown_train_samples",
]

logger = logging.getLogger(__name__)


def topdown_train_samples(cfg):
    """The training samples of DATASETS.TRAIN, one list per dataset: its persons with at least
    INPUT.TOPDOWN.MIN_KEYPOINTS labelled keypoints (:func:`training_parts` in the model's
    keypoint layout), the first dataset's followed by its hard negatives
    (:func:`hard_negative_samples`)."""
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
        if cfg.INPUT.HARD_NEGATIVES.FILE and i == 0:
            persons = persons + hard_negative_samples(cfg, dicts)
        samples.append(persons)
    return samples


def hard_negative_samples(cfg, dicts):
    """INPUT.HARD_NEGATIVES.FILE's mined boxes over ``dicts`` (the first training dataset's) as
    negative person samples (:func:`negative_person_dicts`)."""
    if cfg.MODEL.TOPDOWN.CUE:
        raise ValueError(
            "INPUT.HARD_NEGATIVES.FILE with a cue model (MODEL.TOPDOWN.CUE"
            f" {cfg.MODEL.TOPDOWN.CUE!r}) is not supported: negatives have no hints"
        )
    mined, report = mine_from_config(cfg, dicts)
    negatives = negative_person_dicts(dicts, mined, cfg.MODEL.TOPDOWN.NUM_KEYPOINTS)
    log_mined(report, len(negatives), "crops")
    return negatives


def build_topdown_train_loader(cfg, codec=None):
    """Person crops of DATASETS.TRAIN (:func:`topdown_train_samples`) with the targets of
    ``codec`` (the model's; by default built from the config as the model builds it)."""
    return build_resumable_train_loader(
        cfg,
        topdown_train_samples(cfg),
        TopDownTrainMapper(cfg, is_train=True, codec=codec),
        aspect_ratio_grouping=False,
    )


def build_topdown_test_loader(cfg, dataset_name):
    """Whole images of ``dataset_name`` with the configured person boxes (TopDownTestMapper)."""
    return build_test_loader(cfg, dataset_name, TopDownTestMapper(cfg, dataset_name))
