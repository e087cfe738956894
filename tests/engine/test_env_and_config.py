"""The environment report, the optimizer switch and the per-task loss weights."""

import re
import subprocess
import sys

import pytest
import torch
from detectron2.utils.events import EventStorage

from conftest import RECIPE
from multitask_pose import get_multitask_cfg
from multitask_pose.engine import MultiTaskTrainer
from multitask_pose.env import detectron2_has_cpp_ops


def test_env_report_names_what_it_found():
    proc = subprocess.run(
        [sys.executable, "-m", "multitask_pose.env"], capture_output=True, text=True, timeout=300
    )
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
    assert isinstance(
        MultiTaskTrainer.build_optimizer(recipe_cfg("SOLVER.OPTIMIZER", "SGD"), model),
        torch.optim.SGD,
    )
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER='Adam'"):
        MultiTaskTrainer.build_optimizer(recipe_cfg("SOLVER.OPTIMIZER", "Adam"), model)


# The cascade needs class-agnostic box regression (detectron2's CascadeROIHeads asserts it).
CASCADE = (
    "MODEL.ROI_HEADS.NAME",
    "MultiTaskCascadeROIHeads",
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG",
    "True",
)


@pytest.mark.parametrize("heads", [(), CASCADE], ids=["standard", "cascade"])
def test_task_loss_weights_scale_the_losses(synth_mini, heads):
    """The task weights sit on the heads, so any ROI heads combine with them: every box loss
    (each cascade stage's) scales by the box weight, the mask loss by the mask weight, the
    keypoint loss not at all."""
    from detectron2.data import DatasetMapper

    record = next(r for r in synth_mini["synth_people_mini_train"] if r["annotations"])
    batch = [DatasetMapper(recipe_cfg(), is_train=True)(dict(record))]
    losses = {}
    for box_w, mask_w in ((1.0, 1.0), (2.0, 0.5)):
        cfg = recipe_cfg(
            "MODEL.ROI_BOX_HEAD.LOSS_WEIGHT",
            str(box_w),
            "MODEL.ROI_MASK_HEAD.LOSS_WEIGHT",
            str(mask_w),
            *heads,
        )
        torch.manual_seed(0)
        model = MultiTaskTrainer.build_model(cfg)
        torch.manual_seed(1)
        with EventStorage(0):
            losses[(box_w, mask_w)] = {k: v.item() for k, v in model(batch).items()}
    base, scaled = losses[(1.0, 1.0)], losses[(2.0, 0.5)]
    box_keys = [k for k in base if k.startswith(("loss_cls", "loss_box_reg"))]
    assert len(box_keys) == (6 if heads else 2), box_keys  # three stages in the cascade
    for k in box_keys:
        assert scaled[k] == pytest.approx(2 * base[k], rel=1e-5), k
    assert scaled["loss_mask"] == pytest.approx(0.5 * base["loss_mask"], rel=1e-5)
    assert scaled["loss_keypoint"] == pytest.approx(base["loss_keypoint"], rel=1e-5)
