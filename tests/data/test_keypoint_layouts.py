"""The AI Challenger and CrowdPose keypoint layouts, and mapping between layouts, checked on the
real samples with points picked by hand from their json files."""

import json

import numpy as np
import pytest

from multitask_pose.data import (
    AIC_PERSON,
    COCO_PERSON,
    CROWDPOSE_PERSON,
    layout_map,
    map_keypoints,
)
from multitask_pose.data.paths import samples_root

COCO_INDEX = {n: i for i, n in enumerate(COCO_PERSON.keypoint_names)}


def _annotation(path, ann_id):
    with open(path) as f:
        anns = json.load(f)["annotations"]
    (ann,) = [a for a in anns if a["id"] == ann_id]
    return np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)


@pytest.mark.parametrize("spec", [AIC_PERSON, CROWDPOSE_PERSON])
def test_14_joint_layouts_match_their_files_and_flip_by_side(spec):
    path = {
        "aic_person": samples_root() / "aic" / "test_aic.json",
        "crowdpose_person": samples_root() / "crowdpose" / "test_crowdpose.json",
    }[spec.name]
    with open(path) as f:
        names = json.load(f)["categories"][0]["keypoints"]
    # The files' own names, spelled their way: "Right Shoulder", "Head top"; CrowdPose's "head"
    # is the top of the head.
    spelled = [n.lower().replace(" ", "_") for n in names]
    spelled = ["head_top" if n == "head" else n for n in spelled]
    assert tuple(spelled) == spec.keypoint_names
    idx = spec.flip_indices
    assert (idx[idx] == np.arange(14)).all()
    for i, j in enumerate(idx):
        a, b = spec.keypoint_names[i], spec.keypoint_names[j]
        assert b == a.replace("left", "@").replace("right", "left").replace("@", "right")
    assert len(spec.oks_sigmas) == 14 and spec.num_keypoints == 14


def test_aic_keypoints_land_on_the_coco_names():
    """Annotation 4 of the AIC sample, by hand: right shoulder (313, 201, visible), right elbow
    (312, 313, occluded), right knee and ankle unlabelled, head top (395, 74)."""
    kp = _annotation(samples_root() / "aic" / "test_aic.json", 4)
    coco = map_keypoints(kp, AIC_PERSON, COCO_PERSON)
    assert coco.shape == (17, 3)
    assert coco[COCO_INDEX["right_shoulder"]].tolist() == [313, 201, 2]
    assert coco[COCO_INDEX["right_elbow"]].tolist() == [312, 313, 1]
    assert coco[COCO_INDEX["left_wrist"]].tolist() == [459, 269, 2]
    assert coco[COCO_INDEX["right_knee"]].tolist() == [0, 0, 0]
    assert coco[COCO_INDEX["left_hip"]].tolist() == [416, 441, 2]
    for face in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"):
        assert coco[COCO_INDEX[face]].tolist() == [0, 0, 0]
    assert 395 not in coco[:, 0]  # the head top has no COCO keypoint


def test_crowdpose_keypoints_land_on_the_coco_names():
    """Annotation 123803 of the CrowdPose sample, by hand: left shoulder unlabelled, right
    shoulder (208, 108), right elbow (278, 158), left wrist (262, 206), right hip (173, 299)."""
    kp = _annotation(samples_root() / "crowdpose" / "test_crowdpose.json", 123803)
    coco = map_keypoints(kp[None], CROWDPOSE_PERSON, COCO_PERSON)[0]
    assert coco[COCO_INDEX["left_shoulder"]].tolist() == [0, 0, 0]
    assert coco[COCO_INDEX["right_shoulder"]].tolist() == [208, 108, 2]
    assert coco[COCO_INDEX["right_elbow"]].tolist() == [278, 158, 2]
    assert coco[COCO_INDEX["left_wrist"]].tolist() == [262, 206, 2]
    assert coco[COCO_INDEX["right_hip"]].tolist() == [173, 299, 2]
    assert (coco[:, 2] > 0).sum() == (kp[:12, 2] > 0).sum()  # head and neck dropped


@pytest.mark.parametrize(
    "src,dst",
    [
        (AIC_PERSON, COCO_PERSON),
        (CROWDPOSE_PERSON, COCO_PERSON),
        (COCO_PERSON, AIC_PERSON),
        (AIC_PERSON, CROWDPOSE_PERSON),
    ],
)
def test_mapping_commutes_with_flipping(src, dst):
    """Mirroring then mapping gives the same joints as mapping then mirroring, and the shared
    joints survive a round trip."""
    m = layout_map(src, dst)
    mapped = m >= 0
    assert mapped.sum() >= 12
    assert (m[dst.flip_indices][mapped] == src.flip_indices[m[mapped]]).all()
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (5, src.num_keypoints, 2)),
                         rng.integers(0, 3, (5, src.num_keypoints, 1))], -1)  # fmt: skip
    back = map_keypoints(map_keypoints(kp, src, dst), dst, src)
    shared = layout_map(dst, src) >= 0
    np.testing.assert_array_equal(back[:, shared], kp[:, shared])
    assert (back[:, ~shared] == 0).all()


def test_map_keypoints_names_a_wrong_layout():
    with pytest.raises(ValueError, match=r"\(\.\.\., 14, 3\) keypoints of 'aic_person'"):
        map_keypoints(np.zeros((2, 17, 3)), AIC_PERSON, COCO_PERSON)
