"""A short CPU training run through tools/train_net.py on SynthPeople learns: the loss falls and
held-out AP rises above the untrained model's. In `make test-slow`: at this length it shows boxes
only (`make test` proves learning by memorisation, tests/engine/test_memorisation.py)."""
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

from conftest import RECIPE, TRAIN_OPTS, read_metrics
from multitask_pose import get_multitask_cfg
from multitask_pose.engine import MultiTaskTrainer


def evaluate(weights, output_dir):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(TRAIN_OPTS + ["MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(output_dir)])
    torch.manual_seed(0)
    model = MultiTaskTrainer.build_model(cfg)
    if weights:
        DetectionCheckpointer(model).load(str(weights))
    return MultiTaskTrainer.test(cfg, model)


@pytest.mark.slow
def test_training_learns(trained_run, tmp_path):
    out_dir, _ = trained_run
    # metrics.json holds 20-iteration medians; the keypoint loss starts near log(56 * 56) = 8.0
    metrics = [m for m in read_metrics(out_dir) if "total_loss" in m]
    first, last = metrics[0], metrics[-1]
    assert last["total_loss"] < 0.92 * first["total_loss"], (first, last)
    assert last["loss_keypoint"] < first["loss_keypoint"] - 0.5, (first, last)

    before = evaluate("", tmp_path / "untrained")
    after = evaluate(out_dir / "model_final.pth", tmp_path / "trained")
    print("untrained:", {t: round(r["AP"], 2) for t, r in before.items()})
    print("trained:  ", {t: round(r["AP"], 2) for t, r in after.items()})
    # 120 iterations from scratch (about 3 minutes) teach boxes first: measured box AP 6.7
    # (AP50 25.7) on a 2-core Xeon and 2.65 (AP50 11.5) on a 2-core AMD EPYC (same seed and
    # optimizer; float differences between CPUs change so short a from-scratch run), against 0
    # untrained (generator version 1); masks
    # and keypoints need the longer runs of `make demo`.
    assert after["bbox"]["AP"] > before["bbox"]["AP"] + 1.5  # AP in percent
    assert after["bbox"]["AP50"] > before["bbox"]["AP50"] + 6.0
    assert after["segm"]["AP50"] > before["segm"]["AP50"]
