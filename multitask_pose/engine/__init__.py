"""Trainer pieces shared by both stages' train scripts: trainer base, CPU-capable launch, config
set-up."""

from .checkpoint import PosePredictor, SafeCheckpointer, UnsafeCheckpointError
from .launch import create_ddp_model, launch
from .setup import check_datasets, check_device, setup_cfg
from .train_net import results_summary, train_net_main
from .trainer import MultiTaskTrainer, PoseTrainer

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
