"""Trainer pieces shared by both stages' train scripts: trainer base, CPU-capable launch, config
set-up."""

from .checkpoint import PosePredictor, SafeCheckpointer, UnsafeCheckpointError
from .launch import create_ddp_model, launch
from .trainer import (
    MultiTaskTrainer,
    PoseTrainer,
    check_datasets,
    check_device,
    results_summary,
    setup_cfg,
    train_net_main,
)

__all__ = [
    "MultiTaskTrainer",
    "PosePredictor",
    "PoseTrainer",
    "SafeCheckpointer",
    "UnsafeCheckpointError",
    "check_datasets",
    "check_device",
    "create_ddp_model",
    "launch",
    "setup_cfg",
    "results_summary",
    "train_net_main",
]
