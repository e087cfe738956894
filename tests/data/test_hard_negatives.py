"""Hard-negative detection mining: hand-built cases and the real COCO sample's detections."""

import json

import numpy as np
import pytest

from multitask_pose.data.datasets import samples_root
from multitask_pose.data.hard_negatives import mine_hard_negatives

GT = {
    "images": [{"id": 1}, {"id": 2}],
    "annotations": [
        {"image_id": 1, "bbox": [0, 0, 100, 100]},
        {"image_id": 1, "bbox": [300, 0, 50, 100], "iscrowd": 1},  # a crowd region counts too
    ],
}


def test_far_confident_detections_are_mined_and_others_not():
    dets = [
        {"image_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},  # on the person
        {"image_id": 1, "bbox": [500, 500, 50, 50], "score": 0.9},  # far: mined
        {"image_id": 1, "bbox": [600, 500, 50, 50], "score": 0.2},  # far but not confident
        {"image_id": 1, "bbox": [80, 0, 100, 100], "score": 0.8},  # IoU 20/180 = 0.11: mined
        {"image_id": 1, "bbox": [40, 0, 100, 100], "score": 0.8},  # IoU 60/140 = 0.43: not
        {"image_id": 1, "bbox": [300, 0, 50, 100], "score": 0.95},  # on the crowd region
        {"image_id": 2, "bbox": [10, 10, 20, 40], "score": 0.7},  # an image without persons
    ]
    out, report = mine_hard_negatives(GT, dets, score_thresh=0.5, iou_thresh=0.3)
    assert sorted(out) == [1, 2]
    np.testing.assert_array_equal(out[1][:, :4], [[500, 500, 50, 50], [80, 0, 100, 100]])
    np.testing.assert_array_equal(out[2], [[10, 10, 20, 40, 0.7]])
    assert (report["detections"], report["confident"], report["mined"]) == (7, 6, 3)
    # A looser IoU threshold mines the half-overlapping box as well.
    assert mine_hard_negatives(GT, dets, 0.5, 0.5)[1]["mined"] == 4


def test_bad_detection_files_are_named():
    with pytest.raises(ValueError, match="detection 0: image 7 is not in the dataset"):
        mine_hard_negatives(GT, [{"image_id": 7, "bbox": [0, 0, 1, 1], "score": 1}])
    with pytest.raises(ValueError, match=r"detection 0 \(image 1\): needs a 4-number bbox"):
        mine_hard_negatives(GT, [{"image_id": 1, "bbox": [0, 0, 1], "score": 1}])


def test_real_detections_on_the_coco_sample():
    """The sample's 118 real detections: the confident ones mostly cover annotated persons; every
    mined one has IoU below the threshold with all of its image's persons, recomputed here."""
    gt = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
    dets = json.loads((samples_root() / "coco" / "test_coco_det_AP_H_56.json").read_text())
    out, report = mine_hard_negatives(gt, dets, 0.5, 0.3)
    assert report["detections"] == 118 and 0 < report["mined"] < report["confident"]
    for image_id, rows in out.items():
        people = [a["bbox"] for a in gt["annotations"] if a["image_id"] == image_id]
        for x, y, w, h, s in rows:
            assert s >= 0.5
            for px, py, pw, ph in people:
                iw = max(0.0, min(x + w, px + pw) - max(x, px))
                ih = max(0.0, min(y + h, py + ph) - max(y, py))
                assert iw * ih / (w * h + pw * ph - iw * ih) < 0.3
