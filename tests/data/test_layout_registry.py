"""The keypoint-layout registry: one metainfo file per layout in multitask_pose/data/layouts/
(MMPose's dataset metainfo shape), read into KeypointSpecs; COCO's against its sources."""

from pathlib import Path

import numpy as np
import pytest
from detectron2.data.datasets.builtin_meta import (
    COCO_PERSON_KEYPOINT_FLIP_MAP,
    COCO_PERSON_KEYPOINT_NAMES,
    KEYPOINT_CONNECTION_RULES,
)
from pycocotools.cocoeval import Params

from multitask_pose.data import keypoints
from multitask_pose.data.keypoints import LAYOUTS, KeypointSpec


def test_every_layout_file_is_registered_under_its_module_name():
    folder = Path(keypoints.__file__).parent / "layouts"
    files = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    assert set(LAYOUTS) == files == {"coco", "aic", "crowdpose"}
    assert keypoints.COCO_PERSON is LAYOUTS["coco"]
    assert keypoints.AIC_PERSON is LAYOUTS["aic"]
    assert keypoints.CROWDPOSE_PERSON is LAYOUTS["crowdpose"]


def test_coco_layout_is_detectron2s_with_pycocotools_sigmas():
    spec = LAYOUTS["coco"]
    assert spec.keypoint_names == tuple(COCO_PERSON_KEYPOINT_NAMES)
    assert spec.flip_map == tuple(COCO_PERSON_KEYPOINT_FLIP_MAP)
    assert spec.connection_rules == tuple(KEYPOINT_CONNECTION_RULES)
    # pycocotools/cocoeval.py Params.setKpParams: kpt_oks_sigmas = [.26, .25, ...] / 10
    # (pycocotools divides by 10: equal to the last bits of that division)
    np.testing.assert_allclose(
        np.array(spec.oks_sigmas), Params(iouType="keypoints").kpt_oks_sigmas, rtol=1e-15
    )


def _info(keypoint_info, skeleton=()):
    return dict(
        dataset_name="toy",
        paper_info={},
        keypoint_info=keypoint_info,
        skeleton_info={
            i: dict(link=link, id=i, color=(1, 2, 3)) for i, link in enumerate(skeleton)
        },
        sigmas=[0.1] * len(keypoint_info),
    )


def test_metainfo_to_spec():
    info = _info(
        {
            # given out of id order: the spec follows the ids
            2: dict(name="left_hand", id=2, swap="right_hand"),
            0: dict(name="right_hand", id=0, swap="left_hand"),
            1: dict(name="head", id=1, swap=""),
        },
        skeleton=[("head", "left_hand"), ("head", "right_hand")],
    )
    spec = KeypointSpec.from_metainfo(info)
    assert spec.name == "toy"
    assert spec.keypoint_names == ("right_hand", "head", "left_hand")
    assert spec.flip_map == (("left_hand", "right_hand"),)  # one pair, left side first
    assert spec.flip_indices.tolist() == [2, 1, 0]
    assert spec.connection_rules == (
        ("head", "left_hand", (1, 2, 3)),
        ("head", "right_hand", (1, 2, 3)),
    )
    assert spec.oks_sigmas == (0.1, 0.1, 0.1)


@pytest.mark.parametrize(
    "keypoint_info, skeleton, message",
    [
        (
            {0: dict(name="left_hand", id=0, swap="")},
            (),
            "the flip map does not cover the sided keypoints",
        ),
        (
            {0: dict(name="head", id=0, swap="tail")},
            (),
            "flip pair .* names an unknown keypoint",
        ),
        (
            {0: dict(name="head", id=0, swap="")},
            [("head", "neck")],
            "skeleton edge .* names an unknown keypoint",
        ),
    ],
)
def test_inconsistent_metainfo_is_refused(keypoint_info, skeleton, message):
    with pytest.raises(ValueError, match=message):
        KeypointSpec.from_metainfo(_info(keypoint_info, skeleton))
