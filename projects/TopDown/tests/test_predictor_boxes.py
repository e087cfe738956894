"""``predictor_and_boxes`` (pose_topdown/predictor.py; tools/demo.py --topdown): the person boxes of
each image by its BOX_SOURCE, and one line for a box source that cannot work where the demo runs."""

from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

from multitask_pose.shared.errors import ConfigError
from pose_topdown.predictor import TopDownPredictor, predictor_and_boxes
from topdown_testing import SAMPLE, sample_cfg


def test_a_box_source_needs_its_boxes():
    with pytest.raises(ConfigError, match="BOX_SOURCE 'gt' needs --dataset"):
        predictor_and_boxes(sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "gt"))
    # photos (a listing, no dataset) take detect_persons.py's file
    with pytest.raises(ConfigError, match="BOX_SOURCE 'file' on --input images needs"
                                         " TEST.TOPDOWN.DET_FILE"):  # fmt: skip
        predictor_and_boxes(sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "file"), None, object())


def test_ground_truth_boxes_of_each_dataset_image():
    cfg = sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "gt", "MODEL.ALLOW_RANDOM_WEIGHTS", "True")
    predictor, boxes_of = predictor_and_boxes(cfg, SAMPLE)
    assert isinstance(predictor, TopDownPredictor)
    for d in DatasetCatalog.get(SAMPLE):
        # an image of the dataset, by its file name wherever it is read from
        boxes, scores = boxes_of(Path("/elsewhere") / Path(d["file_name"]).name)
        want = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
                for a in d["annotations"] if not a.get("iscrowd", 0)]  # fmt: skip
        np.testing.assert_allclose(boxes, np.array(want, np.float32).reshape(-1, 4))
        assert (scores == 1).all()
    with pytest.raises(KeyError, match=f"not an image of --dataset {SAMPLE}: no gt boxes"):
        boxes_of(Path("/elsewhere/other.jpg"))
