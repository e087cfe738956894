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

__all__ = ["KeypointSpec", "COCO_PERSON", "KEYPOINT_SPECS", "keypoint_spec_of"]


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
                raise ValueError(f"KeypointSpec {self.name!r}: flip pair ({a}, {b}) names an unknown keypoint")
        paired = [n for pair in self.flip_map for n in pair]
        twice = sorted({n for n in paired if paired.count(n) > 1})
        if twice:
            raise ValueError(f"KeypointSpec {self.name!r}: keypoints {twice} appear in more than one flip pair")
        # A sided name that no pair covers would keep its side in a mirror image: flip
        # augmentation and flip test would then teach and average the wrong joint.
        uncovered = [n for n in self.keypoint_names
                     if n not in paired and {"left", "right"} & set(n.lower().replace("-", "_").split("_"))]
        if uncovered:
            raise ValueError(f"KeypointSpec {self.name!r}: the flip map does not cover the sided keypoints {uncovered}")
        for a, b, _ in self.connection_rules:
            if a not in known or b not in known:
                raise ValueError(f"KeypointSpec {self.name!r}: skeleton edge ({a}, {b}) names an unknown keypoint")

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
    oks_sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
                0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
)

KEYPOINT_SPECS: Dict[str, KeypointSpec] = {COCO_PERSON.name: COCO_PERSON}


def keypoint_spec_of(dataset_name: str) -> KeypointSpec:
    """Rebuild the :class:`KeypointSpec` a registered dataset carries in ``MetadataCatalog``."""
    meta = MetadataCatalog.get(dataset_name)
    missing = [k for k in ("keypoint_names", "keypoint_flip_map", "keypoint_oks_sigmas") if not hasattr(meta, k)]
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
