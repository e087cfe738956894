"""Keypoint metadata: the one place that knows each dataset's keypoints.

A :class:`KeypointSpec` holds the names, flip map, skeleton (detectron2 connection rules with
colours) and OKS sigmas of one keypoint layout. Datasets put it into ``MetadataCatalog`` with
:meth:`KeypointSpec.metadata`; losses, flips, evaluation and drawing read it back from there with
:func:`keypoint_spec_of`. Nothing else in the project spells out a keypoint count.
"""

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.data.datasets.builtin_meta import (
    COCO_PERSON_KEYPOINT_FLIP_MAP,
    COCO_PERSON_KEYPOINT_NAMES,
    KEYPOINT_CONNECTION_RULES,
)

__all__ = [
    "KeypointSpec",
    "COCO_PERSON",
    "AIC_PERSON",
    "CROWDPOSE_PERSON",
    "CROWDPOSE_COUNTED_JOINTS",
    "KEYPOINT_SPECS",
    "keypoint_spec_of",
    "layout_map",
    "map_keypoints",
]


@dataclass(frozen=True)
class KeypointSpec:
    name: str
    keypoint_names: Tuple[str, ...]
    flip_map: Tuple[Tuple[str, str], ...]
    connection_rules: Tuple[Tuple[str, str, Tuple[int, int, int]], ...]
    oks_sigmas: Tuple[float, ...]

    def __post_init__(self):
        k = len(self.keypoint_names)
        if len(set(self.keypoint_names)) != k:
            raise ValueError(f"KeypointSpec {self.name!r}: duplicate keypoint names")
        if len(self.oks_sigmas) != k:
            raise ValueError(
                f"KeypointSpec {self.name!r}: {len(self.oks_sigmas)} OKS sigmas for {k} keypoints"
            )
        known = set(self.keypoint_names)
        for a, b in self.flip_map:
            if a not in known or b not in known:
                raise ValueError(
                    f"KeypointSpec {self.name!r}: flip pair ({a}, {b}) names an unknown keypoint"
                )
        paired = [n for pair in self.flip_map for n in pair]
        twice = sorted({n for n in paired if paired.count(n) > 1})
        if twice:
            raise ValueError(
                f"KeypointSpec {self.name!r}: keypoints {twice} appear in more than one flip pair"
            )
        # A sided name that no pair covers would keep its side in a mirror image: flip
        # augmentation and flip test would then teach and average the wrong joint.
        uncovered = [
            n
            for n in self.keypoint_names
            if n not in paired and {"left", "right"} & set(n.lower().replace("-", "_").split("_"))
        ]
        if uncovered:
            raise ValueError(
                f"KeypointSpec {self.name!r}: the flip map does not cover the sided keypoints"
                f" {uncovered}"
            )
        for a, b, _ in self.connection_rules:
            if a not in known or b not in known:
                raise ValueError(
                    f"KeypointSpec {self.name!r}: skeleton edge ({a}, {b}) names an unknown"
                    " keypoint"
                )

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_indices(self) -> np.ndarray:
        """``flip_indices[i]`` is the keypoint that ``i`` becomes in a mirror image."""
        idx = {n: i for i, n in enumerate(self.keypoint_names)}
        out = np.arange(self.num_keypoints)
        for a, b in self.flip_map:
            out[idx[a]], out[idx[b]] = idx[b], idx[a]
        return out

    def metadata(self) -> Dict:
        """The fields to pass to ``MetadataCatalog.get(name).set(**spec.metadata())``."""
        return {
            "keypoint_names": list(self.keypoint_names),
            "keypoint_flip_map": [tuple(p) for p in self.flip_map],
            "keypoint_connection_rules": [tuple(r) for r in self.connection_rules],
            "keypoint_oks_sigmas": list(self.oks_sigmas),
        }


COCO_PERSON = KeypointSpec(
    name="coco_person",
    # detectron2 already ships COCO's names, flip map and coloured skeleton; reuse them.
    keypoint_names=tuple(COCO_PERSON_KEYPOINT_NAMES),
    flip_map=tuple(COCO_PERSON_KEYPOINT_FLIP_MAP),
    connection_rules=tuple(KEYPOINT_CONNECTION_RULES),
    # Per-keypoint OKS sigmas of the COCO keypoint challenge (pycocotools' defaults).
    oks_sigmas=(
        0.026,
        0.025,
        0.025,
        0.035,
        0.035,
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
    ),
)

_LIMBS = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
_LIMB_PAIRS = tuple((f"left_{j}", f"right_{j}") for j in _LIMBS)
# The 14-joint skeleton of AI Challenger and CrowdPose: the head-top/neck/shoulders triangle, the
# arms, the trunk and the legs. Edges COCO also draws keep COCO's colours.
_COCO_COLOUR = {(a, b): c for a, b, c in KEYPOINT_CONNECTION_RULES}
_EDGES_14 = (
    ("head_top", "neck"),
    ("neck", "left_shoulder"),
    ("neck", "right_shoulder"),
    ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"),
    ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_elbow", "right_wrist"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
    ("left_hip", "right_hip"),
    ("left_hip", "left_knee"),
    ("right_hip", "right_knee"),
    ("left_knee", "left_ankle"),
    ("right_knee", "right_ankle"),
)
_RULES_14 = tuple((a, b, _COCO_COLOUR.get((a, b), (255, 255, 255))) for a, b in _EDGES_14)

AIC_PERSON = KeypointSpec(
    name="aic_person",
    # AI Challenger's 14 keypoints in its order (its release numbers them 1-14: right shoulder,
    # elbow, wrist, left shoulder, elbow, wrist, right hip, knee, ankle, left hip, knee, ankle,
    # head top, neck), with COCO's names for the 12 shared limb joints.
    keypoint_names=tuple(
        [f"right_{j}" for j in _LIMBS[:3]]
        + [f"left_{j}" for j in _LIMBS[:3]]
        + [f"right_{j}" for j in _LIMBS[3:]]
        + [f"left_{j}" for j in _LIMBS[3:]]
        + ["head_top", "neck"]
    ),  # fmt: skip
    flip_map=_LIMB_PAIRS,
    connection_rules=_RULES_14,
    # The official AI Challenger keypoint evaluation (keypoint_eval.py) uses delta = 2 * these,
    # as pycocotools uses 2 * sigma; the OKS scale there is the box area, not a segment's.
    oks_sigmas=(
        0.01388152,
        0.01515228,
        0.01057665,
        0.01417709,
        0.01497891,
        0.01402144,
        0.03909642,
        0.03686941,
        0.01981803,
        0.03843971,
        0.03412318,
        0.02415081,
        0.01291456,
        0.01236173,
    ),  # fmt: skip
)

CROWDPOSE_PERSON = KeypointSpec(
    name="crowdpose_person",
    # CrowdPose's 14 keypoints in its order: the 12 limb joints left before right, then the head
    # (its json calls it "head": the top of the head, AI Challenger's "head top") and the neck.
    keypoint_names=tuple(n for j in _LIMBS for n in (f"left_{j}", f"right_{j}"))
    + ("head_top", "neck"),
    flip_map=_LIMB_PAIRS,
    connection_rules=_RULES_14,
    # crowdposetools' sigmas: COCO's for the limb joints, the shoulders' (0.079) for head and neck.
    oks_sigmas=(
        0.079,
        0.079,
        0.072,
        0.072,
        0.062,
        0.062,
        0.107,
        0.107,
        0.087,
        0.087,
        0.089,
        0.089,
        0.079,
        0.079,
    ),  # fmt: skip
)

# The joints CrowdPose's release counts in an annotation's ``num_keypoints``: its 12 limb joints
# (head and neck are labelled but not counted; so in crowdpose_val.json, 954 persons labelled only
# at head and neck have num_keypoints 0). Its evaluation ignores persons with num_keypoints 0
# (Jeff-sjtu/CrowdPose @86fe5e1, crowdpose-api/PythonAPI/crowdposetools/cocoeval.py:126).
CROWDPOSE_COUNTED_JOINTS = CROWDPOSE_PERSON.keypoint_names[:12]

KEYPOINT_SPECS: Dict[str, KeypointSpec] = {
    s.name: s for s in (COCO_PERSON, AIC_PERSON, CROWDPOSE_PERSON)
}


def layout_map(src: KeypointSpec, dst: KeypointSpec) -> np.ndarray:
    """``m[j]`` is the index in ``src`` of ``dst``'s keypoint j (matched by name), -1 where
    ``src`` has no such keypoint (e.g. COCO's face points from AI Challenger)."""
    idx = {n: i for i, n in enumerate(src.keypoint_names)}
    return np.array([idx.get(n, -1) for n in dst.keypoint_names], dtype=np.int64)


def map_keypoints(keypoints, src: KeypointSpec, dst: KeypointSpec) -> np.ndarray:
    """(..., K_src, 3) keypoints (x, y, v) in ``src``'s layout to (..., K_dst, 3) in ``dst``'s:
    shared keypoints copied by name, the others unlabelled (0, 0, 0)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim < 2 or kp.shape[-2:] != (src.num_keypoints, 3):
        raise ValueError(
            f"map_keypoints: expected (..., {src.num_keypoints}, 3) keypoints of"
            f" {src.name!r}, got shape {kp.shape}"
        )
    m = layout_map(src, dst)
    out = np.zeros(kp.shape[:-2] + (dst.num_keypoints, 3))
    out[..., m >= 0, :] = kp[..., m[m >= 0], :]
    return out


def keypoint_spec_of(dataset_name: str) -> KeypointSpec:
    """Rebuild the :class:`KeypointSpec` a registered dataset carries in ``MetadataCatalog``."""
    meta = MetadataCatalog.get(dataset_name)
    missing = [
        k
        for k in ("keypoint_names", "keypoint_flip_map", "keypoint_oks_sigmas")
        if not hasattr(meta, k)
    ]
    if missing:
        raise KeyError(f"dataset {dataset_name!r} has no keypoint metadata (missing {missing})")
    return KeypointSpec(
        name=dataset_name,
        keypoint_names=tuple(meta.keypoint_names),
        flip_map=tuple(tuple(p) for p in meta.keypoint_flip_map),
        connection_rules=tuple(tuple(r) for r in getattr(meta, "keypoint_connection_rules", ())),
        oks_sigmas=tuple(meta.keypoint_oks_sigmas),
    )


def skeleton_indices(spec: KeypointSpec) -> List[Tuple[int, int]]:
    """Skeleton edges as index pairs, for drawing and for generators."""
    idx = {n: i for i, n in enumerate(spec.keypoint_names)}
    return [(idx[a], idx[b]) for a, b, _ in spec.connection_rules]
