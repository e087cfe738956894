"""The config set-up every tool and train script runs: the config file and overrides merged on
the stage's keys, checked (device, datasets, keypoint count) before any work, then detectron2's
``default_setup``."""

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import get_pose_cfg
from .cli import ConfigError, load_config
from .run_lock import output_dir_lock

__all__ = ["UnknownDatasetError", "check_datasets", "check_device", "setup_cfg"]


def setup_cfg(args, add_config_fns=(), base_cfg=None, lock_stack=None, stage=None):
    """Build the config from ``--config-file`` and ``opts`` on top of the project's keys (a
    config of the other ``stage`` or an unknown key is a one-line :class:`ConfigError`, see
    :func:`cli.load_config`), check the device and the datasets, and run detectron2's
    ``default_setup`` (logging, output dir, seed); both packages' loggers also write to
    OUTPUT_DIR/log.txt. With a ``contextlib.ExitStack`` as ``lock_stack``, rank 0 first takes
    OUTPUT_DIR's run lock (:mod:`run_lock`) on it, before anything is written there."""
    cfg = base_cfg if base_cfg is not None else get_pose_cfg()
    for fn in add_config_fns:
        fn(cfg)
    load_config(cfg, args.config_file, args.opts, stage=stage)
    check_device(cfg)
    check_datasets(cfg)
    cfg.freeze()
    if lock_stack is not None:
        lock_stack.enter_context(output_dir_lock(cfg.OUTPUT_DIR, comm.is_main_process()))
    default_setup(cfg, args)
    # detectron2 sets up its own loggers; the project's INFO messages go to the same log.
    for name in ("multitask_pose", "pose_topdown"):
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name)
    return cfg


def check_device(cfg):
    """No silent fallback from CUDA to CPU: a CUDA config on a CPU machine is an error."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but this machine has no CUDA; "
            "add `MODEL.DEVICE cpu` to the command line (or use a configs/Synthetic recipe)"
        )
    deform = any(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE)
    if deform and cfg.MODEL.BACKBONE.NAME in ("build_resnet_backbone", "build_resnet_fpn_backbone"):
        from ..env import detectron2_has_cpp_ops

        if not (cfg.MODEL.DEVICE.startswith("cuda") and detectron2_has_cpp_ops()):
            # detectron2's own deformable blocks run only through its CUDA extension.
            raise ConfigError(
                "MODEL.RESNETS.DEFORM_ON_PER_STAGE with MODEL.BACKBONE.NAME "
                f"{cfg.MODEL.BACKBONE.NAME!r} needs detectron2's CUDA ops; use "
                "MODEL.BACKBONE.NAME build_multitask_resnet_fpn_backbone (or "
                "build_multitask_resnet_backbone), whose DCNv2 runs on CPU and CUDA"
            )


class UnknownDatasetError(ConfigError, KeyError):
    """A config names a dataset that is not registered."""


def check_datasets(cfg):
    """Register DATASETS.REGISTER_COCO's files, then fail early, naming the key, on an
    unregistered dataset or a keypoint head whose size does not match the keypoint layout of the
    data (the test datasets' and the first training dataset's: the others are mapped into it)."""
    from ..data.datasets import register_config_datasets

    register_config_datasets(cfg.DATASETS.REGISTER_COCO)
    known = set(DatasetCatalog.list())
    for key in ("TRAIN", "TEST"):
        for i, name in enumerate(getattr(cfg.DATASETS, key)):
            if name not in known:
                raise UnknownDatasetError(
                    f"DATASETS.{key} names {name!r}, which is not a registered dataset; "
                    f"registered: {sorted(known)}"
                )
            names = MetadataCatalog.get(name).get("keypoint_names")
            if (
                cfg.MODEL.KEYPOINT_ON
                and (key == "TEST" or i == 0)
                and names
                and len(names) != cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS
            ):
                raise ConfigError(
                    "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS is "
                    f"{cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS} "
                    f"but dataset {name!r} has {len(names)} keypoints"
                )
