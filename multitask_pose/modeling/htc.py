"""Hybrid Task Cascade (HTC; Chen et al., CVPR 2019) as detectron2 ROI heads, with the project's
keypoint heads on the last stage.

``HybridTaskCascadeROIHeads`` is detectron2's ``CascadeROIHeads`` (its stages, matchers, box
loop, score averaging and inference are used as they are) plus what HTC adds, each switched by a
``MODEL.HTC`` key:

- a mask head per stage (``HTCMaskHead``: detectron2's ``MaskRCNNConvUpsampleHead`` with one 1x1
  conv more), trained on every stage;
- ``INTERLEAVED``: in training, stage t's mask branch runs on the boxes stage t's box branch has
  just refined (matched again with stage t's IoU threshold), not on the boxes the stage was given;
- ``MASK_INFO_FLOW``: stage t's mask head adds the previous stage's mask features (the output of
  its convs, recomputed on stage t's boxes) through its 1x1 conv + ReLU to its own input;
- ``SEMANTIC_ON``: a semantic-segmentation branch on the FPN (``SemanticFusionHead``), its
  embedding pooled at each box and added to the box and mask RoI features; its target is the
  union of the instance masks, each pixel labelled with its instance's class (person-only data:
  person vs background), so no extra annotation is needed;
- ``MASK_AVERAGE``: at inference the stages' mask probabilities are averaged (HTC's test); False
  takes the last stage's alone;
- ``STAGE_LOSS_WEIGHTS``: each stage's box and mask losses are multiplied by its weight
  (mmdetection's HTC uses 1, 0.5, 0.25; detectron2's Cascade R-CNN 1, 1, 1);
- ``RESAMPLE_EVERY_STAGE``: in training, every stage (and, interleaved, every stage's mask
  branch) samples its RoIs as the first does, as mmdetection's HTC does: the boxes the previous
  stage refined, without those it refined from ground-truth boxes, plus the ground-truth boxes
  (``ROI_HEADS.PROPOSAL_APPEND_GT``), matched with the stage's IoU and sampled to
  ``ROI_HEADS.BATCH_SIZE_PER_IMAGE`` RoIs, at most ``ROI_HEADS.POSITIVE_FRACTION`` of them
  positive (detectron2's ``add_ground_truth_to_proposals`` and ``subsample_labels``). False:
  detectron2's cascade, which only re-matches every refined box.

Images without ground-truth masks (a dataset without segmentation, such as AI Challenger or
CrowdPose, alone or in a batch with COCO) train the box and keypoint heads: the semantic target
ignores them and the mask heads get none of their boxes.

With flow, semantics and interleaving off and MASK_AVERAGE False the outputs are those of
detectron2's ``CascadeROIHeads`` with a mask head (tested): Cascade Mask R-CNN, HTC without flow
and HTC are one family. A detectron2 Cascade Mask R-CNN checkpoint (one ``mask_head``) loads into
the last stage's mask head; the other stages' heads are reported as new by the checkpointer.

Keypoints (``MODEL.KEYPOINT_ON``, any ``ROI_KEYPOINT_HEAD.NAME``, e.g. ``KeypointOffsetHead``):
trained on the last stage's boxes (its mask branch's, so interleaved ones when INTERLEAVED) and
run on the final boxes at inference: one model gives cascade boxes, masks and keypoints.
"""

import logging
import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, cat
from detectron2.modeling import ROI_HEADS_REGISTRY, ROI_MASK_HEAD_REGISTRY
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads.cascade_rcnn import CascadeROIHeads, _ScaleGradient
from detectron2.modeling.roi_heads.mask_head import (
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
)
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks, pairwise_iou
from detectron2.utils.events import get_event_storage
from fvcore.nn import weight_init
from torch import nn

from .roi_heads import TaskLossWeights, images_with_masks

__all__ = ["HTCMaskHead", "HybridTaskCascadeROIHeads", "SemanticFusionHead", "semantic_targets"]

logger = logging.getLogger(__name__)

# The objectness logit detectron2's add_ground_truth_to_proposals gives the ground-truth boxes it
# appends to the proposals (P(object) ~ 1): how the sampled RoIs made from them are recognised.
_GT_LOGIT = math.log((1.0 - 1e-10) / (1 - (1.0 - 1e-10)))


@ROI_MASK_HEAD_REGISTRY.register()
class HTCMaskHead(MaskRCNNConvUpsampleHead):
    """detectron2's mask head (``mask_fcn*``, ``deconv``, ``predictor``: its checkpoints load)
    with HTC's mask information flow: ``conv_res``, a 1x1 conv + ReLU that maps the previous
    stage's mask features onto this head's input (``flow_in``; the first stage has none)."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, flow_in: bool = False, **kwargs):
        super().__init__(input_shape, **kwargs)
        self.conv_res = None
        if flow_in:
            # maps the previous head's conv features onto this head's input (RoI) features
            dim = self.conv_norm_relus[-1].out_channels
            self.conv_res = Conv2d(dim, input_shape.channels, kernel_size=1, activation=nn.ReLU())
            weight_init.c2_msra_fill(self.conv_res)

    def features(self, x, prev: Optional[torch.Tensor] = None):
        """The convs' output (what flows to the next stage); ``prev``: the previous stage's."""
        if prev is not None:
            x = x + self.conv_res(prev)
        for conv in self.conv_norm_relus:
            x = conv(x)
        return x

    def logits(self, feats):
        return self.predictor(F.relu(self.deconv(feats)))

    def layers(self, x):
        # nn.Sequential's iteration would run conv_res too: the layers in their order instead.
        return self.logits(self.features(x))


class SemanticFusionHead(nn.Module):
    """HTC's semantic branch: every input FPN level resized to the fusion level (bilinear, corners
    aligned) and then through its 1x1 conv + ReLU, summed, ``num_convs`` 3x3 convs; a 1x1 conv
    gives the class logits (background + classes), another the embedding fused into the RoI
    features. Resize, then lateral conv: the order of mmdetection's ``FusedSemanticHead``."""

    def __init__(self, input_shape: Dict[str, ShapeSpec], in_features, fuse_level, channels,
                 num_convs, num_classes):  # fmt: skip
        super().__init__()
        if fuse_level not in in_features:
            raise ValueError(
                f"MODEL.HTC.SEMANTIC_FUSE_LEVEL {fuse_level!r} is not one of "
                f"MODEL.HTC.SEMANTIC_IN_FEATURES {list(in_features)}"
            )
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.HTC.SEMANTIC_IN_FEATURES {missing} are not backbone outputs "
                f"{sorted(input_shape)}"
            )
        self.in_features = list(in_features)
        self.fuse_level = fuse_level
        self.stride = input_shape[fuse_level].stride
        self.lateral = nn.ModuleList(
            Conv2d(input_shape[f].channels, channels, 1, activation=nn.ReLU()) for f in in_features
        )
        self.convs = nn.Sequential(
            *[Conv2d(channels, channels, 3, padding=1, activation=nn.ReLU())
              for _ in range(num_convs)]
        )  # fmt: skip
        self.embedding = Conv2d(channels, channels, 1, activation=nn.ReLU())
        self.logits = Conv2d(channels, num_classes + 1, 1)
        for m in [*self.lateral, *self.convs, self.embedding]:
            weight_init.c2_msra_fill(m)
        # small initial logits, as detectron2's semantic predictors (SemSegFPNHead)
        nn.init.normal_(self.logits.weight, std=0.001)
        nn.init.constant_(self.logits.bias, 0.0)

    def forward(self, features):
        """(class logits, embedding), both at the fusion level's stride."""
        size = features[self.fuse_level].shape[-2:]
        x = 0
        for f, lateral in zip(self.in_features, self.lateral):
            y = features[f]
            if f != self.fuse_level:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=True)
            x = x + lateral(y)
        x = self.convs(x)
        return self.logits(x), self.embedding(x)


def semantic_targets(targets: List[Instances], size, stride, ignore=255):
    """Per-pixel labels at ``size`` (the fusion level): 0 background, class + 1 where an instance
    mask covers at least half of the cell (the highest class where instances of several classes
    overlap), ``ignore`` in the batch padding and everywhere in an image whose persons have no
    masks (a dataset without segmentation: its persons are not background). Vectorised per image:
    masks rasterised at image resolution, padded, averaged over stride x stride cells."""
    h, w = size
    out = []
    for t in targets:
        label = torch.full((h, w), ignore, dtype=torch.long, device=t.gt_boxes.device)
        ih, iw = t.image_size
        ch, cw = -(-ih // stride), -(-iw // stride)  # cells that hold image pixels
        if len(t) and not t.has("gt_masks"):
            out.append(label)
            continue
        label[:ch, :cw] = 0
        if len(t):
            m = t.gt_masks
            if isinstance(m, PolygonMasks):
                m = BitMasks.from_polygon_masks(m, ih, iw)
            m = m.tensor.to(label.device).float()
            m = F.pad(m, (0, cw * stride - m.shape[-1], 0, ch * stride - m.shape[-2]))
            cover = F.avg_pool2d(m[:, None], stride)[:, 0] >= 0.5  # (N, ch, cw)
            cls = (t.gt_classes + 1).view(-1, 1, 1)
            label[:ch, :cw] = (cover * cls).amax(dim=0)
        out.append(label)
    return torch.stack(out)


@ROI_HEADS_REGISTRY.register()
class HybridTaskCascadeROIHeads(TaskLossWeights, CascadeROIHeads):
    """Hybrid Task Cascade on detectron2's ``CascadeROIHeads`` (module docstring)."""

    @configurable
    def __init__(
        self,
        *,
        interleaved: bool = True,
        mask_info_flow: bool = True,
        mask_average: bool = True,
        stage_loss_weights=(1.0, 1.0, 1.0),
        resample_every_stage: bool = True,
        semantic_head: Optional[SemanticFusionHead] = None,
        semantic_loss_weight: float = 0.2,
        semantic_pooler: Optional[ROIPooler] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not self.mask_on:
            raise ValueError("HybridTaskCascadeROIHeads needs MODEL.MASK_ON True (HTC's masks)")
        if len(stage_loss_weights) != self.num_cascade_stages:
            raise ValueError(
                f"MODEL.HTC.STAGE_LOSS_WEIGHTS has {len(stage_loss_weights)} values for "
                f"{self.num_cascade_stages} stages (MODEL.ROI_BOX_CASCADE_HEAD.IOUS)"
            )
        self.interleaved = interleaved
        self.mask_info_flow = mask_info_flow
        self.mask_average = mask_average
        self.stage_loss_weights = tuple(float(w) for w in stage_loss_weights)
        self.resample_every_stage = resample_every_stage
        self.semantic_head = semantic_head
        self.semantic_loss_weight = semantic_loss_weight
        self.semantic_pooler = semantic_pooler
        # While a forward runs: the batch's semantic embedding, and in training each stage's
        # (proposals, predictions) as detectron2's box loop makes them (_run_stage records them).
        self._semantic = None
        self._stages = None

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        htc = cfg.MODEL.HTC
        ret.update(
            interleaved=htc.INTERLEAVED,
            mask_info_flow=htc.MASK_INFO_FLOW,
            mask_average=htc.MASK_AVERAGE,
            stage_loss_weights=htc.STAGE_LOSS_WEIGHTS,
            resample_every_stage=htc.RESAMPLE_EVERY_STAGE,
            semantic_loss_weight=htc.SEMANTIC_LOSS_WEIGHT,
        )
        if htc.SEMANTIC_ON:
            head = SemanticFusionHead(
                input_shape,
                htc.SEMANTIC_IN_FEATURES,
                htc.SEMANTIC_FUSE_LEVEL,
                cfg.MODEL.FPN.OUT_CHANNELS,
                htc.SEMANTIC_NUM_CONVS,
                cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            )

            # mmdetection's semantic_roi_extractor: the mask RoIs' size (14) and sampling, for
            # the box branch too (averaged down to its size, see _semantic_box_features)
            mask = cfg.MODEL.ROI_MASK_HEAD
            pooler = ROIPooler(
                output_size=mask.POOLER_RESOLUTION,
                scales=(1.0 / head.stride,),
                sampling_ratio=mask.POOLER_SAMPLING_RATIO,
                pooler_type=mask.POOLER_TYPE,
            )
            ret.update(semantic_head=head, semantic_pooler=pooler)
        return ret

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        """detectron2's mask pooler, and one ``HTCMaskHead`` per stage (flow into stages 2+)."""
        if not cfg.MODEL.MASK_ON:
            return {}
        name = cfg.MODEL.ROI_MASK_HEAD.NAME
        if name not in ("MaskRCNNConvUpsampleHead", "HTCMaskHead"):
            raise ValueError(
                f"HybridTaskCascadeROIHeads builds its mask heads as HTCMaskHead (detectron2's "
                f"MaskRCNNConvUpsampleHead + the flow conv); MODEL.ROI_MASK_HEAD.NAME {name!r} "
                "would be ignored: set it to 'MaskRCNNConvUpsampleHead'"
            )
        ret = super()._init_mask_head(cfg, input_shape)  # the pooler; its one head is replaced
        shape = ShapeSpec(
            channels=input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels,
            width=cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION,
            height=cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION,
        )
        stages = len(cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS)
        flow = cfg.MODEL.HTC.MASK_INFO_FLOW
        ret["mask_head"] = nn.ModuleList(
            HTCMaskHead(cfg, shape, flow_in=flow and k > 0) for k in range(stages)
        )
        return ret

    # ----------------------------------------------------------------------------------------
    # detectron2 Cascade Mask R-CNN checkpoints: their one mask head is the last stage's.
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        single = prefix + "mask_head."
        flat = [k for k in state_dict if k.startswith(single) and not k[len(single)].isdigit()]
        if flat:
            last = len(self.mask_head) - 1
            for k in flat:
                state_dict[f"{single}{last}.{k[len(single) :]}"] = state_dict.pop(k)
            logger.info(
                "a single-mask-head checkpoint (detectron2's Cascade Mask R-CNN): its %s* loaded "
                "into the last stage's mask head (%s%d.*)", single, single, last
            )  # fmt: skip
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------------------------------------
    def forward(self, images, features, proposals, targets=None):
        semantic_losses = {}
        try:
            if self.semantic_head is not None:
                logits, self._semantic = self.semantic_head(features)
                if self.training:
                    labels = semantic_targets(targets, logits.shape[-2:], self.semantic_head.stride)
                    if (labels != 255).any():
                        loss = F.cross_entropy(logits, labels, ignore_index=255)
                    else:  # no image of the batch has masks: a zero on the graph
                        loss = logits.sum() * 0.0
                    semantic_losses["loss_semantic_seg"] = loss * self.semantic_loss_weight
            if not self.training:
                instances = self._forward_box(features, proposals)
                return self.forward_with_given_boxes(features, instances), {}
            proposals = self.label_and_sample_proposals(proposals, targets)
            self._stages = []  # (proposals, predictions) of each stage, filled by _run_stage
            losses = self._forward_box(features, proposals, targets)
            for k, w in enumerate(self.stage_loss_weights):
                for name in [n for n in losses if n.endswith(f"_stage{k}")]:
                    losses[name] = losses[name] * w
            mask_losses, last_boxes = self._train_masks(features, targets)
            losses.update(mask_losses)
            losses.update(self._forward_keypoint(features, last_boxes))
            losses.update(semantic_losses)
            return proposals, losses
        finally:
            self._semantic = None
            self._stages = None

    def forward_with_given_boxes(self, features, instances):
        """detectron2's masks (and keypoints) on given boxes; called on its own (test-time
        augmentation, ``GeneralizedRCNN.inference(detected_instances=...)``), it computes the
        semantic embedding the mask features fuse, as ``forward`` does."""
        if self.semantic_head is None or self._semantic is not None:
            return super().forward_with_given_boxes(features, instances)
        try:
            _, self._semantic = self.semantic_head(features)
            return super().forward_with_given_boxes(features, instances)
        finally:
            self._semantic = None

    def _run_stage(self, features, proposals, stage):
        """detectron2's stage with the semantic embedding added to the box features."""
        boxes = [x.proposal_boxes for x in proposals]
        box_features = self.box_pooler(features, boxes)
        if self._semantic is not None:
            box_features = box_features + self._semantic_box_features(boxes, box_features)
        # detectron2's gradient scaling of the shared features (see CascadeROIHeads._run_stage)
        box_features = _ScaleGradient.apply(box_features, 1.0 / self.num_cascade_stages)
        predictions = self.box_predictor[stage](self.box_head[stage](box_features))
        if self.training:
            self._stages.append((proposals, predictions))
        return predictions

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals, targets):
        """detectron2's first-stage sampling; with RESAMPLE_EVERY_STAGE each sampled RoI made from
        a ground-truth box is marked (``from_gt``) so that its refined box is not carried on."""
        proposals = super().label_and_sample_proposals(proposals, targets)
        if self.resample_every_stage:
            for p in proposals:
                p.from_gt = p.objectness_logits == _GT_LOGIT
        return proposals

    def _create_proposals_from_boxes(self, boxes, image_sizes, given=None):
        """detectron2's next-stage proposals; in training with RESAMPLE_EVERY_STAGE without the
        boxes refined from ground-truth RoIs (``from_gt`` of ``given``, the RoIs ``boxes`` were
        predicted on; by default the last stage run), as mmdetection's ``refine_bboxes`` drops
        them: the next sampling appends the ground truth itself."""
        if not (self.training and self.resample_every_stage):
            return super()._create_proposals_from_boxes(boxes, image_sizes)
        given = self._stages[-1][0] if given is None else given
        boxes = [b[~p.from_gt] for b, p in zip(boxes, given)]
        proposals = super()._create_proposals_from_boxes(boxes, image_sizes)
        for p in proposals:  # (add_ground_truth_to_proposals needs the field; not read)
            p.objectness_logits = torch.zeros(len(p), device=p.proposal_boxes.device)
        return proposals

    @torch.no_grad()
    def _match_and_label_boxes(self, proposals, stage, targets, log=True):
        """A later stage's RoIs: with RESAMPLE_EVERY_STAGE the ground-truth boxes appended,
        matched with stage ``stage``'s matcher and sampled (detectron2's ``_sample_proposals``:
        BATCH_SIZE_PER_IMAGE, at most POSITIVE_FRACTION positive); without it detectron2's
        matching of every refined box. Either way every ground-truth field (gt_masks,
        gt_keypoints) is copied, not only gt_classes and gt_boxes as detectron2's matching does,
        so that later stages' mask and keypoint branches can train; ``log``: detectron2's fg/bg
        statistics."""
        if self.resample_every_stage and self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        fg, bg, out = [], [], []
        for props, tgt in zip(proposals, targets):
            quality = pairwise_iou(tgt.gt_boxes, props.proposal_boxes)
            idx, labels = self.proposal_matchers[stage](quality)
            if self.resample_every_stage:
                sampled, _ = self._sample_proposals(idx, labels, tgt.gt_classes)
                props, idx, labels = props[sampled], idx[sampled], labels[sampled]
                props.from_gt = props.objectness_logits == _GT_LOGIT
            if len(tgt):
                for name, value in tgt.get_fields().items():
                    if name.startswith("gt_"):
                        props.set(name, value[idx])
                props.gt_classes[labels == 0] = self.num_classes
            else:
                props.gt_classes = torch.full_like(idx, self.num_classes)
                props.gt_boxes = Boxes(tgt.gt_boxes.tensor.new_zeros((len(props), 4)))
            fg.append((labels == 1).sum().item())
            bg.append(labels.numel() - fg[-1])
            out.append(props)
        proposals = out
        if log:
            storage = get_event_storage()
            storage.put_scalar(f"stage{stage}/roi_head/num_fg_samples", sum(fg) / len(fg))
            storage.put_scalar(f"stage{stage}/roi_head/num_bg_samples", sum(bg) / len(bg))
        return proposals

    def _semantic_box_features(self, boxes: List[Boxes], box_features):
        """The semantic embedding at the box RoIs: pooled as for the masks and averaged down to
        the box features' size (mmdetection's HTC: its one semantic RoI extractor, then
        adaptive average pooling)."""
        x = self.semantic_pooler([self._semantic], boxes)
        if x.shape[-2:] != box_features.shape[-2:]:
            x = F.adaptive_avg_pool2d(x, box_features.shape[-2:])
        return x

    def _mask_features(self, features, boxes: List[Boxes]):
        x = self.mask_pooler([features[f] for f in self.mask_in_features], boxes)
        if self._semantic is not None:
            x = x + self.semantic_pooler([self._semantic], boxes)
        return x

    def _stage_mask_logits(self, x, stage, every=False):
        """Stage ``stage``'s mask logits on pooled features ``x``; with mask information flow the
        earlier stages' heads run first on the same features, each feeding the next. ``every``:
        the logits of stages 0..``stage`` from the same single pass."""
        prev, out = None, []
        for j in range(stage + 1):
            if j < stage and not (self.mask_info_flow or every):
                continue
            feats = self.mask_head[j].features(x, prev if self.mask_info_flow else None)
            if every or j == stage:
                out.append(self.mask_head[j].logits(feats))
            prev = feats
        return out if every else out[-1]

    def _train_masks(self, features, targets):
        """Every stage's mask loss; returns (losses, the last stage's mask proposals)."""
        losses = {}
        image_sizes = [x.image_size for x in self._stages[0][0]]
        for k, (props, predictions) in enumerate(self._stages):
            if self.interleaved:
                boxes = self.box_predictor[k].predict_boxes(predictions, props)
                props = self._create_proposals_from_boxes(boxes, image_sizes, given=props)
                props = self._match_and_label_boxes(props, k, targets, log=False)
            fg, _ = select_foreground_proposals(images_with_masks(props), self.num_classes)
            head = self.mask_head[k]
            x = self._mask_features(features, [p.proposal_boxes for p in fg])
            # (no foreground box in the batch: detectron2's loss is a zero on the graph)
            loss = mask_rcnn_loss(self._stage_mask_logits(x, k), fg, head.vis_period)
            losses[f"loss_mask_stage{k}"] = loss * head.loss_weight * self.stage_loss_weights[k]
        return losses, props

    def _forward_mask(self, features, instances):
        """Inference on the final boxes: the stages' mask probabilities averaged
        (MASK_AVERAGE), or the last stage's."""
        if self.training:
            raise RuntimeError("HybridTaskCascadeROIHeads trains its masks in forward()")
        x = self._mask_features(features, [i.pred_boxes for i in instances])
        last = len(self.mask_head) - 1
        logits = self._stage_mask_logits(x, last, every=self.mask_average)
        probs = []
        for lg in logits if self.mask_average else [logits]:
            mask_rcnn_inference(lg, instances)
            probs.append(cat([i.pred_masks for i in instances]))
        if len(probs) > 1:
            mean = torch.stack(probs).mean(dim=0)
            for i, m in zip(instances, mean.split([len(i) for i in instances])):
                i.pred_masks = m
        return instances
