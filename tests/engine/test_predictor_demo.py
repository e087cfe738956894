"""DefaultPredictor works after `import multitask_pose`; tools/demo.py writes drawn images and a
COCO results json with the documented fields."""

import json
import subprocess
import sys

import cv2
import numpy as np
import torch
from detectron2.engine import DefaultPredictor

from conftest import RECIPE, ROOT, TRAIN_OPTS
from multitask_pose import get_multitask_cfg

SAMPLES = ROOT / "datasets" / "samples" / "coco"


def predictor_cfg(weights):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(
        TRAIN_OPTS + ["MODEL.WEIGHTS", str(weights), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"]
    )
    return cfg


def test_default_predictor_returns_all_fields(trained_run, synth_mini):
    out_dir, _ = trained_run
    predictor = DefaultPredictor(predictor_cfg(out_dir / "model_final.pth"))
    record = synth_mini["synth_people_mini_val"][0]
    img = cv2.imread(record["file_name"])
    inst = predictor(img)["instances"]
    n = len(inst)
    assert n > 0
    assert inst.image_size == img.shape[:2]
    assert inst.pred_boxes.tensor.shape == (n, 4)
    assert inst.scores.shape == (n,) and inst.pred_classes.shape == (n,)
    assert inst.pred_masks.shape == (n, *img.shape[:2]) and inst.pred_masks.dtype == torch.bool
    k = len(predictor.metadata.keypoint_names)
    assert inst.pred_keypoints.shape == (n, k, 3)
    # keypoints are in image coordinates, near their box
    boxes = inst.pred_boxes.tensor
    kp = inst.pred_keypoints
    assert (kp[..., 0] >= boxes[:, None, 0] - 1).all() and (
        kp[..., 0] <= boxes[:, None, 2] + 1
    ).all()


def test_demo_tool_writes_images_and_results(trained_run, tmp_path):
    out_dir, _ = trained_run
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "demo.py"),
        "--config-file",
        str(RECIPE),
        "--input",
        str(SAMPLES),
        "--output",
        str(out),
        "--dataset",
        "coco_person_sample",
        "--confidence-threshold",
        "0.05",
        *TRAIN_OPTS,
        "MODEL.WEIGHTS",
        str(out_dir / "model_final.pth"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "demo: 4 images" in proc.stdout
    drawn = sorted(p.name for p in out.glob("*_pred.jpg"))
    assert drawn == sorted(p.stem + "_pred.jpg" for p in SAMPLES.glob("*.jpg"))
    results = json.loads((out / "results.json").read_text())
    coco = json.loads((SAMPLES / "test_coco.json").read_text())
    ids = {image["id"] for image in coco["images"]}
    sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    assert len(results) > 0 and {r["image_id"] for r in results} <= ids
    for r in results:
        w, h = sizes[r["image_id"]]
        kp = np.asarray(r["keypoints"]).reshape(-1, 3)
        assert len(kp) == 17 and (kp[:, 0] >= -1).all() and (kp[:, 0] <= w + 1).all()
        assert (kp[:, 1] >= -1).all() and (kp[:, 1] <= h + 1).all()
        assert set(r) >= {
            "image_id",
            "category_id",
            "bbox",
            "score",
            "segmentation",
            "keypoints",
            "file_name",
        }
        assert r["image_id"] in ids
        assert len(r["bbox"]) == 4 and len(r["keypoints"]) % 3 == 0


def test_demo_tool_names_a_missing_input(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "demo.py"),
        "--config-file",
        str(RECIPE),
        "--input",
        str(tmp_path / "nope.jpg"),
        "--output",
        str(tmp_path / "o"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "nope.jpg" in proc.stderr and "FileNotFoundError" in proc.stderr


def test_eval_only_with_flip_tta(trained_run, tmp_path):
    """`train_net.py --eval-only TEST.AUG.ENABLED True` evaluates keypoints with flip TTA next to
    the plain evaluation, as detectron2 users expect, and prints both summary lines."""
    from conftest import run_train_net

    out_dir, _ = trained_run
    opts = list(TRAIN_OPTS)
    opts[opts.index("DATASETS.TEST") + 1] = "('coco_person_sample',)"
    proc = run_train_net(
        [
            "--config-file",
            str(RECIPE),
            "--eval-only",
            *opts,
            "MODEL.WEIGHTS",
            str(out_dir / "model_final.pth"),
            "TEST.AUG.ENABLED",
            "True",
            "TEST.AUG.MIN_SIZES",
            "(256,)",
            "TEST.AUG.MAX_SIZE",
            "256",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        cwd=tmp_path,
    )
    results = json.loads((tmp_path / "results_coco_person_sample.json").read_text())
    for task in ("bbox", "segm", "keypoints"):
        assert task in results and f"{task}_TTA" in results
        assert 0 <= results[f"{task}_TTA"]["AP"] <= 100
    assert "train_net coco_person_sample TTA: box AP" in proc.stdout
    assert (
        tmp_path / "inference_TTA" / "coco_person_sample" / "coco_instances_results.json"
    ).exists()
