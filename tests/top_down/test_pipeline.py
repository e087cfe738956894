"""The top-down pipeline end to end: mappers, box sources, meta-architecture, evaluator, predictor."""
import json
import logging

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from torch import nn

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.evaluation import PoseCOCOEvaluator
from topdown import get_topdown_cfg
from topdown.affine import apply_affine, box_to_center_size, crop_affine, flip_heatmaps
from topdown.codec import GaussianHeatmapCodec
from topdown.data import (DetectionFileError, TopDownTestMapper, TopDownTrainMapper, filter_person_boxes,
                          load_detection_file, person_dicts)
from topdown.engine import TopDownCheckpointer
from topdown.modeling import POSE_NET_REGISTRY

SAMPLE = "coco_person_sample"


def sample_cfg(*opts):
    cfg = get_topdown_cfg()
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "DATASETS.TRAIN", f"('{SAMPLE}',)", "DATASETS.TEST", f"('{SAMPLE}',)",
                         "MODEL.HRNET.WIDTH", "18", "MODEL.HRNET.STEM_BLOCKS", "1", "MODEL.HRNET.NUM_MODULES", "(1, 1, 1)",
                         "MODEL.HRNET.NUM_BLOCKS", "(1, 1, 1)", *opts])
    return cfg


class OraclePoseNet(nn.Module):
    """Returns the codec's encoding of given heatmaps, the flipped version on the flip-test call:
    a perfect pose network, to test the geometry around it."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.queue = []

    def forward(self, crops):
        return [self.queue.pop(0)]


def _oracle_model(cfg, flip_test):
    cfg.MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER = True
    cfg.MODEL.TOPDOWN.CODEC.DECODE = "dark"
    cfg.MODEL.TOPDOWN.CODEC.BLUR_KERNEL = 0
    cfg.TEST.TOPDOWN.FLIP_TEST = flip_test
    cfg.TEST.TOPDOWN.SHIFT_HEATMAP = False
    model = build_model(cfg).eval()
    model.pose_net = OraclePoseNet()
    return model


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
        center, size = box_to_center_size(x["instances"].gt_boxes.tensor.numpy(), 0.75, cfg.INPUT.TOPDOWN.PADDING)
        hm, _ = codec.encode(apply_affine(kp, crop_affine(center, size, 0, codec.input_size)))
        hm = torch.from_numpy(hm)
        model.pose_net.queue = [hm, flip_heatmaps(hm, model.flip_indices.numpy())]
        out = model([x])
        assert not model.pose_net.queue  # both calls happened
        inst = out[0]["instances"]
        assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes", "pred_keypoints"}
        # Rescoring: box score (1 for GT boxes) x mean score of the keypoints above 0.2.
        kp_s = inst.pred_keypoints[..., 2]
        above = kp_s > 0.2
        expected = torch.where(above.any(1), (kp_s * above).sum(1) / above.sum(1).clamp_min(1), torch.zeros(len(kp_s)))
        torch.testing.assert_close(inst.scores, expected)
        evaluator.process([x], out)
    results = evaluator.evaluate()
    assert results["keypoints"]["AP"] == pytest.approx(100.0)


def test_predictor_on_the_real_detection_file(tmp_path):
    """The real detections of the COCO sample through the test mapper and the model, and through
    TopDownPredictor on a BGR image: sane instances, evaluated without error."""
    # DET_FILE empty: the dataset's detections_file. Rescoring and OKS-NMS off, so the boxes and
    # scores come through as the file has them.
    cfg = sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.RESCORE", "False",
                     "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0", "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0")
    model = build_model(cfg).eval()
    mapper = TopDownTestMapper(cfg, SAMPLE)
    dets = json.load(open(MetadataCatalog.get(SAMPLE).detections_file))
    evaluator = PoseCOCOEvaluator(SAMPLE, tasks=("bbox", "keypoints"), distributed=False)
    evaluator.reset()
    total = 0
    for d in DatasetCatalog.get(SAMPLE):
        x = mapper(d)
        n_det = sum(1 for e in dets if e["image_id"] == d["image_id"])
        assert len(x["instances"]) == n_det
        with torch.no_grad():
            out = model([x])
        inst = out[0]["instances"]
        assert len(inst) == n_det
        assert inst.pred_keypoints.shape[1:] == (17, 3)
        # every keypoint lies inside its (padded) box's crop: near the box
        b = inst.pred_boxes.tensor
        kp = inst.pred_keypoints
        w, h = (b[:, 2] - b[:, 0]), (b[:, 3] - b[:, 1])
        side = torch.maximum(w, h * 0.75)[:, None] * 1.25
        assert ((kp[..., 0] - (b[:, 0:1] + b[:, 2:3]) / 2).abs() <= side).all()
        total += len(inst)
        evaluator.process([x], out)
    assert evaluator.evaluate()["bbox"]["AP"] == pytest.approx(78.9, abs=0.05)  # the file's own box AP
    # The predictor: same image, same boxes -> same poses.
    cfg.MODEL.WEIGHTS = str(tmp_path / "w.pth")
    torch.save({"model": model.state_dict()}, cfg.MODEL.WEIGHTS)
    from topdown.predictor import TopDownPredictor

    pred = TopDownPredictor(cfg)
    d = DatasetCatalog.get(SAMPLE)[0]
    ids = [e["image_id"] for e in DatasetCatalog.get(SAMPLE)]
    boxes, scores = load_detection_file(MetadataCatalog.get(SAMPLE).detections_file, ids)[d["image_id"]]
    out = pred(cv2.imread(d["file_name"]), boxes=boxes, scores=scores)["instances"]
    ref = model([mapper(d)])[0]["instances"]
    torch.testing.assert_close(out.pred_keypoints, ref.pred_keypoints)
    with pytest.raises(ValueError, match="no person boxes"):
        pred(cv2.imread(d["file_name"]))


def test_flip_test_on_a_mirrored_image_gives_the_mirrored_poses():
    """With flip test on, the model sees each crop and its mirror, so the poses of a mirrored image
    are the mirrored poses for any network, up to the official convention's known offset: heatmap
    cell j sits at crop pixel stride * j, whose mirror is W - stride - u rather than W - 1 - u, so
    poses come back (stride - 1) crop pixels to the left (SHIFT_HEATMAP off here)."""
    cfg = sample_cfg("TEST.TOPDOWN.SHIFT_HEATMAP", "False", "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0",
                     "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0")
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
    # The mirrored boxes, moved by 1/k image pixels so that their crops are exactly the mirrored crops.
    mirrored = torch.stack([w - 1 - boxes[:, 2], boxes[:, 1], w - 1 - boxes[:, 0], boxes[:, 3]], 1)
    mirrored[:, [0, 2]] += (1 / k)[:, None]

    def run(image, b):
        inst = Instances(x["instances"].image_size)
        inst.pred_boxes, inst.scores = Boxes(b), torch.tensor([0.9, 0.8])
        with torch.no_grad():
            return model([dict(x, image=image, instances=inst)])[0]["instances"].pred_keypoints

    a = run(x["image"], boxes)
    b = run(x["image"].flip(-1).contiguous(), mirrored)
    b_back = b[:, model.flip_indices].clone()
    stride = 4
    b_back[..., 0] = w - b_back[..., 0] - ((stride - 1) / k)[:, None]
    torch.testing.assert_close(a[..., 2], b_back[..., 2], atol=2e-4, rtol=1e-3)  # float sampling noise
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
    from topdown.affine import warp_crops

    ref = warp_crops(np.ascontiguousarray(x["image"].numpy().transpose(1, 2, 0)), m, (192, 256)).astype(np.float32)
    diff = np.abs(ours - ref)
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 2.0, (diff.mean(), diff.max())


def test_train_mapper_targets_sit_on_the_keypoints():
    cfg = sample_cfg("INPUT.TOPDOWN.FLIP_PROB", "1.0", "INPUT.TOPDOWN.ROTATION_PROB", "1.0",
                     "INPUT.TOPDOWN.HALF_BODY_PROB", "0.0")
    cfg.MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER = True
    mapper = TopDownTrainMapper(cfg, is_train=True)
    persons = person_dicts(DatasetCatalog.get(SAMPLE))
    assert len(persons) == 12  # the sample's persons with keypoints
    codec = GaussianHeatmapCodec((192, 256), (48, 64), decode="dark", blur_kernel=0)
    np.random.seed(0)
    for p in persons[:4]:
        out = mapper(p)
        assert out["image"].shape == (3, 256, 192) and out["image"].dtype == torch.uint8
        assert out["heatmaps"].shape == (17, 64, 48)
        labelled = p["keypoints"][:, 2] > 0
        # flipped: each labelled type k appears in channel flip(k)
        fi = mapper.flip_indices
        w = out["target_weight"].numpy() > 0
        assert (w <= labelled[fi]).all() and w.sum() >= 0.5 * labelled.sum()
        coords, _ = codec.decode(out["heatmaps"][None])
        assert np.all(np.isfinite(coords.numpy()))
    # The crop shows the person: a crop without augmentation has the keypoints where the image has them.
    cfg2 = sample_cfg("INPUT.TOPDOWN.FLIP_PROB", "0.0", "INPUT.TOPDOWN.ROTATION_PROB", "0.0",
                      "INPUT.TOPDOWN.SCALE_FACTOR", "0.0", "INPUT.TOPDOWN.HALF_BODY_PROB", "0.0")
    cfg2.MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER = True
    p = persons[0]
    out = TopDownTrainMapper(cfg2, is_train=True)(p)
    coords, _ = codec.decode(out["heatmaps"][None])
    center, size = box_to_center_size(p["bbox"][None], 0.75)
    back = apply_affine(np.concatenate([coords.numpy(), np.zeros((1, 17, 1))], -1),
                        np.linalg.inv(np.vstack([crop_affine(center, size, 0, (192, 256))[0], [0, 0, 1]]))[None, :2])
    lab = p["keypoints"][:, 2] > 0
    np.testing.assert_allclose(back[0, lab, :2] + 0.5, p["keypoints"][lab, :2], atol=0.1)


def test_detection_file_errors(tmp_path):
    ids = [785, 40083]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DetectionFileError, match="annotation file"):
        load_detection_file(str(bad), ids)
    bad.write_text(json.dumps([{"image_id": 785, "bbox": [1, 2, 3], "score": 0.5}]))
    with pytest.raises(DetectionFileError, match="bbox"):
        load_detection_file(str(bad), ids)
    bad.write_text(json.dumps([{"image_id": 785, "box": [1, 2, 3, 4]}]))
    with pytest.raises(DetectionFileError, match="entry 0"):
        load_detection_file(str(bad), ids)
    bad.write_text(json.dumps([{"image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]))
    with pytest.raises(DetectionFileError, match="not in the dataset"):
        load_detection_file(str(bad), ids)
    bad.write_text("{not json")
    with pytest.raises(DetectionFileError, match="not valid json"):
        load_detection_file(str(bad), ids)
    with pytest.raises(FileNotFoundError, match="DET_FILE"):
        load_detection_file(str(tmp_path / "missing.json"), ids)
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"image_id": 785, "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.5},
                                {"image_id": 785, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9}]))
    got = load_detection_file(str(good), ids)
    np.testing.assert_allclose(got[785][0], [[10, 20, 40, 60]])
    assert got[40083][0].shape == (0, 4)


def test_filter_person_boxes_clips_skips_and_logs(caplog):
    boxes = torch.tensor([[-10.0, -10.0, 50.0, 80.0],  # partly outside: clipped
                          [700.0, 10.0, 800.0, 90.0],  # wholly outside: skipped
                          [30.0, 30.0, 30.0, 60.0],  # zero area: skipped
                          [10.0, 10.0, 14.0, 200.0],  # thin: below min size
                          [100.0, 100.0, 200.0, 300.0], [float("nan"), 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.1, 0.5])
    with caplog.at_level(logging.WARNING):
        b, s = filter_person_boxes(boxes, scores, (480, 640), min_size=8, where="image 7")
    assert "image 7: skipped 3 person boxes" in caplog.text
    torch.testing.assert_close(b, torch.tensor([[0.0, 0.0, 50.0, 80.0], [100.0, 100.0, 200.0, 300.0]]))
    b, s = filter_person_boxes(boxes, scores, (480, 640), score_thresh=0.2, topk=1)
    assert s.tolist() == [pytest.approx(0.95)]


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
    model.codec = GaussianHeatmapCodec.from_config(cfg)
    x = TopDownTestMapper(cfg, SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    with pytest.raises(ValueError, match="HEATMAP_SIZE"):
        model([x])
    with pytest.raises(ValueError, match="BOX_SOURCE"):
        TopDownTestMapper(sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "boxes"), SAMPLE)
    assert set(POSE_NET_REGISTRY._obj_map) == {"PoseHighResolutionNet", "PoseResNet", "StackedHourglass"}


def test_checkpointer_loads_official_names(tmp_path):
    """MODEL.WEIGHTS may be an official pose_hrnet checkpoint as released (no pose_net. prefix,
    DataParallel's module., a state_dict wrapper)."""
    cfg = sample_cfg()
    src = build_model(cfg)
    torch.manual_seed(3)
    official = {"module." + k[len("pose_net."):]: torch.randn_like(v.float()).to(v.dtype)
                for k, v in src.state_dict().items() if k.startswith("pose_net.")}
    path = tmp_path / "pose_hrnet_official.pth"
    torch.save({"state_dict": official}, path)
    model = build_model(cfg)
    TopDownCheckpointer(model).load(str(path))
    for k, v in official.items():
        assert torch.equal(model.state_dict()["pose_net." + k[len("module."):]], v), k


def test_demo_topdown_mode(tmp_path):
    """tools/demo.py --topdown on the COCO sample with the boxes of its detection file."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("demo_tool", root / "tools" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    cfg = sample_cfg()
    weights = tmp_path / "model.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(weights), "DATASETS.TRAIN", f"('{SAMPLE}',)",
            "DATASETS.TEST", f"('{SAMPLE}',)", "TEST.TOPDOWN.DET_FILE", "", "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0",
            "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0",
            "MODEL.HRNET.WIDTH", "18", "MODEL.HRNET.STEM_BLOCKS", "1", "MODEL.HRNET.NUM_MODULES", "(1, 1, 1)",
            "MODEL.HRNET.NUM_BLOCKS", "(1, 1, 1)"]
    config = str(root / "projects" / "TopDown" / "configs" / "COCO" / "hrnet_w32_256x192.yaml")
    out = tmp_path / "demo"
    demo.main(["--topdown", "--config-file", config, "--input", str(root / "datasets" / "samples" / "coco"),
               "--output", str(out), "--dataset", SAMPLE, "--confidence-threshold", "0.5", *opts])
    results = json.load(open(out / "results.json"))
    dets = json.load(open(MetadataCatalog.get(SAMPLE).detections_file))
    assert len(results) == sum(d["score"] >= 0.5 for d in dets)
    assert all(len(r["keypoints"]) == 51 for r in results)
    assert len(list(out.glob("*_pred.jpg"))) == 4
    with pytest.raises(ValueError, match="needs --dataset"):
        demo.main(["--topdown", "--config-file", config, "--input", str(root / "datasets" / "samples" / "coco"),
                   "--output", str(out), *opts])


@pytest.mark.parametrize("balanced", [False, True])
def test_training_loss_is_the_official_joints_mse_over_every_stack(balanced):
    """loss_heatmap = sum over the supervised outputs (hourglass stacks) of 0.5 * mean((w * (pred -
    target))^2), the official JointsMSELoss; with BALANCED_LOSS each type's w is scaled by the
    balanced weights."""
    from multitask_pose.modeling.balanced_keypoint_loss import keypoint_type_weights

    cfg = sample_cfg("MODEL.TOPDOWN.POSE_NET", "StackedHourglass", "MODEL.HOURGLASS.NUM_STACKS", "2",
                     "MODEL.HOURGLASS.NUM_FEATURES", "32", "MODEL.HOURGLASS.DEPTH", "2",
                     "MODEL.TOPDOWN.INPUT_SIZE", "(64, 64)", "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 16)",
                     "MODEL.TOPDOWN.BALANCED_LOSS", str(balanced))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = [{"image": torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8), "heatmaps": torch.rand(17, 16, 16),
              "target_weight": (torch.rand(17) > 0.3).float()} for _ in range(3)]
    loss = model(batch)["loss_heatmap"]
    with torch.no_grad():
        crops = (torch.stack([b["image"] for b in batch]).float() - model.pixel_mean) / model.pixel_std
    outs = model.pose_net(crops)  # train mode: BatchNorm uses this batch's statistics, as in the model
    assert len(outs) == 2
    target = torch.stack([b["heatmaps"] for b in batch])
    w = torch.stack([b["target_weight"] for b in batch])
    if balanced:
        w = w * keypoint_type_weights(w > 0)
    expected = 0
    for out in outs:  # the official loop: per joint, MSE of weighted maps, averaged over joints
        per_joint = [0.5 * torch.mean((out[:, j] * w[:, j, None, None] ** 0.5 - target[:, j] * w[:, j, None, None] ** 0.5) ** 2)
                     for j in range(17)]
        expected = expected + sum(per_joint) / 17
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-8)


def test_crop_and_heatmap_sizes_are_checked_at_build_time():
    with pytest.raises(ValueError, match="divisible by 32"):
        build_model(sample_cfg("MODEL.TOPDOWN.INPUT_SIZE", "(48, 64)", "MODEL.TOPDOWN.HEATMAP_SIZE", "(12, 16)"))
    with pytest.raises(ValueError, match="stride 4"):
        build_model(sample_cfg("MODEL.TOPDOWN.HEATMAP_SIZE", "(96, 128)"))


def test_iou_nms_drops_duplicate_boxes():
    cfg = sample_cfg("TEST.TOPDOWN.OKS_NMS_THRESH", "1.0", "TEST.TOPDOWN.RESCORE", "False")
    assert cfg.TEST.TOPDOWN.IOU_NMS_THRESH == 0.6  # the default, the OKS team's
    model = build_model(cfg).eval()
    x = TopDownTestMapper(cfg, SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    inst = Instances(x["instances"].image_size)
    inst.pred_boxes = Boxes(torch.tensor([[100.0, 50, 260, 400], [102, 52, 262, 398], [300, 80, 420, 300]]))
    inst.scores = torch.tensor([0.5, 0.9, 0.7])
    with torch.no_grad():
        out = model([dict(x, instances=inst)])[0]["instances"]
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])


def test_detector_box_source(tmp_path):
    """BOX_SOURCE "detector": a detectron2 model (here the foundation's R-CNN recipe with random
    weights, scores thresholded at 0) finds the boxes inside the top-down model."""
    from multitask_pose.config import get_multitask_cfg
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    det_config = root / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth.yaml"
    det_cfg = get_multitask_cfg()
    det_cfg.merge_from_file(str(det_config))
    det_cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    det_cfg.MODEL.KEYPOINT_ON = det_cfg.MODEL.MASK_ON = False
    det_yaml = tmp_path / "detector.yaml"
    det_yaml.write_text(det_cfg.dump())
    torch.manual_seed(0)
    det_weights = tmp_path / "detector.pth"
    torch.save({"model": build_model(det_cfg).state_dict()}, det_weights)
    cfg = sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "detector", "TEST.TOPDOWN.DETECTOR_CONFIG", str(det_yaml),
                     "TEST.TOPDOWN.DETECTOR_WEIGHTS", str(det_weights), "TEST.TOPDOWN.DET_TOPK", "7",
                     "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0", "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0")
    model = build_model(cfg).eval()
    mapper = TopDownTestMapper(cfg, SAMPLE)
    x = mapper(DatasetCatalog.get(SAMPLE)[0])
    assert "instances" not in x
    with torch.no_grad():
        out = model([x])[0]["instances"]
    assert len(out) == 7 and out.pred_keypoints.shape == (7, 17, 3)
    boxes, scores = model.detector(x["image"].permute(1, 2, 0).numpy())
    top = torch.argsort(scores, descending=True)[:7]
    torch.testing.assert_close(out.pred_boxes.tensor, filter_person_boxes(boxes[top], scores[top], (x["height"], x["width"]))[0])
    with pytest.raises(FileNotFoundError, match="DETECTOR_CONFIG"):
        build_model(sample_cfg("TEST.TOPDOWN.BOX_SOURCE", "detector"))


def test_half_body_crops_the_upper_or_the_lower_body():
    cfg = sample_cfg("INPUT.TOPDOWN.HALF_BODY_PROB", "1.0")
    mapper = TopDownTrainMapper(cfg, is_train=True)
    names = MetadataCatalog.get(SAMPLE).keypoint_names
    assert [names[i] for i in mapper.lower] == [n for n in names if n.split("_")[-1] in ("hip", "knee", "ankle")]
    p = max(person_dicts(DatasetCatalog.get(SAMPLE)), key=lambda q: (q["keypoints"][:, 2] > 0).sum())
    kp = p["keypoints"]
    _, full = box_to_center_size(p["bbox"][None], 0.75)
    seen = set()
    np.random.seed(0)
    for _ in range(20):
        center, size = mapper._half_body(kp)
        part = mapper.upper if center[1] < kp[kp[:, 2] > 0, 1].mean() else mapper.lower
        pts = kp[part][kp[part, 2] > 0, :2]
        seen.add(part is mapper.upper)
        assert size[1] < full[0, 1]  # a smaller crop than the whole person's
        np.testing.assert_allclose(center, (pts.min(0) + pts.max(0)) / 2, atol=1e-6)  # centred on the part
    assert seen == {True, False}  # both halves get picked
