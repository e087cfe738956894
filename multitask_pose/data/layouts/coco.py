"""COCO's 17 person keypoints. detectron2 already ships their names, flip map and coloured
skeleton (``detectron2/data/datasets/builtin_meta.py``): they are reused, not copied."""

from detectron2.data.datasets.builtin_meta import (
    COCO_PERSON_KEYPOINT_FLIP_MAP,
    COCO_PERSON_KEYPOINT_NAMES,
    KEYPOINT_CONNECTION_RULES,
)

_SWAP = {a: b for pair in COCO_PERSON_KEYPOINT_FLIP_MAP for a, b in (pair, pair[::-1])}

dataset_info = dict(
    dataset_name="coco_person",
    paper_info=dict(
        title="Microsoft COCO: Common Objects in Context",
        year="2014",
        homepage="https://cocodataset.org/",
    ),
    keypoint_info={
        i: dict(name=n, id=i, swap=_SWAP.get(n, ""))
        for i, n in enumerate(COCO_PERSON_KEYPOINT_NAMES)
    },
    skeleton_info={
        i: dict(link=(a, b), id=i, color=c) for i, (a, b, c) in enumerate(KEYPOINT_CONNECTION_RULES)
    },
    # The COCO keypoint challenge's per-keypoint OKS sigmas (pycocotools' defaults).
    sigmas=[
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
        0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
    ],  # fmt: skip
)
