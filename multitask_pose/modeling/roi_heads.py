"""Box, mask and keypoint heads on shared ROI features, with a loss weight per task."""
from typing import Dict

from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads

__all__ = ["MultiTaskROIHeads"]


@ROI_HEADS_REGISTRY.register()
class MultiTaskROIHeads(StandardROIHeads):
    """detectron2's ``StandardROIHeads`` (box, mask and keypoint heads on the same FPN ROI
    features) with a weight on each task's losses, so the tasks can be balanced from config:
    ``MODEL.ROI_BOX_HEAD.LOSS_WEIGHT``, ``MODEL.ROI_MASK_HEAD.LOSS_WEIGHT`` and detectron2's own
    ``MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT`` (applied inside detectron2's keypoint head).
    """

    @configurable
    def __init__(self, *, box_loss_weight: float = 1.0, mask_loss_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.box_loss_weight = box_loss_weight
        self.mask_loss_weight = mask_loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["box_loss_weight"] = cfg.MODEL.ROI_BOX_HEAD.LOSS_WEIGHT
        ret["mask_loss_weight"] = cfg.MODEL.ROI_MASK_HEAD.LOSS_WEIGHT
        return ret

    @staticmethod
    def _scaled(losses: Dict, weight: float) -> Dict:
        return {k: v * weight for k, v in losses.items()}

    def _forward_box(self, features, proposals):
        out = super()._forward_box(features, proposals)
        return self._scaled(out, self.box_loss_weight) if self.training else out

    def _forward_mask(self, features, instances):
        out = super()._forward_mask(features, instances)
        return self._scaled(out, self.mask_loss_weight) if self.training else out
