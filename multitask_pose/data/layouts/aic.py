"""AI Challenger's 14 person keypoints, in its order, with COCO's names for the 12 limb joints
it shares with COCO (its release numbers them 1-14: right shoulder, elbow, wrist, left
shoulder, elbow, wrist, right hip, knee, ankle, left hip, knee, ankle, head top, neck)."""

_LIMBS = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
_NAMES = (
    [f"right_{j}" for j in _LIMBS[:3]]
    + [f"left_{j}" for j in _LIMBS[:3]]
    + [f"right_{j}" for j in _LIMBS[3:]]
    + [f"left_{j}" for j in _LIMBS[3:]]
    + ["head_top", "neck"]
)


def _swap(name: str) -> str:
    side, _, joint = name.partition("_")
    return {"left": f"right_{joint}", "right": f"left_{joint}"}.get(side, "")


_WHITE = (255, 255, 255)
# The 14-joint skeleton (CrowdPose draws the same): the head-top/neck/shoulders triangle, the
# arms, the trunk and the legs; the edges COCO also draws keep detectron2's COCO colours.
SKELETON_INFO = {
    i: dict(link=link, id=i, color=color)
    for i, (link, color) in enumerate([
        (("head_top", "neck"), _WHITE),
        (("neck", "left_shoulder"), _WHITE),
        (("neck", "right_shoulder"), _WHITE),
        (("left_shoulder", "right_shoulder"), (255, 128, 0)),
        (("left_shoulder", "left_elbow"), (153, 255, 204)),
        (("right_shoulder", "right_elbow"), (128, 229, 255)),
        (("left_elbow", "left_wrist"), (153, 255, 153)),
        (("right_elbow", "right_wrist"), (102, 255, 224)),
        (("left_shoulder", "left_hip"), _WHITE),
        (("right_shoulder", "right_hip"), _WHITE),
        (("left_hip", "right_hip"), (255, 102, 0)),
        (("left_hip", "left_knee"), (255, 255, 77)),
        (("right_hip", "right_knee"), (153, 255, 204)),
        (("left_knee", "left_ankle"), (191, 255, 128)),
        (("right_knee", "right_ankle"), (255, 195, 77)),
    ])
}  # fmt: skip

dataset_info = dict(
    dataset_name="aic_person",
    paper_info=dict(
        title="AI Challenger: A Large-scale Dataset for Going Deeper in Image Understanding",
        year="2017",
        homepage="https://github.com/AIChallenger/AI_Challenger_2017",
    ),
    keypoint_info={i: dict(name=n, id=i, swap=_swap(n)) for i, n in enumerate(_NAMES)},
    skeleton_info=SKELETON_INFO,
    # The official AI Challenger keypoint evaluation (keypoint_eval.py) uses delta = 2 * these,
    # as pycocotools uses 2 * sigma; the OKS scale there is the box area, not a segment's.
    sigmas=[
        0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
        0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173,
    ],  # fmt: skip
)
