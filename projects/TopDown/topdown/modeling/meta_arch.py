"""``TopDownPoseEstimator``: the second stage as a detectron2 meta-architecture.

Training takes person crops with heatmap targets (``topdown.data.TopDownTrainMapper``) and
returns ``{"loss_heatmap"}``. Inference takes detectron2-style image inputs with person boxes in
``"instances"`` (``pred_boxes`` + ``scores`` as any detectron2 detector returns them, or
``gt_boxes``), or no boxes when a detector is configured, and returns for each image
``{"instances": Instances(pred_boxes, scores, pred_classes, pred_keypoints)}`` in image
coordinates: the same fields as the R-CNN, for the same evaluator, visualizer and writer.

Inference per image: crop every box at once (one ``grid_sample``, equal to the training crops'
``cv2.warpAffine``), heatmaps (+ flip test), decode with the training codec, map back through the
inverse crop affine, rescore, then IoU-NMS and OKS-NMS. All batched over the boxes.
"""
import logging
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances
from torch import nn
from torchvision.ops import nms

from multitask_pose.data.keypoints import keypoint_spec_of
from multitask_pose.evaluation.oks import oks_nms
from multitask_pose.modeling.balanced_keypoint_loss import keypoint_type_weights

from ..affine import box_to_center_size, crop_affine, flip_heatmaps, invert_affine
from ..codec import GaussianHeatmapCodec
from ..data.boxes import PersonDetector, filter_person_boxes
from .build import build_pose_net

__all__ = ["TopDownPoseEstimator", "dataset_keypoint_spec"]

logger = logging.getLogger(__name__)


def dataset_keypoint_spec(cfg):
    """The keypoint layout of the config's datasets (all must share one), checked against
    MODEL.TOPDOWN.NUM_KEYPOINTS."""
    names = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("TopDownPoseEstimator needs DATASETS.TEST or DATASETS.TRAIN: the flip map and OKS sigmas"
                         " come from the dataset's keypoint metadata")
    specs = [keypoint_spec_of(n) for n in names]
    for n, s in zip(names, specs):
        if s.keypoint_names != specs[0].keypoint_names:
            raise ValueError(f"datasets {names[0]!r} and {n!r} have different keypoints")
    if specs[0].num_keypoints != cfg.MODEL.TOPDOWN.NUM_KEYPOINTS:
        raise ValueError(f"MODEL.TOPDOWN.NUM_KEYPOINTS is {cfg.MODEL.TOPDOWN.NUM_KEYPOINTS} but dataset"
                         f" {names[0]!r} has {specs[0].num_keypoints} keypoints")
    return specs[0]


@META_ARCH_REGISTRY.register()
class TopDownPoseEstimator(nn.Module):
    @configurable
    def __init__(self, *, pose_net: nn.Module, codec: GaussianHeatmapCodec, flip_indices, oks_sigmas,
                 pixel_mean, pixel_std, input_format: str = "RGB", padding: float = 1.25, loss_weight: float = 1.0,
                 balanced_loss: bool = False, flip_test: bool = True, shift_heatmap: bool = True,
                 rescore: bool = True, rescore_thresh: float = 0.2, iou_nms_thresh: float = 0.6,
                 oks_nms_thresh: float = 0.5, det_score_thresh: float = 0.0, det_topk: int = 100,
                 det_min_size: float = 0.0, detector: Optional[PersonDetector] = None):
        super().__init__()
        div = getattr(pose_net, "size_divisibility", 1)
        if any(s % div for s in codec.input_size):
            raise ValueError(f"MODEL.TOPDOWN.INPUT_SIZE {codec.input_size} must be divisible by {div} for"
                             f" {type(pose_net).__name__}")
        stride = getattr(pose_net, "heatmap_stride", 4)
        if codec.stride != stride:
            raise ValueError(f"{type(pose_net).__name__} makes heatmaps at stride {stride}: MODEL.TOPDOWN.HEATMAP_SIZE"
                             f" {codec.heatmap_size} should be INPUT_SIZE {codec.input_size} / {stride}")
        self.pose_net = pose_net
        self.codec = codec
        self.register_buffer("flip_indices", torch.as_tensor(np.asarray(flip_indices), dtype=torch.long), False)
        self.oks_sigmas = tuple(oks_sigmas)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.input_format = input_format
        self.padding = padding
        self.loss_weight, self.balanced_loss = loss_weight, balanced_loss
        self.flip_test, self.shift_heatmap = flip_test, shift_heatmap
        self.rescore, self.rescore_thresh = rescore, rescore_thresh
        self.iou_nms_thresh, self.oks_nms_thresh = iou_nms_thresh, oks_nms_thresh
        self.det_score_thresh, self.det_topk, self.det_min_size = det_score_thresh, det_topk, det_min_size
        # Not a submodule: the detector keeps its own weights and checkpoints.
        self.__dict__["detector"] = detector

    @classmethod
    def from_config(cls, cfg):
        spec = dataset_keypoint_spec(cfg)
        t = cfg.TEST.TOPDOWN
        detector = None
        if t.BOX_SOURCE == "detector":
            detector = PersonDetector(t.DETECTOR_CONFIG, t.DETECTOR_WEIGHTS, device=cfg.MODEL.DEVICE)
        return dict(
            pose_net=build_pose_net(cfg), codec=GaussianHeatmapCodec.from_config(cfg), flip_indices=spec.flip_indices,
            oks_sigmas=spec.oks_sigmas, pixel_mean=cfg.MODEL.PIXEL_MEAN, pixel_std=cfg.MODEL.PIXEL_STD,
            input_format=cfg.INPUT.FORMAT, padding=cfg.INPUT.TOPDOWN.PADDING, loss_weight=cfg.MODEL.TOPDOWN.LOSS_WEIGHT,
            balanced_loss=cfg.MODEL.TOPDOWN.BALANCED_LOSS, flip_test=t.FLIP_TEST, shift_heatmap=t.SHIFT_HEATMAP,
            rescore=t.RESCORE, rescore_thresh=t.RESCORE_THRESH, iou_nms_thresh=t.IOU_NMS_THRESH,
            oks_nms_thresh=t.OKS_NMS_THRESH, det_score_thresh=t.DET_SCORE_THRESH, det_topk=t.DET_TOPK,
            det_min_size=t.DET_MIN_SIZE, detector=detector)

    @property
    def device(self):
        return self.pixel_mean.device

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std

    def _heatmaps(self, crops: torch.Tensor) -> List[torch.Tensor]:
        outs = self.pose_net(crops)
        expected = tuple(reversed(self.codec.heatmap_size))
        if tuple(outs[-1].shape[-2:]) != expected:
            raise ValueError(f"{type(self.pose_net).__name__} makes {tuple(outs[-1].shape[-2:])} heatmaps from"
                             f" {tuple(crops.shape[-2:])} crops, but MODEL.TOPDOWN.HEATMAP_SIZE (w, h) is"
                             f" {self.codec.heatmap_size}")
        return outs

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return self.inference(batched_inputs)
        crops = self._normalize(torch.stack([x["image"] for x in batched_inputs]))
        target = torch.stack([x["heatmaps"] for x in batched_inputs]).to(self.device)
        weight = torch.stack([x["target_weight"] for x in batched_inputs]).to(self.device)
        if self.balanced_loss:
            weight = weight * keypoint_type_weights(weight > 0)[None]
        # The official JointsMSELoss, 0.5 * mean of weighted squared errors, summed over the
        # supervised outputs (the stacks of an hourglass).
        loss = sum(0.5 * ((out - target) ** 2 * weight[..., None, None]).mean() for out in self._heatmaps(crops))
        return {"loss_heatmap": loss * self.loss_weight}

    # ------------------------------------------------------------------ inference
    def _person_boxes(self, x: Dict):
        inst = x.get("instances")
        if inst is None:
            if self.detector is None:
                raise ValueError(f"image {x.get('image_id', '?')}: no person boxes in 'instances' and no detector"
                                 " (TEST.TOPDOWN.BOX_SOURCE 'detector')")
            image = x["image"].permute(1, 2, 0).cpu().numpy()
            rgb = image if self.input_format == "RGB" else image[:, :, ::-1]
            return self.detector(np.ascontiguousarray(rgb))
        if inst.has("pred_boxes"):
            scores = inst.scores if inst.has("scores") else torch.ones(len(inst))
            return inst.pred_boxes.tensor, scores
        if inst.has("gt_boxes"):
            return inst.gt_boxes.tensor, torch.ones(len(inst))
        raise ValueError(f"image {x.get('image_id', '?')}: 'instances' has neither pred_boxes nor gt_boxes")

    def crop(self, image: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
        """(N, 3, H, W) crops of a (3, Hi, Wi) image by (N, 2, 3) image->crop affines: bilinear,
        zero outside, the same sampling as ``cv2.warpAffine`` in the training mapper."""
        w, h = self.codec.input_size
        hi, wi = image.shape[-2:]
        inv = torch.as_tensor(invert_affine(affine), dtype=torch.float32, device=self.device)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=self.device),
                                torch.arange(w, dtype=torch.float32, device=self.device), indexing="ij")
        pix = torch.stack([xs, ys, torch.ones_like(xs)], -1)  # (h, w, 3)
        src = torch.einsum("nij,hwj->nhwi", inv, pix)  # image pixel coordinates
        grid = torch.stack([src[..., 0] * 2 / max(wi - 1, 1) - 1, src[..., 1] * 2 / max(hi - 1, 1) - 1], -1)
        img = image.to(self.device, torch.float32)[None].expand(len(affine), -1, -1, -1)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def estimate(self, image: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor) -> Instances:
        """Poses for the given (already filtered) XYXY boxes of one (3, H, W) image."""
        h, w = image.shape[-2:]
        result = Instances((h, w))
        k = len(self.flip_indices)
        if len(boxes) == 0:
            result.pred_boxes = Boxes(torch.zeros(0, 4, device=self.device))
            result.scores = torch.zeros(0, device=self.device)
            result.pred_classes = torch.zeros(0, dtype=torch.long, device=self.device)
            result.pred_keypoints = torch.zeros(0, k, 3, device=self.device)
            return result
        center, size = box_to_center_size(boxes.cpu().numpy(), self.codec.input_size[0] / self.codec.input_size[1],
                                          self.padding)
        affine = crop_affine(center, size, 0.0, self.codec.input_size)
        crops = self._normalize(self.crop(image, affine))
        heatmaps = self._heatmaps(crops)[-1]
        if self.flip_test:
            flipped = self._heatmaps(crops.flip(-1))[-1]
            heatmaps = 0.5 * (heatmaps + flip_heatmaps(flipped, self.flip_indices.cpu().numpy(), self.shift_heatmap))
        coords, maxvals = self.codec.decode(heatmaps)
        inv = torch.as_tensor(invert_affine(affine), dtype=torch.float32, device=coords.device)
        xy = torch.einsum("nij,nkj->nki", inv[..., :2], coords) + inv[:, None, :, 2]
        # Back from the official pixel-index frame to detectron2's pixel centres.
        keypoints = torch.cat([xy + 0.5, maxvals[..., None]], -1).to(self.device)
        scores = scores.to(self.device, torch.float32)
        if self.rescore:
            valid = (keypoints[..., 2] > self.rescore_thresh).float()
            kp_score = (keypoints[..., 2] * valid).sum(1) / valid.sum(1).clamp_min(1)
            scores = scores * kp_score
        boxes = boxes.to(self.device, torch.float32)
        keep = torch.arange(len(boxes), device=self.device)
        if self.iou_nms_thresh < 1.0:
            keep = nms(boxes, scores, self.iou_nms_thresh)
        if self.oks_nms_thresh < 1.0:
            areas = torch.as_tensor(size.prod(1), dtype=torch.float32, device=self.device)[keep]
            keep = keep[oks_nms(keypoints[keep], scores[keep], areas, self.oks_sigmas, self.oks_nms_thresh,
                                self.rescore_thresh).to(self.device)]
        result.pred_boxes = Boxes(boxes[keep])
        result.scores = scores[keep]
        result.pred_classes = torch.zeros(len(keep), dtype=torch.long, device=self.device)
        result.pred_keypoints = keypoints[keep]
        return result

    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        results = []
        for x in batched_inputs:
            image = x["image"]
            hw = tuple(image.shape[-2:])
            if (x.get("height", hw[0]), x.get("width", hw[1])) != hw:
                raise ValueError(f"image {x.get('image_id', '?')}: TopDownPoseEstimator takes the full-size image"
                                 f" (height/width {x.get('height')}x{x.get('width')}, tensor {hw[0]}x{hw[1]})")
            boxes, scores = self._person_boxes(x)
            boxes, scores = filter_person_boxes(boxes, scores, hw, self.det_score_thresh, self.det_topk,
                                                self.det_min_size, where=f"image {x.get('image_id', '?')}")
            if len(boxes) == 0:
                logger.info("image %s: no person boxes, no poses", x.get("image_id", "?"))
            results.append({"instances": self.estimate(image, boxes, scores)})
        return results
