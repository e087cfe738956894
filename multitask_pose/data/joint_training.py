"""Joint training on several datasets (the reports' COCO + AI Challenger recipe), for both stages.

``DATASETS.TRAIN`` lists the datasets; the model's keypoint layout is the first one's. Every other
dataset's annotations are mapped into it by keypoint name (:func:`~.keypoints.map_keypoints`):
shared joints are copied, the model's joints a dataset does not have become unlabelled (v = 0),
and joints the model does not have are dropped. Unlabelled joints carry no loss in either stage
(detectron2's keypoint loss and ours skip v = 0; the top-down targets get weight 0), so each
dataset trains only the joints it labels. A dataset that shares no joint with the model's layout,
or has no keypoint metadata while the model predicts keypoints, is refused at start.

By default the datasets are concatenated as detectron2 does (every sample equally likely, each
dataset's share its size's): the reports' joint training, which adds AI Challenger to COCO's
training set as one bigger set (the HTC report: "combination into a bigger dataset"; PCR: "add
the samples ... into the original COCO training set"). ``DATASETS.TRAIN_RATIOS`` (one weight per
dataset), a project option, instead sets the share of training samples drawn from each dataset,
whatever its size: :class:`~.resumable_loader.PositionedDataset` draws the dataset of each
stream position from exact per-block quotas, so the ratios hold to 1/1000 over every block of
1000 samples and a resumed run continues exactly.
"""

import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import MetadataCatalog

from .keypoints import KeypointSpec, keypoint_spec_of, layout_map

__all__ = [
    "block_quota",
    "check_ratios",
    "describe_parts",
    "load_training_parts",
    "map_dataset_dicts",
    "model_layout",
]

logger = logging.getLogger(__name__)


def check_ratios(ratios: Sequence[float], names: Sequence[str]) -> Optional[np.ndarray]:
    """DATASETS.TRAIN_RATIOS normalised to sum 1 (None when empty). ValueError: a count that
    does not match DATASETS.TRAIN, or a weight that is not a finite positive number."""
    if not len(ratios):
        return None
    if len(ratios) != len(names):
        raise ValueError(
            f"DATASETS.TRAIN_RATIOS has {len(ratios)} values for the {len(names)} datasets of"
            f" DATASETS.TRAIN {tuple(names)}: give one weight per dataset, or none"
        )
    try:
        w = np.array([float(r) for r in ratios])
    except (TypeError, ValueError):
        raise ValueError(f"DATASETS.TRAIN_RATIOS must be numbers, got {tuple(ratios)}") from None
    if not np.isfinite(w).all() or (w <= 0).any():
        raise ValueError(
            f"DATASETS.TRAIN_RATIOS must be finite positive weights, got {tuple(ratios)}"
            " (leave a dataset out of DATASETS.TRAIN instead of giving it 0)"
        )
    return w / w.sum()


def model_layout(names: Sequence[str]) -> Optional[KeypointSpec]:
    """The model's keypoint layout: the first training dataset's (None without keypoint
    metadata)."""
    try:
        return keypoint_spec_of(names[0])
    except KeyError:
        return None


def map_dataset_dicts(dicts: List[Dict], src: KeypointSpec, dst: KeypointSpec) -> List[Dict]:
    """Copies of ``dicts`` whose annotations' keypoints (flat x, y, v lists of ``src``) are in
    ``dst``'s layout. ValueError when the layouts share no keypoint."""
    m = layout_map(src, dst)
    if not (m >= 0).any():
        raise ValueError(
            f"its keypoints {list(src.keypoint_names)} share no name with the model's layout"
            f" {list(dst.keypoint_names)}"
        )
    keep, idx = m >= 0, m[m >= 0]
    out = []
    for d in dicts:
        anns = []
        for a in d.get("annotations", []):
            a = dict(a)
            if "keypoints" in a:
                kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
                if len(kp) != src.num_keypoints:
                    raise ValueError(
                        f"image {d.get('image_id')}: an annotation has {len(kp)} keypoints,"
                        f" its layout {src.num_keypoints}"
                    )
                new = np.zeros((dst.num_keypoints, 3))
                new[keep] = kp[idx]
                a["keypoints"] = new.ravel().tolist()
            anns.append(a)
        out.append({**d, "annotations": anns})
    return out


def load_training_parts(
    names: Sequence[str],
    load: Callable[[str], List[Dict]],
    keypoints: bool,
    min_keypoints: int = 0,
) -> Tuple[List[List[Dict]], Optional[KeypointSpec]]:
    """Each training dataset's dicts (``load(name)``), in the model's layout.

    Args:
        names: DATASETS.TRAIN.
        load: a dataset's dicts by name (detectron2's ``get_detection_dataset_dicts``).
        keypoints: the model predicts keypoints (the layouts must then be mappable).
        min_keypoints: drop images with fewer labelled keypoints, counted after mapping
            (detectron2's MIN_KEYPOINTS_PER_IMAGE; 0 keeps all).

    Returns:
        (one list of dicts per dataset, the model's layout or None).

    Raises:
        ValueError naming the dataset: no keypoint metadata, no shared joint, or no image left.
    """
    from detectron2.data.build import filter_images_with_few_keypoints

    dst = model_layout(names) if keypoints else None
    if keypoints and dst is None:
        raise ValueError(
            f"DATASETS.TRAIN[0] {names[0]!r} has no keypoint metadata (keypoint_names,"
            " keypoint_flip_map, keypoint_oks_sigmas): the model's keypoint layout is its"
        )
    # Every layout is checked before any dataset is read: a bad one fails at once.
    specs = []
    for name in names:
        src = None
        if dst is not None:
            try:
                src = keypoint_spec_of(name)
            except KeyError as e:
                raise ValueError(f"DATASETS.TRAIN dataset {name!r}: {e}") from None
            if not (layout_map(src, dst) >= 0).any():
                raise ValueError(
                    f"DATASETS.TRAIN dataset {name!r} cannot be mapped to the model's keypoint"
                    f" layout (DATASETS.TRAIN[0] {names[0]!r}): its keypoints"
                    f" {list(src.keypoint_names)} share no name with"
                    f" {list(dst.keypoint_names)}"
                )
        specs.append(src)
    parts = []
    for name, src in zip(names, specs):
        dicts = load(name)
        if src is not None:
            if src.keypoint_names != dst.keypoint_names:
                dicts = map_dataset_dicts(dicts, src, dst)
                shared = int((layout_map(src, dst) >= 0).sum())
                logger.info(
                    "Joint training: %s mapped into %s's keypoint layout (%d of its %d joints"
                    " labelled, the other %d unlabelled)",
                    name, names[0], shared, dst.num_keypoints, dst.num_keypoints - shared,
                )  # fmt: skip
            if min_keypoints > 0:
                dicts = filter_images_with_few_keypoints(dicts, min_keypoints)
        if not dicts:
            raise ValueError(f"DATASETS.TRAIN dataset {name!r} has no training image left")
        parts.append(dicts)
    if len(names) > 1:
        classes = {tuple(MetadataCatalog.get(n).get("thing_classes", ())) for n in names}
        if len(classes) > 1:
            raise ValueError(
                f"DATASETS.TRAIN {tuple(names)}: the datasets' thing_classes differ ({classes})"
            )
    return parts, dst


def describe_parts(names: Sequence[str], sizes: Sequence[int], ratios, unit: str) -> str:
    """One log line: each dataset's size and share of the samples."""
    total = sum(sizes)
    shares = ratios if ratios is not None else [s / total for s in sizes]
    rows = ", ".join(f"{n} ({s} {unit}, {100 * r:.1f}%)" for n, s, r in zip(names, sizes, shares))
    how = "DATASETS.TRAIN_RATIOS" if ratios is not None else "by size"
    return f"Training samples drawn {how}: {rows}"


def block_quota(ratios: np.ndarray, block: int) -> np.ndarray:
    """Per-dataset sample counts in a block of ``block`` positions: the ratios times the block,
    rounded by largest remainder (they sum to ``block``). ValueError when a dataset would get
    none (a weight below 1/block of the total)."""
    raw = np.asarray(ratios, dtype=np.float64) * block
    n = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - n), kind="stable")
    n[order[: block - int(n.sum())]] += 1
    if (n == 0).any():
        raise ValueError(
            f"DATASETS.TRAIN_RATIOS {tuple(float(r) for r in ratios)}: a weight below 1/{block}"
            " of the total gets no sample"
        )
    return n
