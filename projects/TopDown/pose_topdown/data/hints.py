"""Inference hints of a hint cue (``JointHintCue``): points that say which person a box's crop is
about, from another model's output, as HintPose's report takes them at inference (section 3.1:
joints of another model, each one cue, so one crop). ``TEST.TOPDOWN.HINT.SOURCE`` chooses the
source:

- "keypoints": with ``TEST.TOPDOWN.HINT.FILE`` (a keypoint results file on the test images), the
  file's keypoints (of every entry) inside the box, for any box source, ground-truth boxes
  included; without it, the keypoints of the box's own input instance (``pred_keypoints``: the
  multitask R-CNN as the detector box source, or a keypoint results file as the detection
  file); the ``MAX_PER_BOX`` best (0: all) scoring at least ``SCORE_THRESH``;
- "heatmap_peaks": local maxima inside the box of an image-level joint heatmap. HintPose took it
  from a bottom-up network; here it is the R-CNN's keypoint heatmaps (``pred_keypoint_heatmaps``,
  logits over each instance's box) pasted into image space: per instance and joint the spatial
  softmax (at its peak, the probability detectron2 reports as the keypoint's score, so one
  threshold serves both sources), the image map the maximum over instances, on a grid of
  ``PEAK_STRIDE`` pixels. Peaks of several people inside one box give several hints;
- "center": none (the cue uses the box centre). A project option: training never cues the box
  centre, so it is not the report's cue.

A source returns (N, M, 3) hints (x, y, score) in detectron2's pixel-centre frame (as
``pred_keypoints``), a NaN row where a box has fewer than M.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.structures import Instances

__all__ = ["HintSource", "paste_joint_heatmaps", "heatmap_peaks"]

SOURCES = ("keypoints", "heatmap_peaks", "center")


def paste_joint_heatmaps(
    boxes: torch.Tensor,
    heatmaps: torch.Tensor,
    image_size: Tuple[int, int],
    stride: int,
    chunk: int = 16,
) -> torch.Tensor:
    """(K, ceil(H / stride), ceil(W / stride)) image-level joint heatmaps from R instances'
    (R, K, h, w) keypoint logits over their (R, 4) XYXY boxes: each map's spatial softmax (the
    keypoint score of detectron2's ``heatmaps_to_keypoints`` at the peak), sampled (bilinear,
    zero outside the box) at the grid points ((i + 0.5) * stride), then the maximum over
    instances. ``chunk`` instances at a time bound the memory. (The instance scores are not
    applied: the box's own score already ranks the box's poses.)"""
    h, w = image_size
    hs, ws = -(-int(h) // stride), -(-int(w) // stride)
    r, k = heatmaps.shape[:2]
    out = torch.zeros(k, hs, ws, dtype=torch.float32, device=heatmaps.device)
    if r == 0:
        return out
    prob = F.softmax(heatmaps.float().flatten(2), -1).view_as(heatmaps)
    gx = (torch.arange(ws, dtype=torch.float32, device=out.device) + 0.5) * stride
    gy = (torch.arange(hs, dtype=torch.float32, device=out.device) + 0.5) * stride
    boxes = boxes.float().to(out.device)
    for s in range(0, r, chunk):
        b = boxes[s : s + chunk]
        bw = (b[:, 2] - b[:, 0]).clamp_min(1e-6)
        bh = (b[:, 3] - b[:, 1]).clamp_min(1e-6)
        u = (gx[None] - b[:, :1]) / bw[:, None] * 2 - 1  # (c, ws), align_corners=False frame
        v = (gy[None] - b[:, 1:2]) / bh[:, None] * 2 - 1  # (c, hs)
        grid = torch.stack(torch.broadcast_tensors(u[:, None, :], v[:, :, None]), -1)
        pasted = F.grid_sample(prob[s : s + chunk], grid, mode="bilinear",
                               padding_mode="zeros", align_corners=False)  # fmt: skip
        out = torch.maximum(out, pasted.amax(0))
    return out


def heatmap_peaks(joint_maps: torch.Tensor, stride: int, thresh: float) -> torch.Tensor:
    """(P, 3) local maxima (x, y, value) over 3x3 neighbourhoods of (K, hs, ws) maps, at least
    ``thresh``, in image coordinates (cell centres), all joint types together."""
    pooled = F.max_pool2d(joint_maps[None], 3, stride=1, padding=1)[0]
    peak = (joint_maps == pooled) & (joint_maps >= thresh)
    _, ys, xs = torch.nonzero(peak, as_tuple=True)
    vals = joint_maps[peak]
    return torch.stack([(xs.float() + 0.5) * stride, (ys.float() + 0.5) * stride, vals], 1)


def _best_hints(points: torch.Tensor, valid: torch.Tensor, m: int) -> torch.Tensor:
    """(N, m, 3) of the m best-scoring valid (N, P, 3) points per row, NaN rows where fewer; m 0:
    every valid point (m = P)."""
    n, p = valid.shape
    m = m or p
    out = torch.full((n, m, 3), float("nan"), dtype=torch.float32, device=points.device)
    if p == 0:
        return out
    score = torch.where(valid, points[..., 2], torch.full_like(points[..., 2], -float("inf")))
    top, idx = score.topk(min(m, p), dim=1)
    picked = torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))
    out[:, : idx.shape[1]] = torch.where(
        torch.isfinite(top)[..., None], picked, out[:, : idx.shape[1]]
    )
    return out


class HintSource:
    """Hints for the boxes of one image (module docstring)."""

    @configurable
    def __init__(
        self, *, source="keypoints", max_per_box=0, score_thresh=0.2, peak_stride=4,
        ordered=False,
    ):  # fmt: skip
        """
        Args:
            source, max_per_box, score_thresh, peak_stride: TEST.TOPDOWN.HINT.*.
            ordered: "keypoints" gives the whole pose in keypoint order (NaN below the
                threshold) instead of the best MAX_PER_BOX: the input pose of a cue that renders
                one (PoseCue).
        """
        if source not in SOURCES:
            raise ValueError(f"TEST.TOPDOWN.HINT.SOURCE must be one of {SOURCES}, got {source!r}")
        if max_per_box < 0 or peak_stride < 1:
            raise ValueError(
                f"TEST.TOPDOWN.HINT.MAX_PER_BOX ({max_per_box}) must be >= 0 (0: every hint) and"
                f" PEAK_STRIDE ({peak_stride}) >= 1"
            )
        self.source, self.max_per_box = source, int(max_per_box)
        self.score_thresh, self.peak_stride = float(score_thresh), int(peak_stride)
        self.ordered = bool(ordered)

    @classmethod
    def from_config(cls, cfg):
        h = cfg.TEST.TOPDOWN.HINT
        return dict(source=h.SOURCE, max_per_box=h.MAX_PER_BOX, score_thresh=h.SCORE_THRESH,
                    peak_stride=h.PEAK_STRIDE)  # fmt: skip

    def __call__(
        self,
        instances: Optional[Instances],
        index: torch.Tensor,
        boxes: torch.Tensor,
        image_size: Tuple[int, int],
        where: str = "image",
        own: bool = True,
    ) -> Optional[torch.Tensor]:
        """
        Args:
            instances: all the image's input instances (the detector's or the input's), or None;
                or, with ``own`` False, another model's instances on the image (HINT.FILE).
            index: which of them ``boxes`` are (after the box filters); unused without ``own``.
            boxes: (N, 4) XYXY, the boxes to estimate.
            image_size: (height, width).
            where: names the image in errors.

        Returns:
            (N, MAX_PER_BOX, 3) hints ((N, K, 3) when ``ordered``), or None for "center".
        """
        if self.source == "center":
            return None
        field = "pred_keypoints" if self.source == "keypoints" else "pred_keypoint_heatmaps"
        if instances is None or not instances.has(field):
            raise ValueError(
                f"{where}: TEST.TOPDOWN.HINT.SOURCE {self.source!r} needs {field} on the input"
                " person instances (the multitask R-CNN as TEST.TOPDOWN.BOX_SOURCE 'detector'"
                + (
                    ", or a keypoint results file as DET_FILE or as TEST.TOPDOWN.HINT.FILE"
                    if field == "pred_keypoints"
                    else ""
                )
                + "); these boxes have none."
            )
        boxes = boxes.float()
        if self.source == "keypoints" and not own:
            if self.ordered:
                raise ValueError("an ordered input pose (PoseCue) is the box's own: no HINT.FILE")
            points = instances.pred_keypoints.float().reshape(-1, 3).to(boxes.device)
            return _inside_best(points, boxes, self.score_thresh, self.max_per_box)
        if self.source == "keypoints":
            kp = instances.pred_keypoints[index.to(instances.pred_keypoints.device)].float()
            kp = kp.to(boxes.device)
            if self.ordered:
                return torch.where((kp[..., 2:] >= self.score_thresh), kp, float("nan"))
            return _best_hints(kp, kp[..., 2] >= self.score_thresh, self.max_per_box)
        maps = paste_joint_heatmaps(
            instances.pred_boxes.tensor,
            instances.pred_keypoint_heatmaps,
            image_size,
            self.peak_stride,
        )
        peaks = heatmap_peaks(maps, self.peak_stride, self.score_thresh).to(boxes.device)
        return _inside_best(peaks, boxes, self.score_thresh, self.max_per_box)


def _inside_best(points: torch.Tensor, boxes: torch.Tensor, thresh: float, m: int):
    """(N, m, 3) hints of N XYXY boxes: the best (P, 3) points inside each box scoring at least
    ``thresh`` (``_best_hints``)."""
    x, y = points[None, :, 0], points[None, :, 1]
    inside = (
        (x >= boxes[:, :1]) & (x <= boxes[:, 2:3]) & (y >= boxes[:, 1:2]) & (y <= boxes[:, 3:])
    )
    valid = inside & (points[None, :, 2] >= thresh) & torch.isfinite(points[None]).all(-1)
    return _best_hints(points[None].expand(len(boxes), -1, -1), valid, m)
