"""Box, mask and keypoint heads on shared ROI features, with a loss weight per task.

The weights live on the heads, as detectron2 keeps them (``FastRCNNOutputLayers.loss_weight``,
``BaseMaskRCNNHead.loss_weight``, ``BaseKeypointRCNNHead.loss_weight``): ``TaskLossWeights`` sets
them on whatever heads an ROI-heads class builds, so it combines with any of them (standard,
cascade, HTC) without overriding their private forward methods.
"""

from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.cascade_rcnn import CascadeROIHeads
from torch import nn

__all__ = [
    "MaskFreeImages",
    "MultiTaskCascadeROIHeads",
    "MultiTaskROIHeads",
    "TaskLossWeights",
    "images_with_masks",
]


def images_with_masks(instances):
    """Per image, its training proposals, or none (an empty ``Instances``) where its ground truth
    has no masks: a dataset without segmentation (AI Challenger joined to COCO,
    ``multitask_pose/data/joint_training.py``) trains the box and keypoint heads, not the mask
    head."""
    return [x if x.has("gt_masks") or not len(x) else x[:0] for x in instances]


class TaskLossWeights:
    """Mixin for a detectron2 ROI-heads class: scales the box predictors' ``loss_cls`` and
    ``loss_box_reg`` by ``MODEL.ROI_BOX_HEAD.LOSS_WEIGHT`` and the mask head's ``loss_mask`` by
    ``MODEL.ROI_MASK_HEAD.LOSS_WEIGHT``; the keypoint weight is detectron2's own
    ``MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT``, which its keypoint heads already apply. Put it first
    in the bases: ``class MyHeads(TaskLossWeights, CascadeROIHeads)``."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        """detectron2's ``from_config`` of the ROI heads, with the task weights set on the built
        box predictor(s) (``box_predictor``, or a cascade's ``box_predictors``) and mask head.

        Args:
            cfg: the config (``MODEL.ROI_BOX_HEAD.LOSS_WEIGHT``,
                ``MODEL.ROI_MASK_HEAD.LOSS_WEIGHT``).
            input_shape: feature shapes, as for the base class.

        Returns:
            the base class's constructor arguments.
        """
        ret = super().from_config(cfg, input_shape)
        box_weight = cfg.MODEL.ROI_BOX_HEAD.LOSS_WEIGHT
        predictors = ret.get("box_predictors", [ret.get("box_predictor")])
        for predictor in predictors:
            if predictor is not None:
                # Multiplies detectron2's per-loss weights (BBOX_REG_LOSS_WEIGHT stays in effect).
                predictor.loss_weight = {
                    k: box_weight * predictor.loss_weight.get(k, 1.0)
                    for k in ("loss_cls", "loss_box_reg")
                }
        heads = ret.get("mask_head")
        # one head, or one per stage (HybridTaskCascadeROIHeads' ModuleList)
        for head in heads if isinstance(heads, nn.ModuleList) else [heads]:
            if head is not None:
                head.loss_weight = cfg.MODEL.ROI_MASK_HEAD.LOSS_WEIGHT
        return ret


class MaskFreeImages:
    """Mixin for a detectron2 ROI-heads class whose mask branch is detectron2's
    ``_forward_mask``: in training, images without ground-truth masks give the mask loss no
    proposal (:func:`images_with_masks`) instead of failing on the missing ``gt_masks``;
    detectron2's loss is then a zero on the graph when no image of the batch has masks."""

    def _forward_mask(self, features, instances):
        if self.training and self.mask_on:
            instances = images_with_masks(instances)
        return super()._forward_mask(features, instances)


@ROI_HEADS_REGISTRY.register()
class MultiTaskROIHeads(TaskLossWeights, MaskFreeImages, StandardROIHeads):
    """detectron2's ``StandardROIHeads`` (box, mask and keypoint heads on the same FPN ROI
    features) with a weight on each task's losses (``TaskLossWeights``); images without masks
    train no mask (``MaskFreeImages``)."""


@ROI_HEADS_REGISTRY.register()
class MultiTaskCascadeROIHeads(TaskLossWeights, MaskFreeImages, CascadeROIHeads):
    """detectron2's ``CascadeROIHeads`` with a weight on each task's losses: every stage's box
    predictor carries the box weight."""
