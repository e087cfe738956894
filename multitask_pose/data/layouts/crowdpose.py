"""CrowdPose's 14 person keypoints, in its order: the 12 limb joints left before right, then the
head (its json calls it "head": the top of the head, AI Challenger's "head top") and the neck."""

from .aic import SKELETON_INFO

_LIMBS = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
_NAMES = [n for j in _LIMBS for n in (f"left_{j}", f"right_{j}")] + ["head_top", "neck"]
_SWAP = {f"{a}_{j}": f"{b}_{j}" for j in _LIMBS for a, b in (("left", "right"), ("right", "left"))}

dataset_info = dict(
    dataset_name="crowdpose_person",
    paper_info=dict(
        title="CrowdPose: Efficient Crowded Scenes Pose Estimation and A New Benchmark",
        year="2019",
        homepage="https://github.com/Jeff-sjtu/CrowdPose",
    ),
    keypoint_info={i: dict(name=n, id=i, swap=_SWAP.get(n, "")) for i, n in enumerate(_NAMES)},
    skeleton_info=SKELETON_INFO,  # AI Challenger's 14-joint skeleton
    # crowdposetools' sigmas: COCO's for the limb joints, the shoulders' (0.079) for head and neck.
    sigmas=[
        0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107,
        0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079,
    ],  # fmt: skip
)
