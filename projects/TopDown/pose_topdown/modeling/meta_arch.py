"""``TopDownPoseEstimator``: the second stage as a detectron2 meta-architecture.

It runs any ``TopDownPoseNet`` (``pose_topdown.modeling.base``) without knowing which: the network
declares its stride, its cue channels, its supervised outputs and the output to decode.
Its head (``pose_topdown.modeling.heads``, ``MODEL.TOPDOWN.HEAD.NAME``) owns the codec, the loss and
the flip test. Training takes person crops with the head codec's targets
(``pose_topdown.data.TopDownTrainMapper``) and returns ``loss_<output>`` for each supervised output
(the head's loss of that output, times the output's weight and ``MODEL.TOPDOWN.LOSS_WEIGHT``).
Inference takes detectron2-style image inputs with person boxes in ``"instances"`` (``pred_boxes``
+ ``scores`` as any detectron2 detector returns them, or ``gt_boxes``), or no boxes when a detector
is configured, and returns for each image ``{"instances": Instances(pred_boxes, scores,
pred_classes, pred_keypoints)}`` in image coordinates: the same fields as the R-CNN, for the same
evaluator, visualizer and writer.

Inference per image: crop every box at once (one ``grid_sample``, equal to the training crops'
``cv2.warpAffine``) with its cue, the prediction (+ flip test), decoded by the head, map
back through the inverse crop affine, rescore, then IoU-NMS and OKS-NMS. All batched over the boxes.
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
from multitask_pose.shared import flip_heatmaps, oks_nms

from ..affine import box_to_center_size, crop_affine, invert_affine
from ..codec import build_topdown_codec
from ..data.boxes import PersonDetector, filter_person_boxes
from ..data.cues import build_cue, crop_sample_points
from ..data.hints import HintSource
from ..runtime import InferenceNet, int8_calibration, stage
from .base import TopDownPoseNet
from .build import build_pose_net
from .heads import TopDownHead, build_topdown_head

__all__ = ["TopDownPoseEstimator", "dataset_keypoint_spec", "nms_poses"]

logger = logging.getLogger(__name__)


def dataset_keypoint_spec(cfg):
    """The keypoint layout of the config's test datasets and first training dataset (all must
    share one; the other training datasets are mapped into it, ``joint_training.py``), checked
    against MODEL.TOPDOWN.NUM_KEYPOINTS."""
    names = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)[:1]
    if not names:
        raise ValueError(
            "TopDownPoseEstimator needs DATASETS.TEST or DATASETS.TRAIN: the flip map and OKS"
            " sigmas come from the dataset's keypoint metadata"
        )
    specs = [keypoint_spec_of(n) for n in names]
    for n, s in zip(names, specs):
        if s.keypoint_names != specs[0].keypoint_names:
            raise ValueError(f"datasets {names[0]!r} and {n!r} have different keypoints")
    if specs[0].num_keypoints != cfg.MODEL.TOPDOWN.NUM_KEYPOINTS:
        raise ValueError(
            f"MODEL.TOPDOWN.NUM_KEYPOINTS is {cfg.MODEL.TOPDOWN.NUM_KEYPOINTS} but dataset"
            f" {names[0]!r} has {specs[0].num_keypoints} keypoints"
        )
    return specs[0]


def nms_poses(boxes, box_of, scores, keypoints, areas, sigmas, iou_thresh, oks_thresh,
              vis_thresh=None) -> torch.Tensor:  # fmt: skip
    """The top-down stage's duplicate removal: box IoU-NMS, then OKS-NMS of the surviving poses.

    Args:
        boxes: (B, 4) the person boxes; box_of: (N,) each pose's box; scores: (N,) pose scores;
        keypoints: (N, K, 3); areas: (N,) each pose's area for OKS (its crop's); sigmas: (K,).
        iou_thresh, oks_thresh: 1.0 (or more) disables either; vis_thresh: OKS-NMS counts only
        keypoints scoring above it in both poses (None: all).

    Returns:
        the kept pose indices, best score first. IoU-NMS scores each box by its best pose and
        keeps every pose of a kept box (with one pose per box: plain NMS of the poses' boxes).
    """
    # The bookkeeping in numpy: a handful of small torch ops cost more than both NMS calls on a
    # typical image (about 0.25 ms against 0.05 ms; benchmarks/bench_oks_nms.py).
    device = scores.device
    keep = np.arange(len(box_of))
    if iou_thresh < 1.0 and len(keep) > 1:
        s, b_of = scores.detach().cpu().numpy(), box_of.cpu().numpy()
        box_score = np.full(len(boxes), -np.inf, dtype=s.dtype)
        np.maximum.at(box_score, b_of, s)
        alive = np.zeros(len(boxes), dtype=bool)
        box_score = torch.from_numpy(box_score).to(boxes.device, boxes.dtype)
        alive[nms(boxes, box_score, iou_thresh).cpu().numpy()] = True
        keep = np.flatnonzero(alive[b_of])
        keep = keep[np.argsort(-s[keep], kind="stable")]
    if oks_thresh < 1.0 and len(keep) > 1:
        kp, s, a = (t.detach().cpu().numpy()[keep] for t in (keypoints, scores, areas))
        keep = keep[oks_nms(kp, s, a, sigmas, oks_thresh, vis_thresh).numpy()]
    return torch.as_tensor(keep, dtype=torch.long, device=device)


@META_ARCH_REGISTRY.register()
class TopDownPoseEstimator(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        pose_net: TopDownPoseNet,
        head: TopDownHead,
        flip_indices,
        oks_sigmas,
        pixel_mean,
        pixel_std,
        cue=None,
        input_format: str = "RGB",
        padding: float = 1.25,
        loss_weight: float = 1.0,
        flip_test: bool = True,
        rescore: bool = True,
        rescore_thresh: float = 0.2,
        iou_nms_thresh: float = 0.6,
        oks_nms_thresh: float = 0.5,
        oks_nms_vis_thresh: Optional[float] = None,
        det_score_thresh: float = 0.0,
        det_topk: int = 100,
        det_min_size: float = 0.0,
        detector: Optional[PersonDetector] = None,
        hint_source: Optional[HintSource] = None,
        backend: str = "auto",
        onnx_file: str = "",
        int8_calibration=None,
        int8_cache_dir: str = "",
    ):
        """
        Args:
            pose_net: the network (a ``TopDownPoseNet``).
            head: turns each of ``pose_net.supervised_outputs()`` into the loss against its
                codec's targets (made by the mapper), and decodes ``pose_net.prediction``.
            flip_indices, oks_sigmas: the dataset's flip map and OKS sigmas.
            pixel_mean, pixel_std: input normalisation, in ``input_format`` channel order.
            cue: the instance cue (``pose_topdown.data.cues``) or None; its channels must equal
                ``pose_net.cue_channels``.
            input_format: channel order of the images ("RGB" or "BGR").
            padding: box enlargement before cropping.
            loss_weight: multiplies every loss.
            flip_test: merge with the mirrored crop's prediction (the head's way).
            rescore, rescore_thresh: instance score x mean score of keypoints above the threshold.
            iou_nms_thresh, oks_nms_thresh: box IoU-NMS then OKS-NMS; 1.0 disables either.
            oks_nms_vis_thresh: OKS-NMS counts only keypoints scoring above it in both poses;
                None counts all keypoints (the official HRNet / SimpleBaseline evaluation).
            det_score_thresh, det_topk, det_min_size: filters of the input person boxes.
            detector: finds person boxes when the inputs carry none.
            hint_source: gives a hint cue its inference hints (``pose_topdown/data/hints.py``);
                None: the box centre.
            backend, onnx_file: how inference runs the network (``pose_topdown/runtime.py``).
            int8_calibration, int8_cache_dir: the "int8" backend's calibration crops (a function,
                ``runtime.int8_calibration``) and cache of quantized networks.
        """
        super().__init__()
        name = type(pose_net).__name__
        if not isinstance(pose_net, TopDownPoseNet):
            raise TypeError(
                f"{name} is not a TopDownPoseNet (pose_topdown.modeling.base): the"
                " meta-architecture reads its stride, cue channels and outputs from that contract"
            )
        codec = head.codec
        div = pose_net.size_divisibility
        if any(s % div for s in codec.input_size):
            raise ValueError(
                f"MODEL.TOPDOWN.INPUT_SIZE {codec.input_size} must be divisible by {div} for {name}"
            )
        if codec.stride != pose_net.heatmap_stride:
            raise ValueError(
                f"{name} makes heatmaps at stride {pose_net.heatmap_stride}:"
                f" MODEL.TOPDOWN.HEATMAP_SIZE {codec.heatmap_size} should be"
                f" INPUT_SIZE {codec.input_size} / {pose_net.heatmap_stride}"
            )
        cue_channels = cue.channels if cue is not None else 0
        if cue_channels != pose_net.cue_channels:
            raise ValueError(
                f"{name} takes {pose_net.cue_channels} cue channels but MODEL.TOPDOWN.CUE"
                f" {type(cue).__name__ if cue is not None else '(none)'} makes {cue_channels}"
            )
        self.pose_net = pose_net
        self.head = head
        if cue is not None and cue.uses_hints and not cue.expands:
            if hint_source is None or hint_source.source != "keypoints":
                raise ValueError(
                    f"{type(cue).__name__} renders each box's input pose: it needs"
                    " TEST.TOPDOWN.HINT.SOURCE 'keypoints' (a keypoint results file as DET_FILE,"
                    " or the multitask R-CNN as detector)"
                )
        self.cue = cue
        self.hint_source = hint_source
        self.register_buffer(
            "flip_indices", torch.as_tensor(np.asarray(flip_indices), dtype=torch.long), False
        )
        self.oks_sigmas = tuple(oks_sigmas)
        self.register_buffer(
            "pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False
        )
        self.input_format = input_format
        self.padding = padding
        self.loss_weight = loss_weight
        self.flip_test = flip_test
        self.rescore, self.rescore_thresh = rescore, rescore_thresh
        self.iou_nms_thresh, self.oks_nms_thresh = iou_nms_thresh, oks_nms_thresh
        self.oks_nms_vis_thresh = oks_nms_vis_thresh
        self.det_score_thresh, self.det_topk, self.det_min_size = (
            det_score_thresh,
            det_topk,
            det_min_size,
        )
        # Not a submodule: the detector keeps its own weights and checkpoints.
        self.__dict__["detector"] = detector
        self.runner = InferenceNet(
            backend, onnx_file, codec.input_size, int8_calibration, int8_cache_dir
        )

    @classmethod
    def keypoint_score_scale_from_config(cls, cfg) -> str:
        """What the keypoint scores of this estimator's results are (the results files'
        records, ``multitask_pose/evaluation/results_record.py``): its head codec's scale."""
        return build_topdown_codec(cfg).score_scale

    @classmethod
    def from_config(cls, cfg):
        """Builds the pose net, head (with its codec and loss) and cue by their registered names.

        Args:
            cfg: the config: ``MODEL.TOPDOWN.{POSE_NET, HEAD.NAME, CODEC.NAME, LOSS_NAME, CUE}``
                and the networks' keys, ``INPUT``, ``TEST.TOPDOWN`` (inference), and
                ``DATASETS`` (whose keypoint metadata gives the flip map and OKS sigmas).

        Returns:
            the constructor's keyword arguments.
        """
        spec = dataset_keypoint_spec(cfg)
        t = cfg.TEST.TOPDOWN
        cue = build_cue(cfg)
        detector = None
        if t.BOX_SOURCE == "detector":
            detector = PersonDetector(
                t.DETECTOR_CONFIG,
                t.DETECTOR_WEIGHTS,
                device=cfg.MODEL.DEVICE,
                trusted=cfg.MODEL.TRUST_PICKLED_WEIGHTS,
                allow_random_weights=cfg.MODEL.ALLOW_RANDOM_WEIGHTS,
            )
        return dict(
            pose_net=build_pose_net(cfg),
            head=build_topdown_head(cfg, spec.flip_indices),
            cue=cue,
            hint_source=(
                HintSource(cfg, ordered=not cue.expands)
                if cue is not None and cue.uses_hints
                else None
            ),
            flip_indices=spec.flip_indices,
            oks_sigmas=spec.oks_sigmas,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            input_format=cfg.INPUT.FORMAT,
            padding=cfg.INPUT.TOPDOWN.PADDING,
            loss_weight=cfg.MODEL.TOPDOWN.LOSS_WEIGHT,
            flip_test=t.FLIP_TEST,
            rescore=t.RESCORE,
            rescore_thresh=t.RESCORE_THRESH,
            iou_nms_thresh=t.IOU_NMS_THRESH,
            oks_nms_thresh=t.OKS_NMS_THRESH,
            oks_nms_vis_thresh=t.OKS_NMS_VIS_THRESH,
            det_score_thresh=t.DET_SCORE_THRESH,
            det_topk=t.DET_TOPK,
            det_min_size=t.DET_MIN_SIZE,
            detector=detector,
            backend=t.BACKEND,
            onnx_file=t.ONNX_FILE,
            int8_calibration=int8_calibration(cfg) if t.BACKEND == "int8" else None,
            int8_cache_dir=t.INT8_CACHE_DIR,
        )

    @property
    def codec(self):
        """The head's codec: the training mapper encodes the targets with it."""
        return self.head.codec

    @property
    def device(self):
        return self.pixel_mean.device

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std

    def _outputs(
        self, crops: torch.Tensor, cues: Optional[torch.Tensor], inference: bool = False
    ) -> Dict[str, torch.Tensor]:
        """The network's outputs by name; with ``inference``, only the prediction, run by the
        configured backend."""
        if inference:
            outs = {self.pose_net.prediction: self.runner.infer(self.pose_net, crops, cues)}
        else:
            outs = self.pose_net(crops, cues)
        pred = outs[self.pose_net.prediction]
        expected = tuple(reversed(self.codec.heatmap_size))
        if tuple(pred.shape[-2:]) != expected:
            raise ValueError(
                f"{type(self.pose_net).__name__} makes {tuple(pred.shape[-2:])} heatmaps from"
                f" {tuple(crops.shape[-2:])} crops, but MODEL.TOPDOWN.HEATMAP_SIZE (w, h) is"
                f" {self.codec.heatmap_size}"
            )
        return outs

    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: in training, the mapper's person crops: ``image`` (3, H, W), ``targets``
                (the codec's encoding) and ``cues`` (C, H, W) when the model has a cue; in
                inference, images with person boxes (see the module docstring).

        Returns:
            in training, ``loss_<output>`` for each supervised output; in inference, one
            ``{"instances": Instances}`` per image.
        """
        if not self.training:
            return self.inference(batched_inputs)
        crops = self._normalize(torch.stack([x["image"] for x in batched_inputs]))
        cues = None
        if self.cue is not None:
            cues = torch.stack([x["cues"] for x in batched_inputs]).to(self.device, torch.float32)
        targets = {
            k: torch.stack([x["targets"][k] for x in batched_inputs]).to(self.device)
            for k in batched_inputs[0]["targets"]
        }
        outs = self._outputs(crops, cues)
        return {
            f"loss_{name}": self.head.loss(self.head(outs[name]), targets)
            * (weight * self.loss_weight)
            for name, weight in self.pose_net.supervised_outputs().items()
        }

    # ------------------------------------------------------------------ inference
    def _person_boxes(self, x: Dict):
        """(boxes, scores, the instances they came from or None) of one input image."""
        inst = x.get("instances")
        if inst is None:
            if self.detector is None:
                raise ValueError(
                    f"image {x.get('image_id', '?')}: no person boxes in 'instances'"
                    " and no detector (TEST.TOPDOWN.BOX_SOURCE 'detector')"
                )
            image = x["image"].permute(1, 2, 0).cpu().numpy()
            rgb = image if self.input_format == "RGB" else image[:, :, ::-1]
            with stage("detector", self.device):
                inst = self.detector.detect(np.ascontiguousarray(rgb))
        if inst.has("pred_boxes"):
            scores = inst.scores if inst.has("scores") else torch.ones(len(inst))
            return inst.pred_boxes.tensor, scores, inst
        if inst.has("gt_boxes"):
            return inst.gt_boxes.tensor, torch.ones(len(inst)), inst
        raise ValueError(
            f"image {x.get('image_id', '?')}: 'instances' has neither pred_boxes nor gt_boxes"
        )

    def crop(self, image: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
        """(N, 3, H, W) crops of a (3, Hi, Wi) image by (N, 2, 3) image->crop affines: bilinear,
        zero outside, the same sampling as ``cv2.warpAffine`` in the training mapper."""
        hi, wi = image.shape[-2:]
        src = crop_sample_points(
            affine, self.codec.input_size, self.device
        )  # image pixel coordinates
        grid = torch.stack(
            [src[..., 0] * 2 / max(wi - 1, 1) - 1, src[..., 1] * 2 / max(hi - 1, 1) - 1], -1
        )
        img = image.to(self.device, torch.float32)[None].expand(len(affine), -1, -1, -1)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def flip_cues(self, cues: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """The cues of the mirrored crops: columns reversed; a cue whose channel k belongs to
        keypoint k (``keypoint_channels``, PoseCue) also gives each channel to its mirror
        keypoint, as the training mapper renders a flipped person."""
        if cues is None:
            return None
        if getattr(self.cue, "keypoint_channels", False):
            return flip_heatmaps(cues, self.flip_indices.cpu().numpy(), shift=False)
        return cues.flip(-1)

    def crop_regions(self, boxes: torch.Tensor, hints: Optional[torch.Tensor]) -> torch.Tensor:
        """(N, 4) XYXY regions the crops of the N boxes are cut around (then padded): the boxes
        themselves; a subclass may crop elsewhere (PoseFix: the input pose's extent), the poses
        still belonging to their boxes."""
        return boxes

    def decode(self, maps: torch.Tensor, n: int):
        """Crop-pixel coordinates (n, K, 2) and scores (n, K) of n crops from the network's
        prediction: the n crops', then with the flip test the n mirrored crops', merged by the
        head."""
        with torch.no_grad():
            if not self.flip_test:
                return self.head.decode(self.head(maps))
            return self.head.decode(self.head(maps[:n]), self.head(maps[n:]))

    def _crop_hints(self, hints: Optional[torch.Tensor], n: int):
        """(box index of each crop, the crops' hints in the crop affine's frame or None). A hint
        cue that ``expands`` makes one crop per valid hint of a box (one crop with a NaN hint, so
        the box centre, for a box without any); another takes a box's hints together."""
        box_of = torch.arange(n)
        if self.cue is None or not self.cue.uses_hints or hints is None:
            return box_of, None  # None: the cue's default (a hint cue: the box centres)
        hints = hints.detach().float().cpu()
        if self.cue.expands:
            chosen = torch.isfinite(hints).all(-1)
            chosen[~chosen.any(1), 0] = True
            box_of, slot = torch.nonzero(chosen, as_tuple=True)
            hints = hints[box_of, slot][:, None]
        # detectron2's pixel-centre frame -> the official pixel-index frame of the crop affine
        return box_of, (hints - torch.tensor([0.5, 0.5, 0.0])).numpy()

    def estimate(
        self,
        image: torch.Tensor,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        hints: Optional[torch.Tensor] = None,
    ) -> Instances:
        """Poses for the given (already filtered) XYXY boxes of one (3, H, W) image; a hint cue
        takes (N, M, 3) ``hints`` (``pose_topdown/data/hints.py``; None: the box centres), one pose
        per hint of a box."""
        h, w = image.shape[-2:]
        result = Instances((h, w))
        k = len(self.flip_indices)
        if len(boxes) == 0:
            result.pred_boxes = Boxes(torch.zeros(0, 4, device=self.device))
            result.scores = torch.zeros(0, device=self.device)
            result.pred_classes = torch.zeros(0, dtype=torch.long, device=self.device)
            result.pred_keypoints = torch.zeros(0, k, 3, device=self.device)
            return result
        dev = self.device
        with stage("crop", dev):
            box_of, crop_hints = self._crop_hints(hints, len(boxes))
            center, size = box_to_center_size(
                self.crop_regions(boxes, hints).cpu().numpy(),
                self.codec.input_size[0] / self.codec.input_size[1],
                self.padding,
            )
            center, size = center[box_of.numpy()], size[box_of.numpy()]
            affine = crop_affine(center, size, 0.0, self.codec.input_size)
            crops = self._normalize(self.crop(image, affine))
            cues = None
            if self.cue is not None:
                cue_boxes = boxes.cpu().numpy()[box_of.numpy()]
                cues = self.cue(cue_boxes, affine, self.codec.input_size, crop_hints).to(dev)
        pred, n = self.pose_net.prediction, len(crops)
        if self.flip_test:
            # The crops and their mirror images in one batch: one network call per image.
            with stage("flip", dev):
                flip_cues = self.flip_cues(cues)
                crops = torch.cat([crops, crops.flip(-1)])
                cues = None if cues is None else torch.cat([cues, flip_cues])
        with stage("pose network", dev):
            maps = self._outputs(crops, cues, inference=True)[pred]
        with stage("decode", dev):
            coords, maxvals = self.decode(maps, n)
            inv = torch.as_tensor(invert_affine(affine), dtype=torch.float32, device=coords.device)
            xy = torch.einsum("nij,nkj->nki", inv[..., :2], coords) + inv[:, None, :, 2]
            # Back from the official pixel-index frame to detectron2's pixel centres.
            keypoints = torch.cat([xy + 0.5, maxvals[..., None]], -1).to(dev)
        with stage("rescore + NMS", dev):
            box_of = box_of.to(dev)
            scores = scores.to(dev, torch.float32)[box_of]
            if self.rescore:
                valid = (keypoints[..., 2] > self.rescore_thresh).float()
                kp_score = (keypoints[..., 2] * valid).sum(1) / valid.sum(1).clamp_min(1)
                scores = scores * kp_score
            boxes = boxes.to(dev, torch.float32)
            areas = torch.as_tensor(size.prod(1), dtype=torch.float32, device=dev)
            keep = nms_poses(
                boxes, box_of, scores, keypoints, areas, self.oks_sigmas,
                self.iou_nms_thresh, self.oks_nms_thresh, self.oks_nms_vis_thresh,
            )  # fmt: skip
        result.pred_boxes = Boxes(boxes[box_of[keep]])
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
                raise ValueError(
                    f"image {x.get('image_id', '?')}: TopDownPoseEstimator takes the"
                    f" full-size image (height/width {x.get('height')}x{x.get('width')},"
                    f" tensor {hw[0]}x{hw[1]})"
                )
            where = f"image {x.get('image_id', '?')}"
            boxes, scores, source = self._person_boxes(x)
            boxes, scores, index = filter_person_boxes(
                boxes,
                scores,
                hw,
                self.det_score_thresh,
                self.det_topk,
                self.det_min_size,
                where=where,
                return_index=True,
            )
            if len(boxes) == 0:
                logger.info("image %s: no person boxes, no poses", x.get("image_id", "?"))
            hints = None
            if self.hint_source is not None and len(boxes):
                # Another model's keypoints on the image (TEST.TOPDOWN.HINT.FILE) if given, else
                # the box source's own instances.
                own = "hint_instances" not in x
                hints = self.hint_source(source if own else x["hint_instances"], index, boxes,
                                         hw, where=where, own=own)  # fmt: skip
            results.append({"instances": self.estimate(image, boxes, scores, hints)})
        return results
