"""``TopDownPredictor``: image (BGR, as ``DefaultPredictor``) to poses, for notebooks and the
demo; :func:`predictor_and_boxes`: the predictor with the person boxes of its BOX_SOURCE for each
image the demo reads."""

import os

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from multitask_pose.data.image_check import check_image_array
from multitask_pose.engine.checkpoint import checkpointer_for
from multitask_pose.engine.weights_check import check_trained_weights
from multitask_pose.evaluation.results_record import describe_images
from multitask_pose.shared.errors import ConfigError

from .data import TopDownTestMapper, folder_image_dicts, gt_person_boxes
from .engine import TopDownCheckpointer

__all__ = ["TopDownPredictor", "predictor_and_boxes"]


class TopDownPredictor:
    """Used like detectron2's ``DefaultPredictor``: ``predictor(bgr_image)`` returns
    ``{"instances": Instances}`` with ``pred_boxes, scores, pred_classes, pred_keypoints`` in image
    coordinates.

    Person boxes come from the detector of ``TEST.TOPDOWN.BOX_SOURCE "detector"`` (config and
    weights in ``TEST.TOPDOWN.DETECTOR_CONFIG`` / ``DETECTOR_WEIGHTS``), or are passed in:
    ``predictor(image, boxes=xyxy, scores=...)`` (scores default to 1). A hint cue's model
    (HintPose) with ``TEST.TOPDOWN.HINT.SOURCE "keypoints"`` takes each box's keypoints too:
    ``predictor(image, boxes=..., keypoints=...)``, e.g. another model's ``pred_keypoints``.

    Refuses (``RandomWeightsError``) an empty MODEL.WEIGHTS or a checkpoint that leaves part of
    the model random, and so does the detector for its DETECTOR_WEIGHTS, unless
    MODEL.ALLOW_RANDOM_WEIGHTS (``multitask_pose/engine/weights_check.py``).
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        allow = cfg.MODEL.ALLOW_RANDOM_WEIGHTS
        checkpointer = checkpointer_for(cfg, TopDownCheckpointer)(self.model)
        checkpointer.load(cfg.MODEL.WEIGHTS)
        check_trained_weights(self.model, checkpointer, cfg.MODEL.WEIGHTS, allow=allow)
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(
                f"TopDownPredictor supports INPUT.FORMAT RGB or BGR, got {self.input_format!r}"
            )

    def __call__(self, original_image: np.ndarray, boxes=None, scores=None, keypoints=None) -> dict:
        """
        Args:
            original_image: (H, W, 3) uint8 BGR image, as cv2.imread returns it.
            boxes: optional (N, 4) XYXY person boxes in that image; without them the configured
                detector finds the people.
            scores: optional (N,) box scores.
            keypoints: optional (N, K, 3) keypoints per box (x, y, score; detectron2's
                ``pred_keypoints`` convention), the hints of HINT.SOURCE "keypoints".
        """
        check_image_array(original_image, "TopDownPredictor input (BGR)")
        image = original_image[:, :, ::-1] if self.input_format == "RGB" else original_image
        h, w = image.shape[:2]
        inputs = {
            "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "height": h,
            "width": w,
        }
        if boxes is not None:
            boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(boxes)
            inst.scores = (
                torch.ones(len(boxes))
                if scores is None
                else torch.as_tensor(np.asarray(scores, np.float32))
            )
            if len(inst.scores) != len(boxes):
                raise ValueError(f"{len(boxes)} boxes but {len(inst.scores)} scores")
            if keypoints is not None:
                kp = torch.as_tensor(np.asarray(keypoints, np.float32))
                if kp.ndim != 3 or kp.shape[0] != len(boxes) or kp.shape[2] != 3:
                    raise ValueError(
                        f"keypoints must be (N, K, 3) for the {len(boxes)} boxes, got"
                        f" {tuple(kp.shape)}"
                    )
                inst.pred_keypoints = kp
            inputs["instances"] = inst
        elif keypoints is not None:
            raise ValueError("keypoints are hints for given boxes: pass boxes= too")
        with torch.no_grad():
            return self.model([inputs])[0]


def predictor_and_boxes(cfg, dataset=None, listing=None, inputs=()):
    """TopDownPredictor and a function giving each image's person boxes (None: the detector's):
    with ``dataset`` its annotations ("gt") or detection file ("file"); without, for the
    ``listing`` of ``inputs``, TEST.TOPDOWN.DET_FILE of tools/detect_persons.py on them."""
    source = cfg.TEST.TOPDOWN.BOX_SOURCE
    if source != "detector" and not dataset and not (source == "file" and listing):
        raise ConfigError(
            f"--topdown with TEST.TOPDOWN.BOX_SOURCE {source!r} needs --dataset (the boxes of"
            " its annotations or detection file); for photos use BOX_SOURCE file with"
            " TEST.TOPDOWN.DET_FILE from tools/detect_persons.py, or BOX_SOURCE detector"
        )
    if source == "file" and not dataset and not cfg.TEST.TOPDOWN.DET_FILE:
        raise ConfigError("--topdown with TEST.TOPDOWN.BOX_SOURCE 'file' on --input images needs"
                         " TEST.TOPDOWN.DET_FILE: tools/detect_persons.py --input <the folder>"
                         " --output <file> writes it")  # fmt: skip
    predictor = TopDownPredictor(cfg)
    if source == "detector":
        return predictor, lambda path: None
    by_name = bool(dataset)  # a dataset's images by file name, a folder's by path
    if dataset:
        dicts = {os.path.basename(d["file_name"]): d for d in DatasetCatalog.get(dataset)}
    else:  # the ids detect_persons gave, its record checked against the images of --input
        dataset = describe_images(inputs)
        dicts = folder_image_dicts(listing.images, cfg.TEST.TOPDOWN.DET_FILE, dataset)
    mapper = TopDownTestMapper(cfg, dataset, dataset_dicts=list(dicts.values()))

    def boxes_of(path):
        d = dicts.get(path.name if by_name else path)
        if d is None:
            raise KeyError(
                f"{path} is not an image of --dataset {dataset}: no {source} boxes for it"
            )
        if source == "gt":
            return gt_person_boxes(d)
        return mapper.detections[d["image_id"]]

    return predictor, boxes_of
