"""The meta-architecture: the inference path scored against ground truth, flip test, crops,
losses, NMS and config checks."""

import logging

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch import nn

import multitask_pose  # noqa: F401  (registers the datasets)
from conftest import flip_indices_by_name
from multitask_pose.codecs import GaussianHeatmapCodec
from multitask_pose.evaluation import PoseCOCOEvaluator
from multitask_pose.shared import flip_heatmaps
from pose_topdown.affine import apply_affine, box_to_center_size, crop_affine
from pose_topdown.data import (
    TopDownTestMapper,
)
from pose_topdown.modeling import POSE_NET_REGISTRY
from topdown_testing import SAMPLE, OraclePoseNet, _oracle_model, sample_cfg  # noqa: F401

# The flip map written from the keypoint names, independent of the metadata the code reads.
BY_NAME = flip_indices_by_name(MetadataCatalog.get(SAMPLE).keypoint_names)


def test_model_flip_map_is_left_right_by_name():
    assert sample_cfg().DATASETS.TEST == (SAMPLE,)
    model = build_model(sample_cfg())
    assert model.flip_indices.tolist() == BY_NAME
    assert BY_NAME[1:3] == [2, 1]  # left_eye <-> right_eye: the reference itself is not identity


def test_ground_truth_through_the_inference_path_scores_ap_1():
    """GT keypoints encoded as heatmaps in each GT-box crop, decoded and mapped back by the model,
    with flip test, evaluate to keypoint AP 1.0 on the real COCO sample (NMS off: overlapping
    people are all kept)."""
    cfg = sample_cfg("TEST.TOPDOWN.IOU_NMS_THRESH", "1.0", "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0")
    model = _oracle_model(cfg, flip_test=True)
    codec = model.codec
    mapper = TopDownTestMapper(cfg, SAMPLE)
    evaluator = PoseCOCOEvaluator(SAMPLE, tasks=("keypoints",), distributed=False)
    evaluator.reset()
    dicts = DatasetCatalog.get(SAMPLE)
    for d in dicts:
        x = mapper(d)
        anns = [a for a in d["annotations"] if not a.get("iscrowd", 0)]
        kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), -1, 3)
        kp[..., :2] -= 0.5  # detectron2 pixel centres -> the official frame the crops use
        center, size = box_to_center_size(
            x["instances"].gt_boxes.tensor.numpy(), 0.75, cfg.INPUT.TOPDOWN.PADDING
        )
        hm = codec.encode(apply_affine(kp, crop_affine(center, size, 0, codec.input_size)))[
            "heatmaps"
        ]
        model.pose_net.queue = [hm, flip_heatmaps(hm, BY_NAME)]
        out = model([x])
        assert not model.pose_net.queue  # both calls happened
        inst = out[0]["instances"]
        assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes", "pred_keypoints"}
        # Rescoring: box score (1 for GT boxes) x mean score of the keypoints above 0.2.
        kp_s = inst.pred_keypoints[..., 2]
        above = kp_s > 0.2
        expected = torch.where(
            above.any(1), (kp_s * above).sum(1) / above.sum(1).clamp_min(1), torch.zeros(len(kp_s))
        )
        torch.testing.assert_close(inst.scores, expected)
        evaluator.process([x], out)
    results = evaluator.evaluate()
    assert results["keypoints"]["AP"] == pytest.approx(100.0)


def test_flip_test_on_a_mirrored_image_gives_the_mirrored_poses():
    """With flip test on, the model sees each crop and its mirror, so the poses of a mirrored image
    are the mirrored poses for any network, up to the official convention's known offset: heatmap
    cell j sits at crop pixel stride * j, whose mirror is W - stride - u rather than W - 1 - u, so
    poses come back (stride - 1) crop pixels to the left (SHIFT_HEATMAP off here)."""
    cfg = sample_cfg(
        "TEST.TOPDOWN.SHIFT_HEATMAP",
        "False",
        "TEST.TOPDOWN.IOU_NMS_THRESH",
        "1.0",
        "TEST.TOPDOWN.OKS_NMS_THRESH",
        "1.0",
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    for m in model.modules():  # far from the official near-zero init: no ties among heatmap values
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
    d = DatasetCatalog.get(SAMPLE)[0]
    x = TopDownTestMapper(cfg, SAMPLE)(d)
    w = x["width"]
    boxes = torch.tensor([[100.0, 50.0, 260.0, 400.0], [300.0, 80.0, 420.0, 300.0]])
    _, size = box_to_center_size(boxes.numpy(), 0.75, cfg.INPUT.TOPDOWN.PADDING)
    k = torch.tensor(192 / size[:, 0], dtype=torch.float32)  # crop pixels per image pixel
    # The mirrored boxes, moved by 1/k image pixels so that their crops are exactly the mirrored
    # crops.
    mirrored = torch.stack([w - 1 - boxes[:, 2], boxes[:, 1], w - 1 - boxes[:, 0], boxes[:, 3]], 1)
    mirrored[:, [0, 2]] += (1 / k)[:, None]

    def run(image, b):
        inst = Instances(x["instances"].image_size)
        inst.pred_boxes, inst.scores = Boxes(b), torch.tensor([0.9, 0.8])
        with torch.no_grad():
            return model([dict(x, image=image, instances=inst)])[0]["instances"].pred_keypoints

    a = run(x["image"], boxes)
    b = run(x["image"].flip(-1).contiguous(), mirrored)
    b_back = b[:, BY_NAME].clone()
    stride = 4
    b_back[..., 0] = w - b_back[..., 0] - ((stride - 1) / k)[:, None]
    torch.testing.assert_close(
        a[..., 2], b_back[..., 2], atol=2e-4, rtol=1e-3
    )  # float sampling noise
    # Maps whose maximum is not positive decode to no keypoint (the official rule), a discontinuity
    # at 0 that float noise can cross; compare the keypoints found.
    found = a[..., 2] > 1e-3
    assert found.float().mean() > 0.7
    torch.testing.assert_close(a[..., :2][found], b_back[..., :2][found], atol=2e-3, rtol=0)


def test_crop_by_grid_sample_equals_cv2_warp():
    """Inference crops (grid_sample, batched) equal the training mapper's cv2.warpAffine crops."""
    cfg = sample_cfg()
    model = build_model(cfg).eval()
    d = DatasetCatalog.get(SAMPLE)[1]
    x = TopDownTestMapper(cfg, SAMPLE)(d)
    boxes = x["instances"].gt_boxes.tensor.numpy()
    center, size = box_to_center_size(boxes, 0.75)
    m = crop_affine(center, size, np.linspace(-30, 30, len(boxes)), (192, 256))
    ours = model.crop(x["image"], m).numpy().transpose(0, 2, 3, 1)
    from pose_topdown.affine import warp_crops

    ref = warp_crops(
        np.ascontiguousarray(x["image"].numpy().transpose(1, 2, 0)), m, (192, 256)
    ).astype(np.float32)
    diff = np.abs(ours - ref)
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 2.0, (diff.mean(), diff.max())


def test_image_without_boxes_is_a_logged_empty_result(caplog):
    cfg = sample_cfg()
    model = build_model(cfg).eval()
    x = TopDownTestMapper(cfg, SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    x["instances"] = x["instances"][:0]
    with caplog.at_level(logging.INFO):
        out = model([x])[0]["instances"]
    assert len(out) == 0 and out.pred_keypoints.shape == (0, 17, 3)
    assert "no person boxes" in caplog.text
    del x["instances"]
    with pytest.raises(ValueError, match="no detector"):
        model([x])


def test_config_errors():
    cfg = sample_cfg("MODEL.TOPDOWN.NUM_KEYPOINTS", "14")
    with pytest.raises(ValueError, match="NUM_KEYPOINTS is 14"):
        build_model(cfg)
    cfg = sample_cfg("MODEL.TOPDOWN.HEATMAP_SIZE", "(24, 32)")
    model = build_model(sample_cfg()).eval()
    model.head.codec = GaussianHeatmapCodec.from_config(cfg)
    x = TopDownTestMapper(cfg, SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    with pytest.raises(ValueError, match="HEATMAP_SIZE"):
        model([x])
    with pytest.raises(ValueError, match="BOX_SOURCE"):
        TopDownTestMapper(sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "boxes"), SAMPLE)
    assert {"PoseHighResolutionNet", "PoseResNet", "StackedHourglass"} <= set(
        POSE_NET_REGISTRY._obj_map
    )


@pytest.mark.parametrize("balanced", [False, True])
def test_training_loss_is_the_official_joints_mse_over_every_stack(balanced):
    """The losses (loss_heatmap_stack0, loss_heatmap) sum over the supervised outputs (hourglass
    stacks) to 0.5 * mean((w * (pred - target))^2) each, the official JointsMSELoss; with
    BALANCED_LOSS each type's w is scaled by the balanced weights."""
    from multitask_pose.shared import keypoint_type_weights

    cfg = sample_cfg(
        "MODEL.TOPDOWN.POSE_NET",
        "StackedHourglass",
        "MODEL.HOURGLASS.NUM_STACKS",
        "2",
        "MODEL.HOURGLASS.NUM_FEATURES",
        "32",
        "MODEL.HOURGLASS.DEPTH",
        "2",
        "MODEL.TOPDOWN.INPUT_SIZE",
        "(64, 64)",
        "MODEL.TOPDOWN.HEATMAP_SIZE",
        "(16, 16)",
        "MODEL.TOPDOWN.BALANCED_LOSS",
        str(balanced),
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = [
        {
            "image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8),
            "targets": {
                "heatmaps": torch.rand(17, 16, 16),
                "target_weight": (torch.rand(17) > 0.3).float(),
            },
        }
        for _ in range(3)
    ]
    losses = model(batch)
    assert set(losses) == {"loss_heatmap_stack0", "loss_heatmap"}
    loss = sum(losses.values())
    with torch.no_grad():
        crops = (
            torch.stack([b["image"] for b in batch]).float() - model.pixel_mean
        ) / model.pixel_std
    outs = model.pose_net(
        crops
    )  # train mode: BatchNorm uses this batch's statistics, as in the model
    assert len(outs) == 2
    target = torch.stack([b["targets"]["heatmaps"] for b in batch])
    w = torch.stack([b["targets"]["target_weight"] for b in batch])
    if balanced:
        w = w * keypoint_type_weights(w > 0)
    expected = 0
    for (
        out
    ) in outs.values():  # the official loop: per joint, MSE of weighted maps, averaged over joints
        per_joint = [
            0.5
            * torch.mean(
                (out[:, j] * w[:, j, None, None] ** 0.5 - target[:, j] * w[:, j, None, None] ** 0.5)
                ** 2
            )
            for j in range(17)
        ]
        expected = expected + sum(per_joint) / 17
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-8)


def test_crop_and_heatmap_sizes_are_checked_at_build_time():
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model(
            sample_cfg(
                "MODEL.TOPDOWN.INPUT_SIZE", "(48, 64)", "MODEL.TOPDOWN.HEATMAP_SIZE", "(12, 16)"
            )
        )
    with pytest.raises(ValueError, match="stride 4"):
        build_model(sample_cfg("MODEL.TOPDOWN.HEATMAP_SIZE", "(96, 128)"))


def test_iou_nms_drops_duplicate_boxes():
    cfg = sample_cfg("TEST.TOPDOWN.OKS_NMS_THRESH", "1.0", "TEST.TOPDOWN.RESCORE", "False")
    assert cfg.TEST.TOPDOWN.IOU_NMS_THRESH == 0.6  # the default, the OKS team's
    model = build_model(cfg).eval()
    x = TopDownTestMapper(cfg, SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    inst = Instances(x["instances"].image_size)
    inst.pred_boxes = Boxes(
        torch.tensor([[100.0, 50, 260, 400], [102, 52, 262, 398], [300, 80, 420, 300]])
    )
    inst.scores = torch.tensor([0.5, 0.9, 0.7])
    with torch.no_grad():
        out = model([dict(x, instances=inst)])[0]["instances"]
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])


@pytest.mark.parametrize("vis_thresh,kept", [(None, 1), (0.2, 2)])
def test_oks_nms_counts_every_keypoint_unless_told(vis_thresh, kept):
    """Two poses in one box agree on 12 low-scored keypoints and differ on 5 high-scored ones.
    The official OKS-NMS (every keypoint counted, TEST.TOPDOWN.OKS_NMS_VIS_THRESH None) finds
    them duplicates; counting only keypoints above 0.2 in both keeps both."""
    opts = ["TEST.TOPDOWN.IOU_NMS_THRESH", "1.0", "TEST.TOPDOWN.OKS_NMS_THRESH", "0.5",
            "TEST.TOPDOWN.RESCORE", "False"]  # fmt: skip
    if vis_thresh is not None:
        opts += ["TEST.TOPDOWN.OKS_NMS_VIS_THRESH", str(vis_thresh)]
    cfg = sample_cfg(*opts)
    assert cfg.TEST.TOPDOWN.OKS_NMS_VIS_THRESH == vis_thresh  # None is the default
    model = _oracle_model(cfg, flip_test=False)
    x = TopDownTestMapper(cfg, SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    inst = Instances(x["instances"].image_size)
    inst.pred_boxes = Boxes(torch.tensor([[100.0, 50, 260, 400], [100.0, 50, 260, 400]]))
    inst.scores = torch.tensor([0.9, 0.8])
    rng = np.random.default_rng(0)
    kp = np.zeros((2, 17, 3))
    kp[0, :, :2] = rng.uniform(30, 160, (17, 2)) * [1, 1.5]
    kp[1] = kp[0]
    kp[1, :5, 0] += 60  # the high-scored keypoints disagree by about 100 image pixels
    kp[..., 2] = 2
    peak = torch.full((2, 17, 1, 1), 0.1)
    peak[:, :5] = 0.9
    model.pose_net.queue = [model.codec.encode(kp)["heatmaps"] * peak]
    with torch.no_grad():
        out = model([dict(x, instances=inst)])[0]["instances"]
    assert len(out) == kept
