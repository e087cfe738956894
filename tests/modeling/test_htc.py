"""HybridTaskCascadeROIHeads (multitask_pose/modeling/htc.py): it trains every stage and predicts
boxes, masks and keypoints; reduced to Cascade Mask R-CNN it equals detectron2's CascadeROIHeads
and loads its checkpoints; mask information flow, mask averaging, interleaving and the semantic
targets do what HTC specifies; bad configs are refused."""

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

import multitask_pose  # noqa: F401  (registers the datasets)
from conftest import RECIPE
from multitask_pose import get_multitask_cfg
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
           "MODEL.HTC.SEMANTIC_ON", "False", "MODEL.HTC.MASK_AVERAGE", "False"]
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
    cfg = cfg_of("MODEL.HTC.INTERLEAVED", str(interleaved))
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
    t.remove("gt_masks")
    with pytest.raises(ValueError, match="SEMANTIC_ON needs instance masks"):
        semantic_targets([t], (6, 5), 8)


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
