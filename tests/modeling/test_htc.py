"""HybridTaskCascadeROIHeads (multitask_pose/modeling/htc.py): it trains every stage and predicts
boxes, masks and keypoints; reduced to Cascade Mask R-CNN it equals detectron2's CascadeROIHeads
and loads its checkpoints; mask information flow, mask averaging, interleaving, per-stage
sampling, the semantic branch and its targets do what HTC (mmdetection's HybridTaskCascadeRoIHead,
FusedSemanticHead) specifies, each part of the wiring checked directly; images without masks
train the box and keypoint heads; bad configs are refused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks, pairwise_iou
from detectron2.utils.events import EventStorage

import multitask_pose  # noqa: F401  (registers the datasets)
from conftest import RECIPE
from multitask_pose import get_multitask_cfg
from multitask_pose.data.joint_training import map_dataset_dicts
from multitask_pose.data.keypoints import keypoint_spec_of
from multitask_pose.engine import MultiTaskTrainer
from multitask_pose.modeling import htc
from multitask_pose.modeling.htc import semantic_targets

# fmt: off
HTC = ["MODEL.ROI_HEADS.NAME", "HybridTaskCascadeROIHeads",
       "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", "True",
       "INPUT.MIN_SIZE_TRAIN", "(320,)", "INPUT.MAX_SIZE_TRAIN", "448",
       "INPUT.MIN_SIZE_TEST", "320", "INPUT.MAX_SIZE_TEST", "448",
       "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
# HTC with everything HTC adds switched off: Cascade Mask R-CNN.
REDUCED = ["MODEL.HTC.INTERLEAVED", "False", "MODEL.HTC.MASK_INFO_FLOW", "False",
           "MODEL.HTC.SEMANTIC_ON", "False", "MODEL.HTC.MASK_AVERAGE", "False",
           "MODEL.HTC.RESAMPLE_EVERY_STAGE", "False"]
# fmt: on
SAMPLE = "coco_person_sample"


def cfg_of(*opts):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list([*HTC, *opts])
    return cfg


def train_batch(cfg, n=2):
    records = DatasetCatalog.get(SAMPLE)[:n]
    return [DatasetMapper(cfg, is_train=True)(dict(r)) for r in records]


def test_htc_trains_every_stage_and_predicts():
    cfg = cfg_of("MODEL.ROI_KEYPOINT_HEAD.NAME", "KeypointOffsetHead")
    torch.manual_seed(0)
    model = MultiTaskTrainer.build_model(cfg)
    batch = train_batch(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    heads = model.roi_heads
    expected = {
        *(f"loss_{t}_stage{k}" for t in ("cls", "box_reg", "mask") for k in range(3)),
        "loss_keypoint", "loss_keypoint_offset", "loss_semantic_seg", "loss_rpn_cls",
        "loss_rpn_loc",
    }  # fmt: skip
    with EventStorage(0):
        for _ in range(3):
            losses = model(batch)
            assert set(losses) == expected
            assert all(torch.isfinite(v) for v in losses.values()), losses
            opt.zero_grad()
            sum(losses.values()).backward()
            # every stage's box and mask heads, the flow convs and the semantic branch learn
            for k in range(3):
                assert heads.box_predictor[k].cls_score.weight.grad.abs().sum() > 0
                assert heads.mask_head[k].predictor.weight.grad.abs().sum() > 0
                if k:
                    assert heads.mask_head[k].conv_res.weight.grad.abs().sum() > 0
            assert heads.semantic_head.logits.weight.grad.abs().sum() > 0
            opt.step()
    assert heads.mask_head[0].conv_res is None  # the first stage has nothing flowing in
    model.eval()
    with torch.no_grad():
        out = model([{"image": b["image"]} for b in batch])
    inst = out[0]["instances"]
    assert len(inst) > 0
    assert inst.pred_masks.shape[1:] == batch[0]["image"].shape[1:]
    assert inst.pred_keypoints.shape[1:] == (17, 3) and inst.has("pred_keypoint_offsets")


def _eval_outputs(model, images):
    model.eval()
    with torch.no_grad():
        return [o["instances"] for o in model([{"image": im} for im in images])]


def test_reduced_htc_equals_detectron2_cascade_and_loads_its_checkpoint(tmp_path):
    """Flow, semantics, interleaving and averaging off: detectron2's Cascade Mask R-CNN (with
    the keypoint head) in outputs; its one mask head loads into the last stage's."""
    d2_cfg = cfg_of("MODEL.ROI_HEADS.NAME", "CascadeROIHeads")
    torch.manual_seed(0)
    d2 = MultiTaskTrainer.build_model(d2_cfg)
    torch.save({"model": d2.state_dict()}, tmp_path / "cascade.pth")
    ours = MultiTaskTrainer.build_model(cfg_of(*REDUCED))
    incompatible = DetectionCheckpointer(ours)._load_model(torch.load(tmp_path / "cascade.pth"))
    assert not incompatible.unexpected_keys
    new = {k.split(".")[2] for k in incompatible.missing_keys}
    assert new == {"0", "1"} and all(
        k.startswith("roi_heads.mask_head.") for k in incompatible.missing_keys
    ), incompatible.missing_keys
    last = ours.roi_heads.mask_head[2].state_dict()
    for name, value in d2.roi_heads.mask_head.state_dict().items():
        assert torch.equal(last[name], value), name

    images = [b["image"] for b in train_batch(d2_cfg)]
    for a, b in zip(_eval_outputs(d2, images), _eval_outputs(ours, images)):
        assert len(a) == len(b) > 0
        assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.allclose(a.scores, b.scores)
        assert torch.allclose(a.pred_masks.float(), b.pred_masks.float())
        assert torch.allclose(a.pred_keypoints, b.pred_keypoints)


def _heads_and_features(*opts):
    cfg = cfg_of(*opts)
    torch.manual_seed(0)
    model = MultiTaskTrainer.build_model(cfg).eval()
    image = train_batch(cfg, 1)[0]["image"]
    images = model.preprocess_image([{"image": image}])
    with torch.no_grad():
        features = model.backbone(images.tensor)
    inst = Instances(images.image_sizes[0])
    inst.pred_boxes = Boxes(torch.tensor([[20.0, 30.0, 120.0, 250.0], [150.0, 40.0, 260.0, 300.0]]))
    inst.pred_classes = torch.zeros(2, dtype=torch.long)
    return model.roi_heads, features, inst


def test_mask_information_flow_and_averaging():
    heads, features, inst = _heads_and_features("MODEL.HTC.SEMANTIC_ON", "False")
    with torch.no_grad():
        x = heads._mask_features(features, [inst.pred_boxes])
        logits = [heads._stage_mask_logits(x, k) for k in range(3)]
        # MASK_AVERAGE: the mean of the stages' probabilities, computed here by hand
        expected = torch.stack([lg.sigmoid() for lg in logits]).mean(dim=0)
        got = heads._forward_mask(features, [inst])[0].pred_masks
        assert torch.allclose(got, expected, atol=1e-6)
        # the last stage sees the first stage's mask features: changing that head changes it
        heads.mask_head[0].mask_fcn1.weight.mul_(2.0)
        assert not torch.allclose(heads._stage_mask_logits(x, 2), logits[2])
    heads, features, inst = _heads_and_features("MODEL.HTC.MASK_INFO_FLOW", "False",
                                                "MODEL.HTC.SEMANTIC_ON", "False")  # fmt: skip
    with torch.no_grad():
        x = heads._mask_features(features, [inst.pred_boxes])
        before = heads._stage_mask_logits(x, 2)
        heads.mask_head[0].mask_fcn1.weight.mul_(2.0)
        assert torch.equal(heads._stage_mask_logits(x, 2), before)  # without flow: independent


def test_masks_on_given_boxes_fuse_the_semantic_embedding():
    """Called on its own (test-time augmentation), forward_with_given_boxes fuses the semantic
    branch as the whole forward does."""
    heads, features, inst = _heads_and_features()
    with torch.no_grad():
        given = heads.forward_with_given_boxes(features, [inst])[0].pred_masks
        _, heads._semantic = heads.semantic_head(features)
        fused = heads._forward_mask(features, [inst])[0].pred_masks
        heads._semantic = None
        plain = heads._forward_mask(features, [inst])[0].pred_masks
    assert torch.equal(given, fused) and not torch.allclose(given, plain)


@pytest.mark.parametrize("interleaved", [True, False])
def test_interleaved_masks_train_on_the_boxes_their_stage_refined(monkeypatch, interleaved):
    """Without per-stage sampling (with it the ground-truth boxes join the mask RoIs too:
    test_every_stage_samples_its_rois)."""
    cfg = cfg_of("MODEL.HTC.INTERLEAVED", str(interleaved), "MODEL.HTC.RESAMPLE_EVERY_STAGE",
                 "False")  # fmt: skip
    torch.manual_seed(0)
    model = MultiTaskTrainer.build_model(cfg)
    stage_boxes, mask_boxes = [], []
    run_stage = htc.HybridTaskCascadeROIHeads._run_stage

    def recording_run_stage(self, features, proposals, stage):
        predictions = run_stage(self, features, proposals, stage)
        refined = self.box_predictor[stage].predict_boxes(predictions, proposals)
        given = torch.cat([p.proposal_boxes.tensor for p in proposals])
        stage_boxes.append((given.detach(), torch.cat(refined).detach()))
        return predictions

    loss = htc.mask_rcnn_loss

    def recording_loss(logits, instances, vis_period=0):
        mask_boxes.append(torch.cat([i.proposal_boxes.tensor for i in instances]).detach())
        return loss(logits, instances, vis_period)

    monkeypatch.setattr(htc.HybridTaskCascadeROIHeads, "_run_stage", recording_run_stage)
    monkeypatch.setattr(htc, "mask_rcnn_loss", recording_loss)
    with EventStorage(0):
        model(train_batch(cfg))

    def rows_in(a, b):
        return bool(((a[:, None] - b[None]).abs().amax(dim=2).min(dim=1).values < 1e-3).all())

    assert len(mask_boxes) == 3
    for (given, refined), boxes in zip(stage_boxes, mask_boxes):
        assert len(boxes) > 0
        # (refined boxes are clipped to the image, so compare the ones inside it)
        inside = (boxes[:, 0] > 0) & (boxes[:, 1] > 0)
        assert rows_in(boxes[inside], refined if interleaved else given)
        assert not rows_in(boxes[inside], given if interleaved else refined)


def test_semantic_targets():
    """Cells of 8x8 pixels covered at least half by a mask get its class + 1; the batch padding
    is ignored (255); polygons and bitmaps give the same labels."""
    t = Instances((40, 30))  # h, w: 5 x 4 cells of image, padded here to 6 x 5
    t.gt_boxes = Boxes(torch.tensor([[0.0, 8.0, 16.0, 24.0]]))
    t.gt_classes = torch.tensor([0])
    # a 16 x 16 square (cells rows 1-2, cols 0-1) and a 3-pixel-wide strip (under half a cell)
    square = [[0, 8, 16, 8, 16, 24, 0, 24]]
    t.gt_masks = PolygonMasks([square])
    labels = semantic_targets([t], (6, 5), 8)
    expected = torch.full((6, 5), 255)
    expected[:5, :4] = 0
    expected[1:3, 0:2] = 1
    assert torch.equal(labels[0], expected)
    t.gt_masks = BitMasks.from_polygon_masks(PolygonMasks([square]), 40, 30)
    assert torch.equal(semantic_targets([t], (6, 5), 8)[0], expected)
    strip = Instances((40, 30))
    strip.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 3.0, 8.0]]))
    strip.gt_classes = torch.tensor([0])
    strip.gt_masks = PolygonMasks([[[0, 0, 3, 0, 3, 8, 0, 8]]])
    assert semantic_targets([strip], (6, 5), 8)[0][0, 0] == 0
    # persons without masks (a dataset without segmentation): the whole image is ignored, in a
    # batch with an image that has masks; an image without persons is background
    t.remove("gt_masks")
    strip.gt_masks = BitMasks.from_polygon_masks(strip.gt_masks, 40, 30)
    empty = Instances((40, 30), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0))
    labels = semantic_targets([t, strip, empty], (6, 5), 8)
    assert torch.equal(labels[0], torch.full((6, 5), 255))
    assert torch.equal(labels[1], semantic_targets([strip], (6, 5), 8)[0])
    assert torch.equal(labels[2], expected.masked_fill(expected == 1, 0))


# ---------------------------------------------------------------------------------------------
# The wiring, checked on the ROI heads of a training forward with controlled proposals: around
# every ground-truth box, boxes shifted by 2% to 60% of its width or height (IoU 0.96 down to
# 0.25), so that each stage has positives, negatives just under its IoU threshold, and more
# positives than its sampler keeps (the test recipe samples 64 RoIs, at most 16 positive).
IOUS = (0.5, 0.6, 0.7)  # MODEL.ROI_BOX_CASCADE_HEAD.IOUS (detectron2's and mmdetection's)


def _around(target, size):
    shifts = torch.linspace(0.02, 0.6, 30)[:, None]
    boxes = []
    for b in target.gt_boxes.tensor:
        w, h = b[2] - b[0], b[3] - b[1]
        boxes += [b + shifts * torch.tensor([w, 0, w, 0]), b + shifts * torch.tensor([0, h, 0, h])]
    boxes = Boxes(torch.cat(boxes))
    boxes.clip(size)
    return Instances(size, proposal_boxes=boxes, objectness_logits=torch.zeros(len(boxes)))


class Recorder:
    """A training forward of the ROI heads on the proposals around the ground truth, recording
    what each part of HTC received: the features, the semantic embedding, each box stage's RoIs
    and box-head input, each mask loss's RoIs, each (re-)matching's output and the keypoint
    head's RoIs."""

    def __init__(self, monkeypatch, *opts, batch=None, indices=(1, 2)):
        self.cfg = cfg_of(*opts)
        torch.manual_seed(0)
        np.random.seed(0)  # (detectron2's random flip)
        self.model = MultiTaskTrainer.build_model(self.cfg).train()
        self.heads = heads = self.model.roi_heads
        records = DatasetCatalog.get(SAMPLE)
        self.batch = batch or [DatasetMapper(self.cfg, True)(dict(records[i])) for i in indices]
        self.stages, self.box_inputs, self.mask_rois, self.matched, self.keypoint_rois = (
            [], [], [], [], [])  # fmt: skip
        run_stage, match = heads._run_stage, heads._match_and_label_boxes
        forward_keypoint, loss = heads._forward_keypoint, htc.mask_rcnn_loss

        def recording_run_stage(features, proposals, stage):
            self.stages.append((stage, proposals, heads._semantic))
            return run_stage(features, proposals, stage)

        def recording_match(proposals, stage, targets, log=True):
            out = match(proposals, stage, targets, log)
            self.matched.append((stage, log, out))
            return out

        def recording_keypoint(features, instances):
            self.keypoint_rois.append(instances)
            return forward_keypoint(features, instances)

        def recording_loss(logits, instances, vis_period=0):
            self.mask_rois.append(instances)
            return loss(logits, instances, vis_period)

        monkeypatch.setattr(heads, "_run_stage", recording_run_stage)
        monkeypatch.setattr(heads, "_match_and_label_boxes", recording_match)
        monkeypatch.setattr(heads, "_forward_keypoint", recording_keypoint)
        monkeypatch.setattr(htc, "mask_rcnn_loss", recording_loss)
        for head in heads.box_head:
            head.register_forward_pre_hook(lambda m, args: self.box_inputs.append(args[0]))

    def forward(self, proposals=None):
        images = self.model.preprocess_image(self.batch)
        self.targets = [b["instances"] for b in self.batch]
        self.features = self.model.backbone(images.tensor)
        if proposals is None:
            proposals = [_around(t, s) for t, s in zip(self.targets, images.image_sizes)]
        with EventStorage(0):
            _, self.losses = self.heads(images, self.features, proposals, self.targets)
        return self.losses


def _max_iou(targets, proposals):
    return pairwise_iou(targets.gt_boxes, proposals.proposal_boxes).max(dim=0).values


def _rows_in(a, b, tol=0.0):
    if not len(b):
        return torch.zeros(len(a), dtype=torch.bool)
    return (a[:, None] - b[None]).abs().amax(dim=2).min(dim=1).values <= tol


def test_semantic_embedding_is_fused_into_every_stages_box_features(monkeypatch):
    """HTC's semantic fusion into the box branch (mmdetection htc_roi_head.py:164-170): each
    stage's box head gets the FPN RoI features plus the embedding pooled at the same RoIs, at the
    mask RoIs' 14 x 14 averaged down to the box features' 7 x 7."""
    rec = Recorder(monkeypatch)
    rec.forward()
    heads = rec.heads
    assert [s for s, _, _ in rec.stages] == [0, 1, 2] and len(rec.box_inputs) == 3
    features = [rec.features[f] for f in heads.box_in_features]
    for (_, proposals, semantic), got in zip(rec.stages, rec.box_inputs):
        boxes = [p.proposal_boxes for p in proposals]
        plain = heads.box_pooler(features, boxes)
        pooled = heads.semantic_pooler([semantic], boxes)
        assert pooled.shape[-2:] == (14, 14) and plain.shape[-2:] == (7, 7)
        fused = plain + F.avg_pool2d(pooled, 2)
        assert semantic is not None and torch.allclose(got, fused, atol=1e-6)
        assert not torch.allclose(got, plain, atol=1e-3)


def test_stage_loss_weights_scale_each_stages_box_and_mask_losses(monkeypatch):
    """mmdetection's stage_loss_weights [1, 0.5, 0.25] (htc_without_semantic_r50_fpn_1x_coco.py:44,
    applied at htc_roi_head.py:286-288 and 316-318): known per-stage losses come out scaled."""
    rec = Recorder(monkeypatch)
    for k, predictor in enumerate(rec.heads.box_predictor):
        monkeypatch.setattr(
            predictor, "losses",
            lambda predictions, proposals, k=k: {
                "loss_cls": predictions[0].sum() * 0 + (k + 1.0),
                "loss_box_reg": predictions[1].sum() * 0 + 10.0 * (k + 1),
            },
        )  # fmt: skip
    monkeypatch.setattr(htc, "mask_rcnn_loss", lambda logits, instances, vis_period=0: 7.0)
    losses = rec.forward()
    mask_weight = rec.heads.mask_head[0].loss_weight
    for k, w in enumerate((1.0, 0.5, 0.25)):
        assert losses[f"loss_cls_stage{k}"].item() == pytest.approx(w * (k + 1))
        assert losses[f"loss_box_reg_stage{k}"].item() == pytest.approx(w * 10 * (k + 1))
        assert losses[f"loss_mask_stage{k}"] == pytest.approx(w * 7.0 * mask_weight)


def test_every_stage_matches_with_its_own_iou(monkeypatch):
    """Stage k's RoIs (box branch, and the interleaved mask branch's) are foreground exactly when
    their IoU with a person reaches IOUS[k] (mmdetection: pos_iou_thr 0.5 / 0.6 / 0.7,
    htc_without_semantic_r50_fpn_1x_coco.py:161, 177, 193)."""
    rec = Recorder(monkeypatch)
    rec.forward()
    num_classes = rec.heads.num_classes
    checked = [0, 0, 0]
    matched = [(s, p) for s, p, _ in rec.stages] + [(s, p) for s, _, p in rec.matched]
    for stage, proposals in matched:
        for props, tgt in zip(proposals, rec.targets):
            iou = _max_iou(tgt, props)
            assert torch.equal(props.gt_classes < num_classes, iou >= IOUS[stage]), stage
            # RoIs between the first threshold and this one: a wrong matcher would differ
            checked[stage] += int(((iou >= IOUS[0]) & (iou < IOUS[stage])).sum())
    assert checked[1] > 0 and checked[2] > 0, checked


def test_keypoint_head_trains_on_the_last_stages_rois(monkeypatch):
    """The keypoint head's RoIs are the last stage's interleaved (mask-branch) RoIs: boxes the last
    stage refined (and the ground truth), not the first stage's proposals."""
    rec = Recorder(monkeypatch, "MODEL.ROI_KEYPOINT_HEAD.NAME", "KeypointOffsetHead")
    rec.forward()
    (kp,) = rec.keypoint_rois
    last = [p for s, log, p in rec.matched if s == 2 and not log]
    assert len(last) == 1
    first = [p for s, p, _ in rec.stages if s == 0][0]
    for got, want, stage0 in zip(kp, last[0], first):
        assert torch.equal(got.proposal_boxes.tensor, want.proposal_boxes.tensor)
        assert not _rows_in(got.proposal_boxes.tensor, stage0.proposal_boxes.tensor).all()


def test_mask_information_flow_carries_gradients_to_earlier_heads(monkeypatch):
    """Stage 3's mask loss reaches the first two stages' mask convs through the information flow
    (mmdetection htc_roi_head.py:141-146: the earlier heads run on the same RoIs, undetached), but
    not their predictors (their logits are not computed)."""
    rec = Recorder(monkeypatch)
    loss = rec.forward()["loss_mask_stage2"]
    heads = rec.heads.mask_head
    params = [heads[0].mask_fcn1.weight, heads[1].mask_fcn1.weight, heads[1].conv_res.weight,
              heads[0].predictor.weight]  # fmt: skip
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:3])
    assert grads[3] is None


def test_every_stage_samples_its_rois(monkeypatch):
    """RESAMPLE_EVERY_STAGE (mmdetection htc_roi_head.py:266-277 at every stage, 300-312 for the
    interleaved mask branch; refine_bboxes drops the RoIs made from ground truth,
    bbox_head.py:450-455): every later stage's RoIs and every mask branch's are sampled from the
    ground-truth boxes (appended, marked from_gt) and the boxes the stage refined, without those
    refined from the previous stage's ground-truth RoIs: at most BATCH_SIZE_PER_IMAGE RoIs, at most
    POSITIVE_FRACTION of them positive."""
    rec = Recorder(monkeypatch)
    rec.forward()
    heads = rec.heads
    n, cap = heads.batch_size_per_image, int(heads.batch_size_per_image * heads.positive_fraction)
    assert (n, cap) == (64, 16)
    stages = {s: p for s, p, _ in rec.stages}
    # refined boxes of each stage's RoIs, as the next stage receives them (clipped)
    refined = {}
    for k in (0, 1):
        preds = heads.box_predictor[k](heads.box_head[k](rec.box_inputs[k]))
        boxes = heads.box_predictor[k].predict_boxes(preds, stages[k])
        refined[k] = [Boxes(b.detach()) for b in boxes]
        for b, p in zip(refined[k], stages[k]):
            b.clip(p.image_size)
    later = [(s, p, s) for s, p in stages.items() if s > 0]
    later += [(s, p, s + 1) for s, log, p in rec.matched if not log and s < 2]
    assert len(later) == 4
    appended = 0
    for stage, proposals, source in later:
        for i, (props, tgt) in enumerate(zip(proposals, rec.targets)):
            boxes, gt = props.proposal_boxes.tensor, tgt.gt_boxes.tensor
            fg = props.gt_classes < heads.num_classes
            assert len(props) <= n and int(fg.sum()) <= cap
            is_gt = _rows_in(boxes, gt)
            assert torch.equal(props.from_gt, is_gt)
            assert (pairwise_iou(tgt.gt_boxes, props.proposal_boxes) == 1).sum(1).max() <= 1
            appended += int(is_gt.sum())
            if stage == source:  # the box branch: stage - 1's refined boxes, not those from gt
                prev = stages[stage - 1][i]
                kept = refined[stage - 1][i].tensor[~prev.from_gt]
                dropped = refined[stage - 1][i].tensor[prev.from_gt]
                assert _rows_in(boxes[~is_gt], kept).all()
                assert not _rows_in(boxes, dropped).any()
    assert appended > 0  # (sampled among many positives: not every ground-truth box each time)


def test_per_stage_sampling_caps_the_positives():
    """A stage's own sampling: many RoIs above the stage's IoU are cut to the sampler's share
    (mmdetection num 512, pos_fraction 0.25: htc_without_semantic_r50_fpn_1x_coco.py:183-184);
    without RESAMPLE_EVERY_STAGE (detectron2's cascade) every RoI is kept and re-matched."""
    for resample, expected in (("True", 64), ("False", None)):
        torch.manual_seed(0)
        cfg = cfg_of("MODEL.HTC.RESAMPLE_EVERY_STAGE", resample)
        heads = MultiTaskTrainer.build_model(cfg).train().roi_heads
        target = train_batch(cfg, 3)[2]["instances"]
        props = _around(target, target.image_size)
        given = len(props)
        with EventStorage(0):
            (out,) = heads._match_and_label_boxes([props], 1, [target])
        fg = out.gt_classes < heads.num_classes
        if expected is None:
            assert len(out) == given and int(fg.sum()) > 16
        else:
            assert given > 2 * expected and int(fg.sum()) == 16 and len(out) == expected
            assert torch.equal(fg, _max_iou(target, out) >= IOUS[1])


def test_semantic_head_resizes_then_applies_its_lateral_convs():
    """mmdetection's FusedSemanticHead.forward (fused_semantic_head.py:98-105): the fusion level
    through its lateral conv as it is, every other level resized to it (bilinear, corners
    aligned) and then through its lateral conv (1x1 + ReLU), summed; recomputed here by hand."""
    shapes = {f: ShapeSpec(channels=6, stride=s) for f, s in (("p2", 4), ("p3", 8), ("p4", 16))}
    torch.manual_seed(0)
    head = htc.SemanticFusionHead(shapes, ["p2", "p3", "p4"], "p3", 6, 1, 1)
    for lateral in head.lateral:
        torch.nn.init.normal_(lateral.bias)
    feats = {"p2": torch.randn(1, 6, 16, 20), "p3": torch.randn(1, 6, 8, 10),
             "p4": torch.randn(1, 6, 4, 5)}  # fmt: skip
    x = 0
    for f, lateral in zip(["p2", "p3", "p4"], head.lateral):
        y = feats[f]
        if f != "p3":
            y = F.interpolate(y, size=(8, 10), mode="bilinear", align_corners=True)
        x = x + F.relu(F.conv2d(y, lateral.weight, lateral.bias))
    x = head.convs(x)
    with torch.no_grad():
        logits, embedding = head(feats)
        assert torch.allclose(logits, head.logits(x), atol=1e-6)
        assert torch.allclose(embedding, head.embedding(x), atol=1e-6)


def _mixed_batch(cfg, aic_images=(0,), coco_images=(1,)):
    """COCO sample images (polygon masks) and AI Challenger sample images (no segmentation) in
    COCO's keypoint layout, as joint training maps them."""
    aic = map_dataset_dicts(
        DatasetCatalog.get("aic_person_sample"),
        keypoint_spec_of("aic_person_sample"),
        keypoint_spec_of(SAMPLE),
    )
    coco = DatasetCatalog.get(SAMPLE)
    mapper = DatasetMapper(cfg, is_train=True)
    return [mapper(dict(coco[i])) for i in coco_images] + [mapper(dict(aic[i])) for i in aic_images]


def test_images_without_masks_train_the_box_and_keypoint_heads(monkeypatch):
    """A COCO image and an AI Challenger image (no segmentation) in one batch: the semantic loss
    is the COCO image's alone, the mask heads get only its RoIs; the AIC image's persons train the
    box heads of every stage and the keypoint head. A batch of AIC images alone trains with zero
    semantic and mask losses."""
    cfg = cfg_of()
    torch.manual_seed(0)
    batch = _mixed_batch(cfg)
    assert batch[0]["instances"].has("gt_masks") and not batch[1]["instances"].has("gt_masks")
    rec = Recorder(monkeypatch, batch=batch)
    semantic = []
    rec.heads.semantic_head.register_forward_hook(lambda m, i, out: semantic.append(out[0]))
    losses = rec.forward()
    assert all(torch.isfinite(v) for v in losses.values()), losses
    logits = semantic[0]
    coco_only = semantic_targets(rec.targets[:1], logits.shape[-2:], rec.heads.semantic_head.stride)
    expected = F.cross_entropy(logits[:1], coco_only, ignore_index=255) * 0.2
    assert torch.allclose(losses["loss_semantic_seg"], expected)
    num_classes = rec.heads.num_classes
    assert len(rec.mask_rois) == 3
    for rois in rec.mask_rois:
        assert len(rois[0]) > 0 and len(rois[1]) == 0
    for _, proposals, _ in rec.stages:
        assert (proposals[1].gt_classes < num_classes).any()
    kp = rec.keypoint_rois[0][1]
    assert (kp.gt_classes < num_classes).any() and kp.has("gt_keypoints")
    rec.heads.zero_grad()
    sum(losses.values()).backward()
    assert rec.heads.semantic_head.logits.weight.grad.abs().sum() > 0

    batch = _mixed_batch(cfg, aic_images=(0, 1), coco_images=())
    torch.manual_seed(0)
    model = MultiTaskTrainer.build_model(cfg).train()
    with EventStorage(0):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    zero = ["loss_semantic_seg", *(f"loss_mask_stage{k}" for k in range(3))]
    assert all(losses[k].item() == 0 for k in zero)
    assert losses["loss_keypoint"] > 0 and all(losses[f"loss_cls_stage{k}"] > 0 for k in range(3))
    sum(losses.values()).backward()


@pytest.mark.parametrize(
    "opts, message",
    [
        (["MODEL.MASK_ON", "False"], "needs MODEL.MASK_ON True"),
        (["MODEL.HTC.STAGE_LOSS_WEIGHTS", "(1.0, 0.5)"], "2 values for 3 stages"),
        (["MODEL.ROI_MASK_HEAD.NAME", "Other"], "would be ignored"),
        (["MODEL.HTC.SEMANTIC_FUSE_LEVEL", "p7"], "is not one of"),
        (["MODEL.HTC.SEMANTIC_IN_FEATURES", "['p3', 'p9']"], "are not backbone outputs"),
    ],
)
def test_bad_configs(opts, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskTrainer.build_model(cfg_of(*opts))
