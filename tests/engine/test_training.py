"""A short CPU training run through tools/train_net.py learns: the loss falls and held-out AP rises
clearly above the untrained model's. The trained weights are shared with the predictor tests."""
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

from conftest import RECIPE, TRAIN_OPTS, read_metrics
from multitask_pose import get_multitask_cfg
from multitask_pose.engine import MultiTaskTrainer


def eval_cfg(weights):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(TRAIN_OPTS + ["MODEL.WEIGHTS", str(weights)])
    return cfg


def evaluate(weights):
    cfg = eval_cfg(weights)
    torch.manual_seed(0)
    model = MultiTaskTrainer.build_model(cfg)
    if weights:
        DetectionCheckpointer(model).load(str(weights))
    return MultiTaskTrainer.test(cfg, model)


def test_training_learns(trained_run):
    out_dir, _ = trained_run
    metrics = [m for m in read_metrics(out_dir) if "total_loss" in m]
    first = np.median([m["total_loss"] for m in metrics[:3]])
    last = np.median([m["total_loss"] for m in metrics[-3:]])
    assert last < 0.7 * first, (first, last)

    before = evaluate("")
    after = evaluate(out_dir / "model_final.pth")
    print("untrained:", {t: round(r["AP"], 2) for t, r in before.items()})
    print("trained:  ", {t: round(r["AP"], 2) for t, r in after.items()})
    assert after["bbox"]["AP"] > before["bbox"]["AP"] + 10.0  # AP in percent
    assert after["segm"]["AP"] > before["segm"]["AP"] + 5.0
    assert after["keypoints"]["AP50"] > before["keypoints"]["AP50"] + 2.0
