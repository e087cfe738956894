"""The predictor, the checkpointer and the demo: the pipeline as a user runs it."""

import json

import cv2
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.evaluation import PoseCOCOEvaluator
from pose_topdown.data import TopDownTestMapper, TopDownTrainMapper, load_detection_file
from pose_topdown.engine import TopDownCheckpointer
from topdown_testing import SAMPLE, SMALL_HRNET, OraclePoseNet, _oracle_model, sample_cfg  # noqa: F401


def test_predictor_on_the_real_detection_file(tmp_path):
    """The real detections of the COCO sample through the test mapper and the model, and through
    TopDownPredictor on a BGR image: sane instances, evaluated without error."""
    # DET_FILE empty: the dataset's detections_file. Rescoring and OKS-NMS off, so the boxes and
    # scores come through as the file has them.
    cfg = sample_cfg(
        "TEST.TOPDOWN.BOX_SOURCE",
        "file",
        "TEST.TOPDOWN.RESCORE",
        "False",
        "TEST.TOPDOWN.IOU_NMS_THRESH",
        "1.0",
        "TEST.TOPDOWN.OKS_NMS_THRESH",
        "1.0",
    )
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
        # every keypoint lies inside its box's crop (the box grown to 3:4, padded 1.25x)
        b = inst.pred_boxes.tensor
        kp = inst.pred_keypoints
        w, h = (b[:, 2] - b[:, 0]), (b[:, 3] - b[:, 1])
        crop_w = torch.maximum(w, h * 0.75)[:, None] * 1.25
        crop_h = crop_w / 0.75
        assert ((kp[..., 0] - (b[:, 0:1] + b[:, 2:3]) / 2).abs() <= crop_w / 2 + 1).all()
        assert ((kp[..., 1] - (b[:, 1:2] + b[:, 3:4]) / 2).abs() <= crop_h / 2 + 1).all()
        total += len(inst)
        evaluator.process([x], out)
    assert evaluator.evaluate()["bbox"]["AP"] == pytest.approx(
        78.9, abs=0.05
    )  # the file's own box AP
    # The predictor: same image, same boxes -> same poses.
    cfg.MODEL.WEIGHTS = str(tmp_path / "w.pth")
    torch.save({"model": model.state_dict()}, cfg.MODEL.WEIGHTS)
    from pose_topdown.predictor import TopDownPredictor

    pred = TopDownPredictor(cfg)
    d = DatasetCatalog.get(SAMPLE)[0]
    ids = [e["image_id"] for e in DatasetCatalog.get(SAMPLE)]
    boxes, scores = load_detection_file(MetadataCatalog.get(SAMPLE).detections_file, ids)[
        d["image_id"]
    ]
    out = pred(cv2.imread(d["file_name"]), boxes=boxes, scores=scores)["instances"]
    ref = model([mapper(d)])[0]["instances"]
    torch.testing.assert_close(out.pred_keypoints, ref.pred_keypoints)
    with pytest.raises(ValueError, match="no person boxes"):
        pred(cv2.imread(d["file_name"]))


def test_checkpointer_loads_official_names(tmp_path):
    """MODEL.WEIGHTS may be an official pose_hrnet checkpoint as released (no pose_net. prefix,
    DataParallel's module., a state_dict wrapper)."""
    cfg = sample_cfg()
    src = build_model(cfg)
    torch.manual_seed(3)
    official = {
        "module." + k[len("pose_net.") :]: torch.randn_like(v.float()).to(v.dtype)
        for k, v in src.state_dict().items()
        if k.startswith("pose_net.")
    }
    path = tmp_path / "pose_hrnet_official.pth"
    torch.save({"state_dict": official}, path)
    model = build_model(cfg)
    TopDownCheckpointer(model).load(str(path))
    for k, v in official.items():
        assert torch.equal(model.state_dict()["pose_net." + k[len("module.") :]], v), k


def test_demo_topdown_mode(tmp_path, capsys):
    """tools/demo.py --topdown on the COCO sample with the boxes of its detection file."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    from multitask_pose.commands import demo

    cfg = sample_cfg()
    weights = tmp_path / "model.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    # fmt: off
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(weights),
            "DATASETS.TRAIN", f"('{SAMPLE}',)", "DATASETS.TEST", f"('{SAMPLE}',)",
            "TEST.TOPDOWN.DET_FILE", "", "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0",
            "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0", *SMALL_HRNET]
    # fmt: on
    config = str(root / "projects" / "TopDown" / "configs" / "COCO" / "hrnet_w32_256x192.yaml")
    out = tmp_path / "demo"
    args = ["--topdown", "--config-file", config, "--input",
            str(root / "datasets" / "samples" / "coco"), "--output", str(out)]  # fmt: skip
    demo.main([*args, "--dataset", SAMPLE, "--confidence-threshold", "0.5", *opts])
    results = json.load(open(out / "results.json"))
    dets = json.load(open(MetadataCatalog.get(SAMPLE).detections_file))
    assert len(results) == sum(d["score"] >= 0.5 for d in dets)
    assert all(len(r["keypoints"]) == 51 for r in results)
    assert len(list(out.glob("*_pred.jpg"))) == 4
    # without --dataset (photos) the boxes come from a detection file of the same images
    capsys.readouterr()
    assert demo.main([*args, *opts]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "demo: --topdown with TEST.TOPDOWN.BOX_SOURCE 'file' on --input images needs"
        " TEST.TOPDOWN.DET_FILE: tools/detect_persons.py --input <the folder> --output <file>"
        " writes it"
    )


def test_demo_finds_the_top_down_stage_through_its_entry_points(monkeypatch, capsys):
    """The demo's --topdown config and predictor are this project's (setup.py's entry points);
    without them installed, --topdown is refused in one line."""
    from multitask_pose.commands import demo
    from pose_topdown.config import get_topdown_cfg
    from pose_topdown.predictor import predictor_and_boxes

    assert demo.stage_configs()["topdown"] is get_topdown_cfg
    (found,) = demo.entry_points(group=demo.PREDICTOR_ENTRY_POINTS, name="topdown")
    assert found.load() is predictor_and_boxes
    monkeypatch.setattr(demo, "stage_configs", lambda: {"rcnn": None})
    assert demo.main(["--topdown", "--config-file", "x.yaml", "--input", ".", "--output",
                      "out"]) == 2  # fmt: skip
    assert capsys.readouterr().err.strip() == (
        "demo: --topdown: the top-down stage is not installed (pip install -e . in the"
        " repository root installs both stages)"
    )
    monkeypatch.setattr(demo, "entry_points", lambda **k: ())
    with pytest.raises(demo.ConfigError, match="the top-down stage is not installed"):
        demo.topdown_predictor(None, "", None, [])


def test_trainer_hands_the_models_codec_to_the_mapper(tmp_path, monkeypatch):
    """The codec is built once: the training mapper encodes with the model's codec object."""
    from pose_topdown.engine import TopDownTrainer

    seen, call = [], TopDownTrainMapper.__call__

    def spy(mapper, person):
        seen.append(mapper.codec)
        return call(mapper, person)

    monkeypatch.setattr(TopDownTrainMapper, "__call__", spy)
    opts = ["OUTPUT_DIR", str(tmp_path), "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]
    trainer = TopDownTrainer(sample_cfg(*opts))
    next(iter(trainer._trainer.data_loader))
    model = trainer._trainer.model
    assert len(seen) == 2 and all(codec is model.codec for codec in seen)
    assert "build_model" not in vars(trainer)  # the hooks are gone after construction
