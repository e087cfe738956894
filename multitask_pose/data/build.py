"""The training and test data of both stages, as detectron2's ``data/build.py``: the trainers'
``build_train_loader`` / ``build_test_loader`` only call these.

A training set goes DATASETS.TRAIN -> one list of dicts per dataset, mapped into the first one's
keypoint layout (``joint_training.py``) -> image files checked (``image_check.py``) ->
annotations selected (``selection.py``) -> hard negatives mined over the first dataset
(``hard_negatives.py``) -> a loader that resumes exactly and mixes the datasets by
DATASETS.TRAIN_RATIOS (``resumable_loader.py``). :func:`training_parts` is the shared part; the
R-CNN's dicts and mapper are :func:`build_rcnn_train_loader`'s, the top-down stage's are in its
project (``pose_topdown/data/build.py``).
"""

import logging

from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import build as d2_build
from detectron2.utils import comm

from .hard_negatives import HardNegativeMapper, log_mined, mine_from_config, with_hard_negatives
from .image_check import screen_dataset_images
from .joint_training import check_ratios, describe_parts, load_training_parts
from .resumable_loader import PositionedDataset, ResumableTrainLoader
from .selection import unlabel_inconsistent

__all__ = [
    "build_rcnn_train_loader",
    "build_resumable_train_loader",
    "build_test_loader",
    "check_images",
    "select_training_annotations",
    "training_parts",
]

logger = logging.getLogger(__name__)


def training_parts(cfg, load, keypoints, min_keypoints=0):
    """DATASETS.TRAIN's dicts, one list per dataset: loaded by ``load(name)``, mapped into the
    model's keypoint layout (:func:`~multitask_pose.data.joint_training.load_training_parts`),
    their images checked (:func:`check_images`) and their annotations selected
    (:func:`select_training_annotations`)."""
    names = tuple(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("DATASETS.TRAIN is empty: name the training dataset(s)")
    check_ratios(cfg.DATASETS.TRAIN_RATIOS, names)  # a bad list fails before any loading
    parts, _ = load_training_parts(names, load, keypoints, min_keypoints)
    out = []
    for name, dicts in zip(names, parts):
        what = f"DATASETS.TRAIN dataset {name!r}"
        dicts = select_training_annotations(cfg, check_images(cfg, dicts, what), what)
        if not dicts:
            raise ValueError(f"{what} has no training image left")
        out.append(dicts)
    return out


def select_training_annotations(cfg, dicts, what):
    """With DATASETS.KEYPOINT_SELECTION, the training dicts with the keypoints of the persons
    the OKS team's filter rejects unlabelled (:func:`unlabel_inconsistent`), logged."""
    if not cfg.DATASETS.KEYPOINT_SELECTION:
        return dicts
    dicts, judged, rejected = unlabel_inconsistent(dicts)
    logger.info(
        "DATASETS.KEYPOINT_SELECTION: %d of %d persons with keypoints in %s fail the box/keypoint"
        " consistency line; their keypoints are unlabelled",
        rejected,
        judged,
        what,
    )
    return dicts


def check_images(cfg, dicts, what):
    """``screen_dataset_images`` as DATALOADER.CHECK_IMAGES / SKIP_DAMAGED_IMAGES say: raises
    DamagedImageError naming the damaged files, or (skip) returns the dicts of the good ones."""
    if not cfg.DATALOADER.CHECK_IMAGES:
        return dicts
    return screen_dataset_images(dicts, what, skip=cfg.DATALOADER.SKIP_DAMAGED_IMAGES)


def build_rcnn_train_loader(cfg):
    """The R-CNN's loader of DATASETS.TRAIN: detectron2's dataset dicts (:func:`training_parts`)
    through its DatasetMapper; with INPUT.HARD_NEGATIVES.FILE the first dataset's images carry
    their mined hard negatives (``HardNegativeMapper``, for ``MultiTaskRCNN``)."""
    kp_on = cfg.MODEL.KEYPOINT_ON
    names = tuple(cfg.DATASETS.TRAIN)
    proposals = dict(zip(names, cfg.DATASETS.PROPOSAL_FILES_TRAIN))

    def load(name):
        return get_detection_dataset_dicts(
            [name],
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            proposal_files=[proposals[name]] if cfg.MODEL.LOAD_PROPOSALS else None,
        )

    parts = training_parts(
        cfg, load, kp_on, cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if kp_on else 0
    )
    mapper = DatasetMapper
    if cfg.INPUT.HARD_NEGATIVES.FILE:
        mined, report = mine_from_config(cfg, parts[0])
        log_mined(report, report["mined"], "background proposals")
        parts[0] = with_hard_negatives(parts[0], mined)
        mapper = HardNegativeMapper
    # detectron2's mapper takes its flip map from every DATASETS.TRAIN entry and refuses
    # different layouts; after the mapping above, the first dataset's is every sample's.
    first = cfg.clone()
    first.defrost()
    first.DATASETS.TRAIN = names[:1]
    return build_resumable_train_loader(cfg, parts, mapper(first, True))


def build_resumable_train_loader(cfg, parts, mapper, aspect_ratio_grouping=None):
    """With DATALOADER.EXACT_RESUME (default) a :class:`ResumableTrainLoader` of ``parts``
    (a list of dicts per training dataset, or one list of dicts) through ``mapper``, whose
    batches are a function of (SEED, rank, iteration) so that a resumed run continues
    exactly, each dataset drawn by DATASETS.TRAIN_RATIOS when set; otherwise detectron2's
    ``build_detection_train_loader``. ``aspect_ratio_grouping`` None means
    DATALOADER.ASPECT_RATIO_GROUPING."""
    if parts and isinstance(parts[0], dict):
        parts = [parts]
    dicts = [d for p in parts for d in p]
    ratios = check_ratios(cfg.DATASETS.TRAIN_RATIOS, cfg.DATASETS.TRAIN)
    if ratios is not None and len(parts) != len(ratios):
        raise ValueError(
            f"DATASETS.TRAIN_RATIOS has {len(ratios)} weights for {len(parts)} datasets"
        )
    grouping = (
        cfg.DATALOADER.ASPECT_RATIO_GROUPING
        if aspect_ratio_grouping is None
        else aspect_ratio_grouping
    )
    if not cfg.DATALOADER.EXACT_RESUME:
        if ratios is not None:
            raise ValueError(
                "DATASETS.TRAIN_RATIOS needs DATALOADER.EXACT_RESUME True (its loader draws"
                " the datasets by ratio; detectron2's samplers cannot)"
            )
        return build_detection_train_loader(
            cfg, dataset=dicts, mapper=mapper, aspect_ratio_grouping=grouping
        )
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN!r} has no exact resume:"
            " set DATALOADER.EXACT_RESUME False to use it"
        )
    if cfg.SEED < 0:
        logger.warning(
            "SEED is %d (a new random seed per run): a resumed run will not see the batches"
            " the killed one would have; set SEED to resume exactly",
            cfg.SEED,
        )
    if len(parts) > 1:
        unit = "images" if isinstance(mapper, DatasetMapper) else "samples"
        logger.info(describe_parts(cfg.DATASETS.TRAIN, [len(p) for p in parts], ratios, unit))
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    mix = {} if ratios is None else dict(part_sizes=[len(p) for p in parts], ratios=ratios)
    return ResumableTrainLoader(
        PositionedDataset(dicts, mapper, seed, **mix),
        cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=grouping,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


def build_test_loader(cfg, dataset_name, mapper=None):
    """detectron2's test loader of ``dataset_name`` (with ``mapper``, default detectron2's
    DatasetMapper), whose image files are checked first (:func:`check_images`)."""
    kwargs = d2_build._test_loader_from_config(cfg, dataset_name, mapper=mapper)
    kwargs["dataset"] = check_images(cfg, kwargs["dataset"], f"test dataset {dataset_name!r}")
    return build_detection_test_loader(**kwargs)
