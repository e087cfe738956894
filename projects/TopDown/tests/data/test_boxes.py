"""Box sources: detection files and their errors, filtering, a detector in the loop."""


import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

import multitask_pose  # noqa: F401  (registers the datasets)
from pose_topdown.data import TopDownTestMapper, gt_person_boxes, person_dicts
from topdown_testing import SAMPLE, OraclePoseNet, _oracle_model, sample_cfg  # noqa: F401


def test_detector_box_source(tmp_path):
    """BOX_SOURCE "detector": a detectron2 model (here the foundation's R-CNN recipe with random
    weights, scores thresholded at 0) finds the boxes inside the top-down model."""
    from pathlib import Path

    from multitask_pose.config import get_multitask_cfg

    root = Path(__file__).resolve().parents[4]
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
