"""Test-time augmentation with keypoints: detectron2's ``GeneralizedRCNNWithTTA`` refuses keypoint
models ("TTA for keypoint is not supported yet"). ``MultiTaskRCNNWithTTA`` keeps its box merging
(union over augmentations, then NMS) and mask averaging, and adds keypoints: the keypoint head runs
on the merged boxes in every augmented image, the maps of horizontally flipped images are mirrored
back and their left/right channels swapped through the dataset's flip map (offset x components
negated), all maps are averaged in the RoI frame, and the average is decoded once. RoI maps are
scale-invariant, so resized versions average directly.

Enabled by detectron2's ``TEST.AUG.ENABLED`` (``TEST.AUG.MIN_SIZES``, ``MAX_SIZE``, ``FLIP``) in
``tools/train_net.py --eval-only`` through ``MultiTaskTrainer.test_with_TTA``.
"""

import torch
from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import GeneralizedRCNNWithTTA
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import heatmaps_to_keypoints

from ..data.keypoints import keypoint_spec_of
from ..shared import flip_heatmaps, flip_offsets

__all__ = ["MultiTaskRCNNWithTTA"]


class MultiTaskRCNNWithTTA(GeneralizedRCNNWithTTA):
    def __init__(self, cfg, model, tta_mapper=None, batch_size=3):
        plain = cfg.clone()
        plain.defrost()
        plain.MODEL.KEYPOINT_ON = False  # only to pass the parent's "no keypoints" assertion
        super().__init__(plain, model, tta_mapper, batch_size)
        self.cfg = cfg.clone()
        self.flip_indices = None
        if cfg.MODEL.KEYPOINT_ON:
            if not cfg.DATASETS.TEST:
                raise ValueError(
                    "keypoint TTA reads the flip map of DATASETS.TEST[0], "
                    "and DATASETS.TEST is empty"
                )
            spec = keypoint_spec_of(
                cfg.DATASETS.TEST[0]
            )  # validates that the flip map covers the names
            if spec.num_keypoints != cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS:
                raise ValueError(
                    f"{cfg.DATASETS.TEST[0]} has {spec.num_keypoints} keypoints, "
                    "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS is "
                    f"{cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS}"
                )
            self.flip_indices = spec.flip_indices

    def _inference_one_image(self, input):
        orig_shape = (input["height"], input["width"])
        augmented_inputs, tfms = self._get_augmented_inputs(input)
        with self._turn_off_roi_heads(["mask_on", "keypoint_on"]):
            all_boxes, all_scores, all_classes = self._get_augmented_boxes(augmented_inputs, tfms)
        merged = self._merge_detections(all_boxes, all_scores, all_classes, orig_shape)
        if self.cfg.MODEL.MASK_ON or self.cfg.MODEL.KEYPOINT_ON:
            augmented_instances = self._rescale_detected_boxes(augmented_inputs, merged, tfms)
            outputs = self._batch_inference(augmented_inputs, augmented_instances)
            del augmented_inputs, augmented_instances
            if self.cfg.MODEL.MASK_ON:
                merged.pred_masks = self._reduce_pred_masks(outputs, tfms)
            if self.cfg.MODEL.KEYPOINT_ON:
                self._reduce_pred_keypoints(outputs, tfms, merged)
        return {"instances": detector_postprocess(merged, *orig_shape)}

    def _reduce_pred_keypoints(self, outputs, tfms, merged) -> None:
        heatmaps, offsets = [], []
        for output, tfm in zip(outputs, tfms):
            hm = output.pred_keypoint_heatmaps
            off = output.pred_keypoint_offsets if output.has("pred_keypoint_offsets") else None
            if any(isinstance(t, HFlipTransform) for t in tfm.transforms):
                hm = flip_heatmaps(hm, self.flip_indices)
                off = flip_offsets(off, self.flip_indices) if off is not None else None
            heatmaps.append(hm)
            offsets.append(off)
        heatmaps = torch.stack(heatmaps).mean(dim=0)
        offsets = torch.stack(offsets).mean(dim=0) if offsets[0] is not None else None
        boxes = merged.pred_boxes.tensor
        codec = getattr(self.model.roi_heads.keypoint_head, "codec", None)
        if codec is not None:
            xy, scores = codec.decode(heatmaps, boxes, offsets)
            merged.pred_keypoints = torch.cat([xy, scores[..., None]], dim=2)
        else:  # detectron2's own keypoint head: its decoding, (x, y, score) as it reports them
            merged.pred_keypoints = heatmaps_to_keypoints(heatmaps, boxes)[:, :, [0, 1, 3]]
        merged.pred_keypoint_heatmaps = heatmaps
        if offsets is not None:
            merged.pred_keypoint_offsets = offsets
