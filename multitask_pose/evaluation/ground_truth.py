"""COCO-format ground truth made safe for COCOeval: what real keypoint files from other datasets
leave out or get wrong, completed or renumbered by documented rules, the same for the evaluator
(``PoseCOCOEvaluator``) and the error analysis (``tools/analyze_keypoints.py``).

- ``area`` missing: the box area times ``area_factor``, 0.53 by default, the factor of
  CrowdPose's evaluation code and xtcocotools (COCOeval uses ``area`` as the OKS scale s^2 and
  for the small/medium/large ranges). A dataset in CrowdPose's layout: see below.
- Annotation ids 0, missing or repeated: pycocotools indexes annotations by id and treats a
  matched id of 0 as "unmatched", so id 0 silently costs AP and a repeated id makes two people
  one. When any id is 0, missing or repeated, all are renumbered 1..N in file order (only
  internally: results files name images, not annotations); repeats are reported.
- ``iscrowd`` missing: 0. ``num_keypoints`` missing: the number of labelled (v > 0) keypoints.
  ``keypoints`` missing or empty (a crowd region, a person without keypoints): all zeros, which
  COCOeval ignores as it does COCO's own crowd regions (``num_keypoints`` 0).

A dataset in CrowdPose's 14-keypoint layout (``crowdpose=True``; the evaluator and the error
analysis decide by its keypoint names) is scored by CrowdPose's official rules instead (Jeff-sjtu/
CrowdPose @86fe5e1, crowdpose-api/PythonAPI/crowdposetools/cocoeval.py): every person's ``area``
is its box width x height x 0.53 whatever the file holds (the OKS scale, :258, and the area-range
measure, :282; ``area_factor`` does not apply), and a missing ``num_keypoints`` is the release's
count, its labelled limb joints (``CROWDPOSE_COUNTED_JOINTS``; persons with 0 are ignored, :126).
The released file and its conversion (``data/converters.py``) then score the same.

A file that cannot be completed (no ``bbox`` to derive an area from, keypoint lists of the wrong
length) raises ``ValueError`` naming the file and the annotation. A complete file with positive
unique ids is returned unchanged, so AP stays identical to pycocotools' on it.
"""

import collections
import logging

from ..data.keypoints import CROWDPOSE_COUNTED_JOINTS, CROWDPOSE_PERSON

__all__ = [
    "CROWDPOSE_AREA_FACTOR",
    "DEFAULT_MISSING_AREA_FACTOR",
    "complete_ground_truth",
    "is_crowdpose_layout",
]

logger = logging.getLogger(__name__)

# Box area x this = the area of an annotation without one (CrowdPose's evaluation, xtcocotools).
DEFAULT_MISSING_AREA_FACTOR = 0.53
# CrowdPose's OKS scale and area measure: box area x this (crowdposetools/cocoeval.py:258, :282).
CROWDPOSE_AREA_FACTOR = 0.53
_COUNTED = [CROWDPOSE_PERSON.keypoint_names.index(n) for n in CROWDPOSE_COUNTED_JOINTS]


def is_crowdpose_layout(keypoint_names) -> bool:
    """Whether a dataset's keypoints are CrowdPose's 14, in its order (its official rules apply)."""
    return keypoint_names is not None and tuple(keypoint_names) == CROWDPOSE_PERSON.keypoint_names


def complete_ground_truth(
    dataset, *, source, num_keypoints=None, area_factor=None, crowdpose=False
):
    """Complete a COCO-format dict for COCOeval (module docstring).

    Args:
        dataset: the loaded json: "images", "annotations", "categories".
        source: the file (or dataset) it came from, for messages.
        num_keypoints: K of the dataset's keypoint layout; None for a dataset without keypoints
            (then keypoint fields are left alone).
        area_factor: box area factor for missing areas; None means DEFAULT_MISSING_AREA_FACTOR.
        crowdpose: apply CrowdPose's official rules (module docstring) to every annotation.

    Returns:
        ``dataset`` itself when nothing needed completing, else a new dict (the input is not
        modified) whose annotations are completed copies.
    """
    factor = DEFAULT_MISSING_AREA_FACTOR if area_factor is None else float(area_factor)
    if not factor > 0:
        raise ValueError(f"missing-area factor must be positive, got {area_factor!r}")
    anns = dataset.get("annotations", [])
    ids = [a.get("id") for a in anns]
    counts = collections.Counter(ids)
    repeated = sorted((i for i, c in counts.items() if c > 1 and i is not None), key=str)
    renumber = any(i is None or i == 0 or not isinstance(i, int) for i in ids) or bool(repeated)
    no_area = no_crowd = filled_kp = filled_num = 0
    out = []
    for n, a in enumerate(anns):
        b = dict(a)

        def where():
            return f"{source}: annotation {n} (id {a.get('id')!r}, image {a.get('image_id')!r})"

        if crowdpose:
            box = b.get("bbox")
            if not (isinstance(box, (list, tuple)) and len(box) == 4):
                raise ValueError(f"{where()} has no bbox [x, y, w, h] (CrowdPose's OKS scale)")
            b["area"] = float(box[2]) * float(box[3]) * CROWDPOSE_AREA_FACTOR
            kp = b.get("keypoints") or []
            if "num_keypoints" not in b and len(kp) == 3 * len(CROWDPOSE_PERSON.keypoint_names):
                b["num_keypoints"] = int(sum(kp[3 * i + 2] > 0 for i in _COUNTED))
                filled_num += 1
        elif "area" not in b:
            box = b.get("bbox")
            if not (isinstance(box, (list, tuple)) and len(box) == 4):
                raise ValueError(f"{where()} has neither an area nor a bbox [x, y, w, h]")
            b["area"] = float(box[2]) * float(box[3]) * factor
            no_area += 1
        if "iscrowd" not in b:
            b["iscrowd"] = 0
            no_crowd += 1
        if num_keypoints is not None:
            kp = b.get("keypoints") or []
            if not kp:
                kp = [0] * (3 * num_keypoints)
                filled_kp += 1
            if len(kp) != 3 * num_keypoints:
                raise ValueError(
                    f"{where()} has {len(kp)} keypoint values; the dataset's layout has "
                    f"{num_keypoints} keypoints ({3 * num_keypoints} values)"
                )
            b["keypoints"] = kp
            if "num_keypoints" not in b:
                b["num_keypoints"] = int(sum(v > 0 for v in kp[2::3]))
                filled_num += 1
        if renumber:
            b["id"] = n + 1
        out.append(b)
    if renumber:
        zeros = sum(1 for i in ids if i == 0)
        missing = sum(1 for i in ids if i is None)
        not_int = sum(1 for i in ids if i is not None and not isinstance(i, int))
        parts = [f"{zeros} with id 0"] if zeros else []
        parts += [f"{missing} without an id"] if missing else []
        parts += [f"{not_int} with a non-integer id"] if not_int else []
        if repeated:
            parts.append(
                f"{sum(counts[i] for i in repeated)} sharing {len(repeated)} repeated ids "
                f"(e.g. {repeated[:5]})"
            )
        (logger.warning if repeated else logger.info)(
            "%s: annotation ids renumbered 1..%d for evaluation (%s): pycocotools would treat "
            "id 0 as unmatched and merge repeated ids",
            source, len(anns), ", ".join(parts),
        )  # fmt: skip
    if no_area:
        logger.warning(
            "%s: %d of %d annotations have no 'area': using box width x height x %g (the "
            "factor of CrowdPose's evaluation and xtcocotools; TEST.MISSING_AREA_FACTOR)",
            source, no_area, len(anns), factor,
        )  # fmt: skip
    if no_crowd or filled_kp:
        logger.info(
            "%s: %d annotations without 'iscrowd' (0 used), %d without keypoints (all-zero "
            "keypoints used: ignored by COCOeval like COCO's crowd regions)",
            source, no_crowd, filled_kp,
        )  # fmt: skip
    if crowdpose:
        logger.info(
            "%s: CrowdPose's evaluation rules: OKS scale box width x height x %g for all %d "
            "persons; persons with num_keypoints 0 (counted over the 12 limb joints) ignored",
            source, CROWDPOSE_AREA_FACTOR, len(anns),
        )  # fmt: skip
    if not (crowdpose or renumber or no_area or no_crowd or filled_kp or filled_num):
        return dataset
    return {**dataset, "annotations": out}
