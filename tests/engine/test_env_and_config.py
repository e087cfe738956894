"""The environment report, the optimizer switch and the per-task loss weights."""
import re
import subprocess
import sys

import pytest
import torch
from detectron2.utils.events import EventStorage

from conftest import RECIPE
from multitask_pose import get_multitask_cfg
from multitask_pose.env import detectron2_has_cpp_ops
from multitask_pose.engine import MultiTaskTrainer


def test_env_report_names_what_it_found():
    proc = subprocess.run([sys.executable, "-m", "multitask_pose.env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for field in ("torch", "detectron2", "CUDA available", "faster-coco-eval"):
        assert re.search(rf"^{field}\s+\S", proc.stdout, re.M), field
    ops = "present" if detectron2_has_cpp_ops() else "absent"
    assert re.search(rf"^detectron2 C\+\+ ops\s+{ops}", proc.stdout, re.M)


def recipe_cfg(*opts):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(list(opts))
    return cfg


def test_optimizer_switch():
    cfg = recipe_cfg("SOLVER.OPTIMIZER", "AdamW", "SOLVER.BASE_LR", "0.001")
    model = MultiTaskTrainer.build_model(cfg)
    opt = MultiTaskTrainer.build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 0.001
    assert isinstance(MultiTaskTrainer.build_optimizer(recipe_cfg("SOLVER.OPTIMIZER", "SGD"), model), torch.optim.SGD)
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER='Adam'"):
        MultiTaskTrainer.build_optimizer(recipe_cfg("SOLVER.OPTIMIZER", "Adam"), model)


def test_task_loss_weights_scale_the_losses(synth_mini):
    from detectron2.data import DatasetMapper

    record = next(r for r in synth_mini["synth_people_mini_train"] if r["annotations"])
    batch = [DatasetMapper(recipe_cfg(), is_train=True)(dict(record))]
    losses = {}
    for box_w, mask_w in ((1.0, 1.0), (2.0, 0.5)):
        cfg = recipe_cfg("MODEL.ROI_BOX_HEAD.LOSS_WEIGHT", str(box_w), "MODEL.ROI_MASK_HEAD.LOSS_WEIGHT", str(mask_w))
        torch.manual_seed(0)
        model = MultiTaskTrainer.build_model(cfg)
        torch.manual_seed(1)
        with EventStorage(0):
            losses[(box_w, mask_w)] = {k: v.item() for k, v in model(batch).items()}
    base, scaled = losses[(1.0, 1.0)], losses[(2.0, 0.5)]
    assert scaled["loss_cls"] == pytest.approx(2 * base["loss_cls"], rel=1e-5)
    assert scaled["loss_box_reg"] == pytest.approx(2 * base["loss_box_reg"], rel=1e-5)
    assert scaled["loss_mask"] == pytest.approx(0.5 * base["loss_mask"], rel=1e-5)
    assert scaled["loss_keypoint"] == pytest.approx(base["loss_keypoint"], rel=1e-5)
