"""Keypoint metadata: the one place that knows each dataset's keypoints.

A :class:`KeypointSpec` holds the names, flip map, skeleton (detectron2 connection rules with
colours) and OKS sigmas of one keypoint layout; :data:`LAYOUTS` holds the spec of each layout
file of ``multitask_pose/data/layouts/`` (MMPose's metainfo shape). Datasets put it into
``MetadataCatalog`` with :meth:`KeypointSpec.metadata`; losses, flips, evaluation and drawing
read it back from there with :func:`keypoint_spec_of`. Nothing else in the project spells out a
keypoint count.
"""

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from detectron2.data import MetadataCatalog

from .layouts import layout_infos

__all__ = [
    "KeypointSpec",
    "COCO_PERSON",
    "AIC_PERSON",
    "CROWDPOSE_PERSON",
    "CROWDPOSE_COUNTED_JOINTS",
    "LAYOUTS",
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

    @classmethod
    def from_metainfo(cls, info: Dict) -> "KeypointSpec":
        """The spec of a layout's metainfo (``multitask_pose/data/layouts/``): its keypoints in
        id order, the flip pairs from their ``swap`` fields (left side first, in the order of
        their first keypoint), the skeleton edges with their colours, the sigmas."""
        keypoints = [info["keypoint_info"][i] for i in sorted(info["keypoint_info"])]
        names = tuple(k["name"] for k in keypoints)
        pairs = []
        for k in keypoints:
            pair = tuple(sorted((k["name"], k["swap"]))) if k["swap"] else None
            if pair and pair not in pairs:
                pairs.append(pair)
        edges = [info["skeleton_info"][i] for i in sorted(info["skeleton_info"])]
        return cls(
            name=info["dataset_name"],
            keypoint_names=names,
            flip_map=tuple(pairs),
            connection_rules=tuple((e["link"][0], e["link"][1], tuple(e["color"])) for e in edges),
            oks_sigmas=tuple(float(x) for x in info["sigmas"]),
        )

    def metadata(self) -> Dict:
        """The fields to pass to ``MetadataCatalog.get(name).set(**spec.metadata())``."""
        return {
            "keypoint_names": list(self.keypoint_names),
            "keypoint_flip_map": [tuple(p) for p in self.flip_map],
            "keypoint_connection_rules": [tuple(r) for r in self.connection_rules],
            "keypoint_oks_sigmas": list(self.oks_sigmas),
        }


# Every layout of data/layouts/, by its module name ("coco", "aic", "crowdpose"): the keys of
# DATASETS.REGISTER_COCO's layout field, of the converters' and tools' --layout.
LAYOUTS: Dict[str, KeypointSpec] = {
    name: KeypointSpec.from_metainfo(info) for name, info in layout_infos().items()
}
COCO_PERSON = LAYOUTS["coco"]
AIC_PERSON = LAYOUTS["aic"]
CROWDPOSE_PERSON = LAYOUTS["crowdpose"]

# The joints CrowdPose's release counts in an annotation's ``num_keypoints``: its 12 limb joints
# (head and neck are labelled but not counted; so in crowdpose_val.json, 954 persons labelled only
# at head and neck have num_keypoints 0). Its evaluation ignores persons with num_keypoints 0
# (Jeff-sjtu/CrowdPose @86fe5e1, crowdpose-api/PythonAPI/crowdposetools/cocoeval.py:126).
CROWDPOSE_COUNTED_JOINTS = CROWDPOSE_PERSON.keypoint_names[:12]


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
