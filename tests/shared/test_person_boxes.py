"""The one person-box filter of both stages (multitask_pose/shared/person_boxes.py): the
top-down box sources and the detector runner of tools/detect_persons.py keep boxes through it."""

import logging

import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from multitask_pose.engine.person_detection import filter_detections
from multitask_pose.shared.person_boxes import filter_person_boxes


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


def test_detect_persons_keeps_what_a_reference_filter_keeps():
    """filter_detections (tools/detect_persons.py's) on a detector's instances: the persons
    scoring >= 0.3 with a shorter side >= 8 px, the 3 best, best first (reference in numpy),
    masks dropped unless asked."""
    rng = np.random.default_rng(0)
    n = 40
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(2, 80, (n, 2))
    inst = Instances((480, 640))
    inst.pred_boxes = Boxes(torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32))
    inst.scores = torch.tensor(rng.uniform(0, 1, n), dtype=torch.float32)
    inst.pred_classes = torch.tensor(rng.integers(0, 2, n))
    inst.pred_masks = torch.zeros(n, 4, 4, dtype=torch.bool)
    b, s, c = (inst.pred_boxes.tensor.numpy(), inst.scores.numpy(),
               inst.pred_classes.numpy())  # fmt: skip
    side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    ok = np.flatnonzero((c == 1) & (s >= 0.3) & (side >= 8))
    expected = ok[np.argsort(-s[ok], kind="stable")][:3]
    out = filter_detections(inst, 1, 0.3, 8.0, 3, masks=False)
    np.testing.assert_array_equal(out.pred_boxes.tensor.numpy(), b[expected])
    assert not out.has("pred_masks") and len(out) == 3
    assert filter_detections(inst, 1, 0.3, 8.0, 0, masks=True).has("pred_masks")
