"""The one detection-file reader of both stages (multitask_pose/data/detection_file.py): its
errors and its arrays; the top-down stage and the hard negatives read through it."""

import json

import numpy as np
import pytest

from multitask_pose.data.detection_file import DetectionFileError, load_detection_file


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


def test_the_stages_read_through_the_one_reader():
    """The top-down package and the hard negatives use the core reader, not a copy."""
    from multitask_pose.data import detection_file, hard_negatives
    from pose_topdown.data import boxes, mapper

    assert boxes.load_detection_file is mapper.load_detection_file is (
        detection_file.load_detection_file)
    assert hard_negatives.read_detection_file is detection_file.read_detection_file
    assert boxes.DetectionFileError is DetectionFileError
