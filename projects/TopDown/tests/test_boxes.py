"""Box sources: detection files and their errors, filtering, a detector in the loop."""

import json
import logging

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

import multitask_pose  # noqa: F401  (registers the datasets)
from topdown.data import (
    DetectionFileError,
    TopDownTestMapper,
    filter_person_boxes,
    gt_person_boxes,
    load_detection_file,
    person_dicts,
)
from topdown_testing import SAMPLE, OraclePoseNet, _oracle_model, sample_cfg  # noqa: F401


def test_detection_file_errors(tmp_path):
    ids = [785, 40083]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DetectionFileError, match="annotation file"):
        load_detection_file(str(bad), ids)
    bad.write_text(json.dumps([{"image_id": 785, "bbox": [1, 2, 3], "score": 0.5}]))
    with pytest.raises(DetectionFileError, match="bbox"):
        load_detection_file(str(bad), ids)
    bad.write_text(json.dumps([{"image_id": 785, "box": [1, 2, 3, 4]}]))
    with pytest.raises(DetectionFileError, match="entry 0"):
        load_detection_file(str(bad), ids)
    bad.write_text(
        json.dumps([{"image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}])
    )
    with pytest.raises(DetectionFileError, match="not in the dataset"):
        load_detection_file(str(bad), ids)
    bad.write_text("{not json")
    with pytest.raises(DetectionFileError, match="not valid json"):
        load_detection_file(str(bad), ids)
    with pytest.raises(FileNotFoundError, match="DET_FILE"):
        load_detection_file(str(tmp_path / "missing.json"), ids)
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            [
                {"image_id": 785, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.5},
                {"image_id": 785, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9},
            ]
        )
    )
    got = load_detection_file(str(good), ids)
    np.testing.assert_allclose(got[785][0], [[10, 20, 40, 60]])
    assert got[40083][0].shape == (0, 4)


def test_filter_person_boxes_clips_skips_and_logs(caplog):
    boxes = torch.tensor(
        [
            [-10.0, -10.0, 50.0, 80.0],  # partly outside: clipped
            [700.0, 10.0, 800.0, 90.0],  # wholly outside: skipped
            [30.0, 30.0, 30.0, 60.0],  # zero area: skipped
            [10.0, 10.0, 14.0, 200.0],  # thin: below min size
            [100.0, 100.0, 200.0, 300.0],
            [float("nan"), 0.0, 10.0, 10.0],
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.1, 0.5])
    with caplog.at_level(logging.WARNING):
        b, s = filter_person_boxes(boxes, scores, (480, 640), min_size=8, where="image 7")
    assert "image 7: skipped 3 person boxes" in caplog.text
    torch.testing.assert_close(
        b, torch.tensor([[0.0, 0.0, 50.0, 80.0], [100.0, 100.0, 200.0, 300.0]])
    )
    b, s = filter_person_boxes(boxes, scores, (480, 640), score_thresh=0.2, topk=1)
    assert s.tolist() == [pytest.approx(0.95)]


def test_detector_box_source(tmp_path):
    """BOX_SOURCE "detector": a detectron2 model (here the foundation's R-CNN recipe with random
    weights, scores thresholded at 0) finds the boxes inside the top-down model."""
    from pathlib import Path

    from multitask_pose.config import get_multitask_cfg

    root = Path(__file__).resolve().parents[3]
    det_config = root / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth.yaml"
    det_cfg = get_multitask_cfg()
    det_cfg.merge_from_file(str(det_config))
    det_cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    det_cfg.MODEL.KEYPOINT_ON = det_cfg.MODEL.MASK_ON = False
    det_yaml = tmp_path / "detector.yaml"
    det_yaml.write_text(det_cfg.dump())
    torch.manual_seed(0)
    det_weights = tmp_path / "detector.pth"
    torch.save({"model": build_model(det_cfg).state_dict()}, det_weights)
    cfg = sample_cfg(
        "TEST.TOPDOWN.BOX_SOURCE",
        "detector",
        "TEST.TOPDOWN.DETECTOR_CONFIG",
        str(det_yaml),
        "TEST.TOPDOWN.DETECTOR_WEIGHTS",
        str(det_weights),
        "TEST.TOPDOWN.DET_TOPK",
        "7",
        "TEST.TOPDOWN.IOU_NMS_THRESH",
        "1.0",
        "TEST.TOPDOWN.OKS_NMS_THRESH",
        "1.0",
    )
    model = build_model(cfg).eval()
    mapper = TopDownTestMapper(cfg, SAMPLE)
    x = mapper(DatasetCatalog.get(SAMPLE)[0])
    assert "instances" not in x
    with torch.no_grad():
        out = model([x])[0]["instances"]
    assert len(out) == 7 and out.pred_keypoints.shape == (7, 17, 3)
    # The reference: detectron2's DefaultPredictor with the same config and weights on the image
    # file (BGR), its 7 best boxes (it returns them best first, inside the image).
    import cv2
    from detectron2.engine import DefaultPredictor

    det_cfg.MODEL.WEIGHTS = str(det_weights)
    reference = DefaultPredictor(det_cfg)(cv2.imread(DatasetCatalog.get(SAMPLE)[0]["file_name"]))
    expected = reference["instances"].pred_boxes.tensor[:7]
    torch.testing.assert_close(out.pred_boxes.tensor, expected, atol=1e-3, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="DETECTOR_CONFIG"):
        build_model(sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "detector"))


def test_official_gt_box_cleaning():
    """GT_BOX_MINUS_ONE: boxes as the official loader cleans them (HRNet lib/dataset/coco.py
    lines 164-171, written out here per box), for training persons and the "gt" box source."""
    dicts = DatasetCatalog.get(SAMPLE)

    def official(x, y, w, h, width, height):
        x1, y1 = np.max((0, x)), np.max((0, y))
        x2 = np.min((width - 1, x1 + np.max((0, w - 1))))
        y2 = np.min((height - 1, y1 + np.max((0, h - 1))))
        return [x1, y1, x2, y2]

    for d in dicts:
        anns = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
        expected = [official(*a["bbox"], d["width"], d["height"]) for a in anns]  # bbox is XYWH
        boxes, _ = gt_person_boxes(d, minus_one=True)
        np.testing.assert_allclose(boxes, np.array(expected).reshape(-1, 4), atol=1e-3)
        plain, _ = gt_person_boxes(d)
        assert np.all(plain[:, 2:] - boxes[:, 2:] >= 1 - 1e-3)  # one pixel less, or clipped
    cfg = sample_cfg("INPUT.TOPDOWN.GT_BOX_MINUS_ONE", "True")
    x = TopDownTestMapper(cfg, SAMPLE)(dicts[0])
    mapped = x["instances"].gt_boxes.tensor.numpy()
    np.testing.assert_allclose(mapped, gt_person_boxes(dicts[0], True)[0])
    expected = [
        official(*a["bbox"], d["width"], d["height"])
        for d in dicts
        for a in d["annotations"]
        if not a.get("iscrowd", 0) and (np.asarray(a["keypoints"])[2::3] > 0).any()
    ]
    persons = person_dicts(dicts, gt_box_minus_one=True)
    assert len(persons) == len(expected) == len(person_dicts(dicts))
    np.testing.assert_allclose([p["bbox"] for p in persons], expected, atol=1e-6)
