"""Keypoint flip TTA: equal to an independent flip-and-average computation, mirror-equivariant,
with the plain path's fields, and refusing a flip map that does not cover the keypoints."""

from pathlib import Path

import cv2
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.structures import Boxes, Instances

import multitask_pose
from conftest import flip_indices_by_name
from multitask_pose.modeling.test_time_augmentation import MultiTaskRCNNWithTTA


def decoded(codec, *args):
    """The codec's (coordinates, scores) as detectron2's (R, K, 3) x, y, score."""
    xy, scores = codec.decode(*args)
    return torch.cat([xy, scores[..., None]], dim=-1)


ROOT = Path(__file__).resolve().parents[2]


def tta_cfg(dataset="synth_people_mini_val", short_side=256):
    cfg = multitask_pose.get_multitask_cfg()
    cfg.merge_from_file(str(ROOT / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth.yaml"))
    cfg.merge_from_list(
        [
            "MODEL.WEIGHTS",
            "",
            "MODEL.DEVICE",
            "cpu",
            "DATASETS.TEST",
            f"('{dataset}',)",
            "MODEL.ROI_KEYPOINT_HEAD.NAME",
            "KeypointOffsetHead",
            # Random weights: keep every box, a few of them, at the image's own size (no
            # resampling).
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "TEST.DETECTIONS_PER_IMAGE",
            "6",
            "INPUT.MIN_SIZE_TEST",
            str(short_side),
            "INPUT.MAX_SIZE_TEST",
            "1000",
            "TEST.AUG.MIN_SIZES",
            f"({short_side},)",
            "TEST.AUG.MAX_SIZE",
            "1000",
            "TEST.AUG.FLIP",
            "True",
        ]
    )
    return cfg


@pytest.fixture(scope="module")
def setup(synth_mini):
    image = cv2.imread(synth_mini["synth_people_mini_val"][0]["file_name"])
    cfg = tta_cfg(short_side=min(image.shape[:2]))
    torch.manual_seed(0)
    predictor = DefaultPredictor(cfg)
    with torch.no_grad():  # break the random head's symmetry so flipping is visible in the maps
        for p in predictor.model.roi_heads.keypoint_head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return cfg, predictor, MultiTaskRCNNWithTTA(cfg, predictor.model), image


def run_tta(tta, image):
    tensor = torch.as_tensor(image.transpose(2, 0, 1).copy())
    with torch.no_grad():
        return tta([{"image": tensor, "height": image.shape[0], "width": image.shape[1]}])[0][
            "instances"
        ]


def test_equals_independent_flip_and_average(setup):
    cfg, predictor, tta, image = setup
    out = run_tta(tta, image)
    assert len(out) > 0
    model, H, W = predictor.model, image.shape[0], image.shape[1]
    boxes = out.pred_boxes.tensor
    mirrored = torch.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]], dim=1)

    def head_maps(img, b):
        inst = Instances(
            (H, W), pred_boxes=Boxes(b), pred_classes=out.pred_classes, scores=out.scores
        )
        x = {"image": torch.as_tensor(img.transpose(2, 0, 1).copy()), "height": H, "width": W}
        with torch.no_grad():
            r = model.inference([x], [inst], do_postprocess=False)[0]
        return r.pred_keypoint_heatmaps, r.pred_keypoint_offsets

    h1, o1 = head_maps(image, boxes)
    h2, o2 = head_maps(image[:, ::-1], mirrored)
    # Unflip the mirrored image's maps by keypoint names, written out here independently.
    meta = MetadataCatalog.get("synth_people_mini_val")
    partner = {n: n for n in meta.keypoint_names}
    for a, b in meta.keypoint_flip_map:
        partner[a], partner[b] = b, a
    index = {n: i for i, n in enumerate(meta.keypoint_names)}
    R, K, S, _ = h2.shape
    o2 = o2.view(R, K, 2, S, S)
    h2u, o2u = torch.empty_like(h2), torch.empty_like(o2)
    for name in meta.keypoint_names:
        src = index[partner[name]]
        h2u[:, index[name]] = h2[:, src].flip(-1)
        o2u[:, index[name], 0] = -o2[:, src, 0].flip(-1)
        o2u[:, index[name], 1] = o2[:, src, 1].flip(-1)
    heatmaps = (h1 + h2u) / 2
    offsets = (o1 + o2u.view(R, 2 * K, S, S)) / 2
    expected = decoded(model.roi_heads.keypoint_head.codec, heatmaps, boxes, offsets)
    assert torch.allclose(out.pred_keypoints, expected, atol=1e-3)
    # And the average differs from either single view: the test would see a missing flip.
    plain = decoded(model.roi_heads.keypoint_head.codec, h1, boxes, o1)
    assert (plain[..., :2] - expected[..., :2]).abs().max() > 0.05


def test_mirror_equivariance(setup):
    """The TTA prediction on the mirrored image is the mirror of the prediction on the image, with
    left and right swapped: what a symmetric input must give."""
    cfg, predictor, tta, image = setup
    out, out_m = run_tta(tta, image), run_tta(tta, image[:, ::-1])
    W = image.shape[1]
    b, bm = out.pred_boxes.tensor, out_m.pred_boxes.tensor
    assert len(out) == len(out_m)
    assert torch.allclose(
        torch.stack([W - bm[:, 2], bm[:, 1], W - bm[:, 0], bm[:, 3]], 1), b, atol=1e-3
    )
    flip = flip_indices_by_name(MetadataCatalog.get(cfg.DATASETS.TEST[0]).keypoint_names)
    assert list(MultiTaskRCNNWithTTA(cfg, predictor.model).flip_indices) == flip
    kp_m = out_m.pred_keypoints[:, flip]
    assert torch.allclose(W - kp_m[..., 0], out.pred_keypoints[..., 0], atol=1e-2)
    assert torch.allclose(kp_m[..., 1:], out.pred_keypoints[..., 1:], atol=1e-2)


def test_same_fields_as_plain_path(setup):
    cfg, predictor, tta, image = setup
    plain, out = predictor(image)["instances"], run_tta(tta, image)
    assert set(plain.get_fields()) == set(out.get_fields())
    for name in plain.get_fields():
        a, b = plain.get(name), out.get(name)
        a, b = (a.tensor, b.tensor) if isinstance(a, Boxes) else (a, b)
        assert a.shape[1:] == b.shape[1:], name
    assert out.pred_masks.shape[1:] == image.shape[:2]


def test_flip_map_must_cover_keypoints():
    name = "tta_test_bad_flip_map"
    if name not in DatasetCatalog.list():
        good = MetadataCatalog.get("synth_people_mini_val")
        DatasetCatalog.register(name, lambda: [])
        MetadataCatalog.get(name).set(
            keypoint_names=good.keypoint_names,
            keypoint_oks_sigmas=good.keypoint_oks_sigmas,
            keypoint_flip_map=[("left_eye", "right_eye")],
        )
    cfg = tta_cfg(dataset=name)
    model = DefaultPredictor(cfg).model
    with pytest.raises(ValueError, match="does not cover the sided keypoints"):
        MultiTaskRCNNWithTTA(cfg, model)


def test_one_scale_without_flip_is_the_plain_path(setup):
    """TTA at the image's own size without flipping is the plain prediction: same boxes, scores
    and keypoints (detectron2's box merging of one set, keypoint maps averaged over one view)."""
    cfg, predictor, _, image = setup
    no_flip = cfg.clone()
    no_flip.defrost()
    no_flip.TEST.AUG.FLIP = False
    plain = predictor(image)["instances"]
    out = run_tta(MultiTaskRCNNWithTTA(no_flip, predictor.model), image)
    order_a, order_b = plain.scores.argsort(descending=True), out.scores.argsort(descending=True)
    assert len(plain) == len(out) > 0
    torch.testing.assert_close(plain.scores[order_a], out.scores[order_b])
    torch.testing.assert_close(plain.pred_boxes.tensor[order_a], out.pred_boxes.tensor[order_b])
    torch.testing.assert_close(
        plain.pred_keypoints[order_a], out.pred_keypoints[order_b], atol=1e-3, rtol=1e-4
    )


def test_two_scales_average_the_maps_of_each_scale(setup):
    """TTA at two scales (no flip) equals an independent computation: for the boxes it returns,
    the keypoint maps of the image resized to each scale (detectron2's ResizeShortestEdge, boxes
    scaled alike, the resized images batched together as detectron2 batches them: padding to a
    common size changes features near the border), averaged, then decoded once."""
    from detectron2.data import transforms as T

    cfg, predictor, _, image = setup
    h, w = image.shape[:2]
    sizes = (min(h, w), int(0.75 * min(h, w)))
    two = cfg.clone()
    two.defrost()
    two.TEST.AUG.FLIP = False
    two.TEST.AUG.MIN_SIZES = sizes
    model, heads = predictor.model, predictor.model.roi_heads
    out = run_tta(MultiTaskRCNNWithTTA(two, model), image)
    boxes = out.pred_boxes.tensor
    assert len(boxes) > 0
    tfms = [T.ResizeShortestEdge(size, 1000).get_transform(image) for size in sizes]
    inputs = [
        {"image": torch.as_tensor(t.apply_image(image).transpose(2, 0, 1).copy()), "height": h,
         "width": w}
        for t in tfms
    ]  # fmt: skip
    scaled = [Boxes(torch.as_tensor(t.apply_box(boxes.numpy()), dtype=torch.float32)) for t in tfms]
    with torch.no_grad():
        features = model.backbone(model.preprocess_image(inputs).tensor)
        pooled = heads.keypoint_pooler([features[f] for f in heads.keypoint_in_features], scaled)
        maps, offsets = (m.split(len(boxes)) for m in heads.keypoint_head.layers(pooled))
    codec = heads.keypoint_head.codec
    expected = decoded(codec, torch.stack(maps).mean(0), boxes, torch.stack(offsets).mean(0))
    torch.testing.assert_close(out.pred_keypoints, expected, atol=1e-3, rtol=1e-4)
    # ... and not what one scale alone gives: the average is real.
    single = decoded(codec, maps[0], boxes, offsets[0])
    assert (single[..., :2] - expected[..., :2]).abs().max() > 0.05
