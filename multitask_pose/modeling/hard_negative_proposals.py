"""Hard-negative detection mining (HNDM) for the R-CNN: mined detections as extra background
proposals.

With ``INPUT.HARD_NEGATIVES_FILE`` the training images carry their hard negatives (a detector's
confident boxes that cover no person, ``multitask_pose/data/hard_negatives.py``), augmented
with the image (``HardNegativeMapper``). Before the ROI heads label and sample their proposals,
each image's hard negatives are appended to its RPN proposals, so the box head is trained on the
very boxes the detector was wrong about; as they cover no person (no overlap under the
report's rule, or IoU below the "iou" rule's threshold: below the ROI heads' background
threshold either way), they are labelled background.

detectron2's ``GeneralizedRCNN.forward`` hands the ROI heads only the proposals and the
ground-truth ``Instances``, whose fields must have one entry per person; the negatives therefore
reach the heads through a forward pre-hook on the model (:func:`attach_hard_negatives`), which
stores the batch's boxes on the ROI heads before each training forward.
"""

from typing import List, Optional

import torch
from detectron2.structures import Boxes, Instances

__all__ = ["HardNegativeProposals", "attach_hard_negatives"]

# Objectness given to the added proposals (logits; only read by code that sorts proposals).
_OBJECTNESS = 10.0


class HardNegativeProposals:
    """Mixin for a detectron2 ROI-heads class: in training, each image's hard negatives (set by
    :func:`attach_hard_negatives`'s hook) are appended to its proposals before
    ``label_and_sample_proposals``. Without them it changes nothing."""

    hard_negatives: Optional[List[Optional[torch.Tensor]]] = None

    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]):
        negatives, self.hard_negatives = self.hard_negatives, None
        if self.training and negatives is not None:
            if len(negatives) != len(proposals):
                raise RuntimeError(
                    f"{len(negatives)} images of hard negatives for {len(proposals)} images of"
                    " proposals"
                )
            proposals = [_append(p, n) for p, n in zip(proposals, negatives)]
        return super().label_and_sample_proposals(proposals, targets)


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


def attach_hard_negatives(model) -> None:
    """Have ``model`` (a detectron2 ``GeneralizedRCNN`` whose ROI heads mix in
    :class:`HardNegativeProposals`) hand each training batch's ``hard_negatives`` to its ROI
    heads. ValueError for other models."""
    heads = getattr(model, "roi_heads", None)
    if not isinstance(heads, HardNegativeProposals):
        raise ValueError(
            "INPUT.HARD_NEGATIVES_FILE needs ROI heads that take extra proposals"
            " (MODEL.ROI_HEADS.NAME MultiTaskROIHeads, MultiTaskCascadeROIHeads or"
            f" HybridTaskCascadeROIHeads), not {type(heads).__name__}"
        )

    def hand_over(module, args):
        if module.training and args and isinstance(args[0], (list, tuple)):
            heads.hard_negatives = [x.get("hard_negatives") for x in args[0]]

    model.register_forward_pre_hook(hand_over)
