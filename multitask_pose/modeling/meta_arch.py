"""``MultiTaskRCNN``: detectron2's ``GeneralizedRCNN`` that trains on the inputs' hard negatives.

With INPUT.HARD_NEGATIVES.FILE the training images carry their mined hard negatives (a detector's
confident boxes that cover no person, ``multitask_pose/data/hard_negatives.py``) as the input
field ``hard_negatives``, augmented with the image (``HardNegativeMapper``). Each image's are
appended to its RPN proposals before the ROI heads label and sample them, so the box head is
trained on the very boxes the detector was wrong about; as they cover no person (no overlap
under the report's rule, or IoU below the "iou" rule's threshold: below the ROI heads'
background threshold either way), they are labelled background. Any ROI heads take them.
"""

from typing import Dict, List, Optional

import torch
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

__all__ = ["MultiTaskRCNN", "with_hard_negative_proposals"]

# Objectness given to the added proposals (logits; only read by code that sorts proposals).
_OBJECTNESS = 10.0


def with_hard_negative_proposals(proposals: List[Instances],
                                 batched_inputs: List[Dict]) -> List[Instances]:  # fmt: skip
    """Each image's proposals with its input's ``hard_negatives`` ((M, 4) XYXY boxes, if any)
    appended."""
    return [_append(p, x.get("hard_negatives")) for p, x in zip(proposals, batched_inputs)]


def _append(proposals: Instances, boxes: Optional[torch.Tensor]) -> Instances:
    if boxes is None or not len(boxes):
        return proposals
    boxes = boxes.to(proposals.proposal_boxes.device)
    extra = Instances(proposals.image_size)
    extra.proposal_boxes = Boxes(boxes)
    extra.objectness_logits = torch.full(
        (len(boxes),), _OBJECTNESS, device=boxes.device, dtype=proposals.objectness_logits.dtype
    )
    return Instances.cat([proposals, extra])


@META_ARCH_REGISTRY.register()
class MultiTaskRCNN(GeneralizedRCNN):
    """detectron2's ``GeneralizedRCNN``; in training, the inputs' ``hard_negatives`` join their
    image's proposals (:func:`with_hard_negative_proposals`). Inputs without them train and
    predict exactly as ``GeneralizedRCNN``, with the same parameters (checkpoints load either
    way)."""

    def forward(self, batched_inputs: List[Dict]):
        if not self.training or not any("hard_negatives" in x for x in batched_inputs):
            return super().forward(batched_inputs)
        # detectron2 v0.6's training forward with the proposals extended before the ROI heads:
        # it hands them only the proposals and the ground truth (one entry per person).
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.backbone(images.tensor)
        if self.proposal_generator is not None:
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        else:
            proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            proposal_losses = {}
        proposals = with_hard_negative_proposals(proposals, batched_inputs)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        if self.vis_period > 0 and get_event_storage().iter % self.vis_period == 0:
            self.visualize_training(batched_inputs, proposals)
        return {**detector_losses, **proposal_losses}
