"""Drawing predictions of either stage: detectron2's ``Visualizer`` with a keypoint threshold on
the model's own score scale.

detectron2 draws a keypoint (and the limbs between two drawn keypoints) only when its score is
above a fixed 0.05 (``_KEYPOINT_THRESHOLD`` in detectron2/utils/visualizer.py). The scores are on
different scales by model type (``multitask_pose/evaluation/results_record.py``,
``SCORE_SCALES``): an R-CNN keypoint's softmax probability over its RoI's whole heatmap is small
even where the keypoint is right, a top-down heatmap peak is near 1. So the threshold is an
option, with a default per score scale (:data:`KEYPOINT_DRAW_THRESHOLDS`).
"""

import numpy as np
from detectron2.utils.visualizer import Visualizer

__all__ = [
    "KEYPOINT_DRAW_THRESHOLDS",
    "PoseVisualizer",
    "default_keypoint_threshold",
    "limbs_drawn",
    "limbs_summary",
]

# Default drawing threshold per keypoint score scale (results_record.SCORE_SCALES's keys).
KEYPOINT_DRAW_THRESHOLDS = {
    # MMPose's top-down demo (demo/topdown_demo_with_mmdet.py, --kpt-thr) draws heatmap-peak
    # keypoints above 0.3.
    "heatmap_peak": 0.3,
    # Softmax probability of the peak over the RoI's heatmap (56 x 56 cells: 1/3136 = 0.0003 when
    # flat); 0.003 is ten times flat. Measured on the COCO sample photos: the R-CNN memorising
    # them (tests/engine/test_keypoint_drawing.py) scores its labelled keypoints 0.70 median,
    # 0.11 at the 1st percentile, so any threshold up to 0.1 draws every limb; the CPU recipe
    # trained 120 iterations on SynthPeople (conftest TRAIN_OPTS), a model that has not seen
    # photos, scores them 0.006 median: 0.05 draws none of its keypoints, 0.01 a quarter,
    # 0.003 83%.
    "softmax_probability": 0.003,
    # The raw SimCC maxima: MMPose's demo applies the same --kpt-thr 0.3 to its SimCC models
    # (SimCC, RTMPose), whose scores are these.
    "simcc_maximum": 0.3,
    # Every keypoint carries its person's score, which passed the box threshold: draw them all.
    "person_score": 0.0,
    # detectron2's own.
    "unknown": 0.05,
}


def default_keypoint_threshold(score_scale) -> float:
    """The drawing threshold of keypoints on ``score_scale`` (None or unknown: detectron2's)."""
    unknown = KEYPOINT_DRAW_THRESHOLDS["unknown"]
    return KEYPOINT_DRAW_THRESHOLDS.get(score_scale or "unknown", unknown)


def limbs_drawn(keypoints, metadata, keypoint_threshold: float) -> np.ndarray:
    """(N,) how many limbs (the metadata's ``keypoint_connection_rules``) :class:`PoseVisualizer`
    draws for each of ``keypoints`` (N, K, 3: x, y, score; array or tensor): those whose two
    keypoints score above ``keypoint_threshold``, as its ``draw_and_connect_keypoints``."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, len(metadata.keypoint_names), 3)
    index = {name: i for i, name in enumerate(metadata.keypoint_names)}
    rules = metadata.get("keypoint_connection_rules", ())
    if not rules:
        return np.zeros(len(kp), dtype=np.int64)
    ends = np.array([(index[a], index[b]) for a, b, _ in rules])
    shown = kp[..., 2] > keypoint_threshold
    return (shown[:, ends[:, 0]] & shown[:, ends[:, 1]]).sum(1)


def limbs_summary(counts, metadata) -> str:
    """What :func:`limbs_drawn`'s ``counts`` (one per drawn person) say, for a summary line."""
    counts = np.asarray(counts)
    total = len(metadata.get("keypoint_connection_rules", ()))
    return (f"all {total} limbs drawn for {int((counts == total).sum())} of {len(counts)}"
            f" persons, none for {int((counts == 0).sum())}")  # fmt: skip


class PoseVisualizer(Visualizer):
    """detectron2's ``Visualizer`` (same arguments) drawing keypoints whose score is above
    ``keypoint_threshold`` (detectron2: a fixed 0.05)."""

    def __init__(self, img_rgb, metadata=None, scale=1.0, instance_mode=None, *,
                 keypoint_threshold: float):  # fmt: skip
        kwargs = {} if instance_mode is None else {"instance_mode": instance_mode}
        super().__init__(img_rgb, metadata, scale, **kwargs)
        self.keypoint_threshold = keypoint_threshold  # read by draw_and_connect_keypoints
