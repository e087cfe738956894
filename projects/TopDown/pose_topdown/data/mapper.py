"""Dataset mappers of the top-down stage.

Training works on persons, not images (as the official HRNet): :func:`person_dicts` turns
detectron2 dataset dicts into one dict per labelled person, and :class:`TopDownTrainMapper` turns
each into an augmented, affine-warped crop with its heatmap targets. :class:`TopDownTestMapper`
keeps whole images and attaches the person boxes to estimate (ground truth or a detection file);
the model crops them itself.

Coordinates: detectron2 stores keypoints as COCO values + 0.5 (pixel centres); the official HRNet
conventions (crop affine, flip ``x -> w - 1 - x``) use the COCO values, so the mapper subtracts 0.5
on the way in and the model adds it back on the way out.
"""

import copy
import logging
from typing import Dict, List, Optional

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.structures import Boxes, BoxMode, Instances, pairwise_iou

from multitask_pose.codecs import KeypointCodec
from multitask_pose.data.keypoints import keypoint_spec_of
from multitask_pose.shared import flip_keypoints

from ..affine import apply_affine, box_to_center_size, crop_affine, warp_crops
from ..codec import build_topdown_codec
from .boxes import gt_person_boxes, load_detection_file, official_gt_boxes
from .cues import build_cue

__all__ = ["person_dicts", "TopDownTrainMapper", "TopDownTestMapper", "lower_body_indices"]

logger = logging.getLogger(__name__)

LOWER_BODY_WORDS = ("hip", "knee", "ankle", "foot", "heel", "toe")


def lower_body_indices(keypoint_names) -> np.ndarray:
    """Indices of the lower-body keypoints (hips down), from the names: half-body augmentation
    needs the split without hard-coding a layout."""
    return np.array(
        [i for i, n in enumerate(keypoint_names) if any(w in n.lower() for w in LOWER_BODY_WORDS)],
        dtype=int,
    )


def person_dicts(
    dataset_dicts: List[Dict], min_keypoints: int = 1, gt_box_minus_one: bool = False
) -> List[Dict]:
    """One dict per non-crowd person with at least ``min_keypoints`` labelled keypoints and a box
    of positive area inside the image: ``file_name, image_id, height, width, bbox`` (XYXY, clipped
    to the image; with ``gt_box_minus_one`` cleaned as the official code does,
    :func:`official_gt_boxes`), ``keypoints`` (K, 3), ``area`` (COCO's, else 0.53 x the box, the
    evaluation's rule) and the image's other non-crowd persons with keypoints, ``others``
    (M, K, 3), ``other_areas`` (M,) and their boxes' IoU with this one's ``other_ious`` (M,)
    (PoseFix's swaps need them)."""

    def area_of(a):
        x, y, bw, bh = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYWH_ABS)
        return float(a["area"]) if a.get("area") else 0.53 * bw * bh

    out = []
    for d in dataset_dicts:
        h, w = d["height"], d["width"]
        people = [
            a for a in d.get("annotations", []) if not a.get("iscrowd", 0) and "keypoints" in a
        ]
        all_kp = [np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3) for a in people]
        all_areas = np.array([area_of(a) for a in people])
        all_boxes = Boxes(torch.tensor(
            [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in people],
            dtype=torch.float64).reshape(-1, 4))  # fmt: skip
        all_ious = pairwise_iou(all_boxes, all_boxes).numpy()
        for i, a in enumerate(people):
            kp = all_kp[i]
            if (kp[:, 2] > 0).sum() < min_keypoints:
                continue
            x0, y0, x1, y1 = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
            if gt_box_minus_one:
                x0, y0, x1, y1 = official_gt_boxes([[x0, y0, x1, y1]], w, h)[0].tolist()
            x0, y0 = max(0.0, x0), max(0.0, y0)
            x1, y1 = min(float(w), x1), min(float(h), y1)
            if x1 <= x0 or y1 <= y0:
                continue
            out.append(
                {
                    "file_name": d["file_name"],
                    "image_id": d["image_id"],
                    "height": h,
                    "width": w,
                    "bbox": np.array([x0, y0, x1, y1]),
                    "keypoints": kp,
                    "area": all_areas[i],
                    "others": np.array([q for j, q in enumerate(all_kp) if j != i]).reshape(
                        -1, *kp.shape
                    ),
                    "other_areas": np.delete(all_areas, i),
                    "other_ious": np.delete(all_ious[i], i),
                }
            )
    return out


class TopDownTrainMapper:
    """Person dict -> {"image": (3, H, W) uint8 crop in cfg.INPUT.FORMAT, "targets": the codec's
    encoding of the person (e.g. "heatmaps" (K, h, w), "target_weight" (K,)), "crop_affine":
    (2, 3) original image -> crop, "cues": (C, H, W) when a cue is configured (a hint cue's hints
    drawn from the person's labels, in the augmented frame)} with the official augmentation:
    half body, random scale and rotation, horizontal flip through the dataset's flip map (in a
    flipped crop, channel k holds the mirror keypoint of k)."""

    @configurable
    def __init__(
        self,
        *,
        input_size,
        codec: KeypointCodec,
        flip_indices,
        lower_body,
        cue=None,
        image_format="RGB",
        padding=1.25,
        scale_factor=0.35,
        rotation_factor=45.0,
        rotation_prob=0.6,
        flip_prob=0.5,
        half_body_prob=0.3,
        half_body_min_keypoints=8,
        is_train=True,
    ):
        self.input_size = tuple(input_size)
        self.cue = cue
        self.aspect = self.input_size[0] / self.input_size[1]
        self.codec = codec
        self.flip_indices = np.asarray(flip_indices)
        self.lower = np.asarray(lower_body, dtype=int)
        self.upper = np.setdiff1d(np.arange(len(self.flip_indices)), self.lower)
        self.image_format = image_format
        self.padding = padding
        self.scale_factor, self.rotation_factor, self.rotation_prob = (
            scale_factor,
            rotation_factor,
            rotation_prob,
        )
        self.flip_prob, self.half_body_prob, self.half_body_min_keypoints = (
            flip_prob,
            half_body_prob,
            half_body_min_keypoints,
        )
        self.is_train = is_train

    @classmethod
    def from_config(cls, cfg, is_train=True, codec=None):
        """
        Args:
            cfg: the config: ``DATASETS.TRAIN`` (keypoint layout), ``MODEL.TOPDOWN.{INPUT_SIZE,
                CUE}``, ``INPUT.FORMAT`` and ``INPUT.TOPDOWN.*`` (augmentation).
            is_train: augment (scale, rotation, flip, half body) or not.
            codec: the model's (``model.codec``); by default built from the config as the model
                builds it (``MODEL.TOPDOWN.CODEC.NAME``).

        Returns:
            the constructor's keyword arguments.
        """
        spec = keypoint_spec_of(cfg.DATASETS.TRAIN[0])
        t = cfg.INPUT.TOPDOWN
        return dict(
            input_size=cfg.MODEL.TOPDOWN.INPUT_SIZE,
            codec=codec if codec is not None else build_topdown_codec(cfg),
            flip_indices=spec.flip_indices,
            lower_body=lower_body_indices(spec.keypoint_names),
            cue=build_cue(cfg),
            image_format=cfg.INPUT.FORMAT,
            padding=t.PADDING,
            scale_factor=t.SCALE_FACTOR,
            rotation_factor=t.ROTATION_FACTOR,
            rotation_prob=t.ROTATION_PROB,
            flip_prob=t.FLIP_PROB,
            half_body_prob=t.HALF_BODY_PROB,
            half_body_min_keypoints=t.HALF_BODY_MIN_KEYPOINTS,
            is_train=is_train,
        )

    def _half_body(self, kp: np.ndarray):
        """Center and size of the upper or the lower body's labelled keypoints, the official
        HRNet rule (``JointsDataset.half_body_transform``): the upper body when
        ``np.random.randn() < 0.5`` (about 69% of the time) and it has more than 2 labelled
        keypoints, else the lower body if it has more than 2, else the upper; none when the chosen
        part has fewer than 2. The centre is the mean of the chosen keypoints; the size their
        extent grown to the crop's aspect ratio, times 1.5. Returns None to keep the box."""
        vis = kp[:, 2] > 0
        upper, lower = self.upper[vis[self.upper]], self.lower[vis[self.lower]]
        if np.random.randn() < 0.5 and len(upper) > 2:
            part = upper
        else:
            part = lower if len(lower) > 2 else upper
        if len(part) < 2:
            return None
        pts = kp[part, :2]
        w, h = pts.max(0) - pts.min(0)
        # The official code divides by an extent of 0 when the chosen keypoints coincide; one
        # pixel instead keeps the crop finite.
        w, h = max(w, 1.0), max(h, 1.0)
        if w > self.aspect * h:
            h = w / self.aspect
        else:
            w = h * self.aspect
        return pts.mean(0), np.array([w, h]) * 1.5

    def __call__(self, person: Dict) -> Dict:
        image = utils.read_image(person["file_name"], format=self.image_format)
        utils.check_image_size({"height": person["height"], "width": person["width"]}, image)
        kp = person["keypoints"].copy()
        kp[:, :2] -= 0.5  # detectron2 pixel centres -> COCO/official pixel indices
        # Boxes carry no half-pixel offset in detectron2: they are already in the COCO frame.
        box = np.asarray(person["bbox"], dtype=np.float64)
        center, size = (a[0] for a in box_to_center_size(box[None], self.aspect, self.padding))
        rot = 0.0
        mirror = np.eye(3)  # original image -> the (possibly flipped) image that is cropped
        if self.is_train:
            if (
                kp[:, 2] > 0
            ).sum() > self.half_body_min_keypoints and np.random.rand() < self.half_body_prob:
                half = self._half_body(kp)
                if half is not None:
                    center, size = half
            sf, rf = self.scale_factor, self.rotation_factor
            size = size * np.clip(np.random.randn() * sf + 1, 1 - sf, 1 + sf)
            if np.random.rand() <= self.rotation_prob:
                rot = float(np.clip(np.random.randn() * rf, -2 * rf, 2 * rf))
            if np.random.rand() < self.flip_prob:
                image = image[:, ::-1]
                kp = flip_keypoints(kp, image.shape[1], self.flip_indices)
                center = center.copy()
                center[0] = image.shape[1] - center[0] - 1
                box = np.array(
                    [image.shape[1] - 1 - box[2], box[1], image.shape[1] - 1 - box[0], box[3]]
                )
                mirror = np.array([[-1.0, 0, image.shape[1] - 1], [0, 1, 0], [0, 0, 1]])
        m = crop_affine(center[None], size[None], rot, self.input_size)
        crop = warp_crops(np.ascontiguousarray(image), m, self.input_size)[0]
        kp_crop = apply_affine(kp[None], m)[0]
        targets = {k: v[0] for k, v in self.codec.encode(kp_crop[None]).items()}
        if person.get("negative"):  # a hard negative: nothing anywhere, at full weight
            targets = {k: torch.ones_like(v) if k.endswith("weight") else v
                       for k, v in targets.items()}  # fmt: skip
        out = {
            "image": torch.as_tensor(np.ascontiguousarray(crop.transpose(2, 0, 1))),
            "targets": targets,
            "image_id": person["image_id"],
            # original image (official pixel-index frame) -> crop, the flip included (a negative
            # determinant): what maps the targets back to the annotation.
            "crop_affine": torch.from_numpy(m[0] @ mirror),
        }
        if self.cue is not None:
            hints = None
            if self.cue.uses_hints:
                area = person.get("area", 0.53 * np.prod(box[2:] - box[:2]))
                # The other persons in the crop's frame (swaps), only for the cues that use them.
                others = person.get("others", np.zeros((0,) + kp.shape)).copy()
                others[..., :2] -= 0.5
                if mirror[0, 0] < 0:
                    others = flip_keypoints(others, image.shape[1], self.flip_indices)
                other_areas = person.get("other_areas", np.zeros(len(others)))
                other_ious = person.get("other_ious", np.ones(len(others)))
                context = {"keypoints": kp, "box": box, "area": area, "others": others,
                           "other_areas": other_areas, "other_ious": other_ious,
                           "affine": m[0], "input_size": self.input_size}  # fmt: skip
                estimate_of = getattr(self.cue, "estimate_of", None)  # PoseFix's
                estimate = estimate_of(person) if estimate_of else None
                if estimate is not None:  # another model's pose, in the crop's frame as `others`
                    estimate = estimate[None].copy()
                    estimate[..., :2] -= 0.5
                    if mirror[0, 0] < 0:
                        estimate = flip_keypoints(estimate, image.shape[1], self.flip_indices)
                    context["estimate"] = estimate[0]
                hints = self.cue.training_hints(context)[None]
            out["cues"] = self.cue(box[None], m, self.input_size, hints)[0]
        return out


def _dataset_check(dataset_name: str, dicts: List[Dict]) -> Dict:
    """``load_detection_file``'s arguments that refuse a file made for another dataset: the
    dataset's name (against the file's record) and its image sizes (against the boxes)."""
    sizes = {d["image_id"]: (d["height"], d["width"]) for d in dicts
             if "height" in d and "width" in d}  # fmt: skip
    return {"dataset": dataset_name, "image_sizes": sizes}


class TopDownTestMapper:
    """Image dict -> {"image": (3, H, W) uint8 in cfg.INPUT.FORMAT at full size, "height", "width",
    "image_id", "instances": Instances(gt_boxes or pred_boxes + scores)} for BOX_SOURCE "gt" or
    "file"; with "detector" no boxes are attached and the model's detector finds them."""

    @configurable
    def __init__(
        self,
        *,
        image_format="RGB",
        box_source="gt",
        detections: Optional[Dict] = None,
        gt_box_minus_one: bool = False,
        hint_detections: Optional[Dict] = None,
    ):
        """
        Args:
            hint_detections: another model's keypoint results per image (TEST.TOPDOWN.HINT.FILE,
                ``load_detection_file`` with keypoints), attached as ``"hint_instances"``.
        """
        if box_source not in ("gt", "file", "detector"):
            raise ValueError(
                f"TEST.TOPDOWN.BOX_SOURCE must be 'gt', 'file' or 'detector', got {box_source!r}"
            )
        if box_source == "file" and detections is None:
            raise ValueError("BOX_SOURCE 'file' needs the detections (TEST.TOPDOWN.DET_FILE)")
        self.image_format = image_format
        self.box_source = box_source
        self.detections = detections
        self.gt_box_minus_one = gt_box_minus_one
        self.hint_detections = hint_detections

    @classmethod
    def from_config(cls, cfg, dataset_name: str, dataset_dicts: Optional[List[Dict]] = None):
        """
        Args:
            cfg: the config: ``TEST.TOPDOWN.{BOX_SOURCE, DET_FILE, HINT.SOURCE, HINT.FILE}`` (a
                hint cue reading "keypoints" loads the keypoints of HINT.FILE, else of DET_FILE),
                ``INPUT.FORMAT`` and ``INPUT.TOPDOWN.GT_BOX_MINUS_ONE``. A hint cue reading
                "keypoints" on ground-truth boxes without HINT.FILE is refused here: the
                trainer builds this mapper before training, so the error comes first.
            dataset_name: the test dataset (its ``detections_file`` when DET_FILE is empty).
            dataset_dicts: its dicts, if already loaded (to check the detection file's image ids).

        Returns:
            the constructor's keyword arguments.
        """
        from detectron2.data import DatasetCatalog

        source = cfg.TEST.TOPDOWN.BOX_SOURCE
        hint = cfg.TEST.TOPDOWN.HINT
        cue = build_cue(cfg)
        hinted = cue is not None and cue.uses_hints and hint.SOURCE == "keypoints"
        if hint.FILE and not hinted:
            raise ValueError(
                f"TEST.TOPDOWN.HINT.FILE is set but MODEL.TOPDOWN.CUE {cfg.MODEL.TOPDOWN.CUE!r}"
                f" with HINT.SOURCE {hint.SOURCE!r} reads no keypoint hints from it"
            )
        if hinted and hint.FILE and not cue.expands:
            raise ValueError(
                f"{type(cue).__name__} renders each box's own input pose: give it as DET_FILE"
                " (BOX_SOURCE 'file'), not as TEST.TOPDOWN.HINT.FILE"
            )
        if hinted and source == "gt" and not cue.expands:
            raise ValueError(
                f"{type(cue).__name__} renders each box's own input pose: it needs"
                " TEST.TOPDOWN.BOX_SOURCE 'file' with a keypoint results file as DET_FILE"
            )
        if hinted and source == "gt" and not hint.FILE:
            raise ValueError(
                f"{type(cue).__name__} with TEST.TOPDOWN.HINT.SOURCE 'keypoints' on ground-truth"
                " boxes needs TEST.TOPDOWN.HINT.FILE: another model's keypoint results on"
                f" {dataset_name!r} (e.g. a top-down pass's coco_instances_results.json), whose"
                " keypoints in each box cue it as training did (ground-truth boxes carry none)."
                " SOURCE 'center' cues the box centre instead, which training never shows"
            )
        hint_detections = None
        if hint.FILE:
            dicts = dataset_dicts if dataset_dicts is not None else DatasetCatalog.get(dataset_name)
            hint_detections = load_detection_file(
                hint.FILE, [d["image_id"] for d in dicts], with_keypoints=True,
                key="TEST.TOPDOWN.HINT.FILE", **_dataset_check(dataset_name, dicts),
            )  # fmt: skip
            n = sum(len(v[1]) for v in hint_detections.values())
            logger.info("Hints: keypoints of %d results from %s", n, hint.FILE)
        detections = None
        if source == "file":
            path = cfg.TEST.TOPDOWN.DET_FILE or MetadataCatalog.get(dataset_name).get(
                "detections_file", ""
            )
            if not path:
                raise ValueError(
                    f"BOX_SOURCE 'file' without TEST.TOPDOWN.DET_FILE, and dataset {dataset_name!r}"
                    " names no detections_file"
                )
            dicts = dataset_dicts if dataset_dicts is not None else DatasetCatalog.get(dataset_name)
            detections = load_detection_file(
                path, [d["image_id"] for d in dicts], with_keypoints=hinted and not hint.FILE,
                **_dataset_check(dataset_name, dicts),
            )  # fmt: skip
            n = sum(len(v[1]) for v in detections.values())
            logger.info("Box source: %d detections from %s for %d images", n, path, len(detections))
        return dict(
            image_format=cfg.INPUT.FORMAT,
            box_source=source,
            detections=detections,
            gt_box_minus_one=cfg.INPUT.TOPDOWN.GT_BOX_MINUS_ONE,
            hint_detections=hint_detections,
        )

    def __call__(self, dataset_dict: Dict) -> Dict:
        d = copy.copy(dataset_dict)
        image = utils.read_image(d["file_name"], format=self.image_format)
        utils.check_image_size(d, image)
        out = {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "height": image.shape[0],
            "width": image.shape[1],
            "image_id": d["image_id"],
            "file_name": d["file_name"],
        }
        if self.hint_detections is not None:
            boxes, scores, keypoints = self.hint_detections[d["image_id"]]
            hints = Instances(image.shape[:2])
            hints.pred_boxes = Boxes(torch.from_numpy(boxes))
            hints.scores = torch.from_numpy(scores)
            hints.pred_keypoints = torch.from_numpy(keypoints)
            out["hint_instances"] = hints
        if self.box_source == "detector":
            return out
        inst = Instances(image.shape[:2])
        if self.box_source == "gt":
            boxes, _ = gt_person_boxes(d, self.gt_box_minus_one)
            inst.gt_boxes = Boxes(torch.from_numpy(boxes))
        else:
            boxes, scores, *keypoints = self.detections[d["image_id"]]
            inst.pred_boxes = Boxes(torch.from_numpy(boxes))
            inst.scores = torch.from_numpy(scores)
            if keypoints:  # a keypoint results file: the hints of TEST.TOPDOWN.HINT.SOURCE
                inst.pred_keypoints = torch.from_numpy(keypoints[0])
        out["instances"] = inst
        return out
