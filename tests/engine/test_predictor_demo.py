"""DefaultPredictor works after `import multitask_pose` and finds the people a model memorised;
tools/demo.py writes drawn images and a COCO results json that scores like the model; eval-only
flip TTA. All on the R-CNN recipe memorising the real COCO sample (conftest.memorised_rcnn)."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.engine import DefaultPredictor
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from conftest import MEMORISE_OPTS, RECIPE, ROOT
from multitask_pose import get_multitask_cfg
from multitask_pose.export import ExportCheckError, rcnn_images, trace_rcnn
from multitask_pose.shared.onnx_runtime import rcnn_onnx_runner

SAMPLES = ROOT / "datasets" / "samples" / "coco"


def predictor_cfg(weights):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(
        MEMORISE_OPTS + ["MODEL.WEIGHTS", str(weights), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"]
    )
    return cfg


def _keypoint_ap(results, gt_json):
    """COCO keypoint AP of a results list, by pycocotools directly (not our evaluator)."""
    gt = COCO(str(gt_json))
    ev = COCOeval(gt, gt.loadRes(results), "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev.stats[0]


def test_default_predictor_finds_the_memorised_people(memorised_rcnn):
    out_dir, _ = memorised_rcnn
    # tools/train_net.py's evaluation wrote its results with their record
    written = sorted(out_dir.rglob("coco_instances_results.json"))
    assert written
    for results in written:
        record = json.loads(Path(f"{results}.meta.json").read_text())
        assert record["producer"].startswith("GeneralizedRCNN / ")
        assert record["score_scale"] == "softmax_probability"
        assert record["dataset"] == results.parent.name
    predictor = DefaultPredictor(predictor_cfg(out_dir / "model_final.pth"))
    coco = json.loads((SAMPLES / "test_coco.json").read_text())
    image = max(
        coco["images"],
        key=lambda im: sum(
            a["image_id"] == im["id"] and a["num_keypoints"] >= 10 for a in coco["annotations"]
        ),
    )
    img = cv2.imread(str(SAMPLES / image["file_name"]))
    inst = predictor(img)["instances"]
    n = len(inst)
    assert inst.image_size == img.shape[:2] == (image["height"], image["width"])
    assert inst.pred_boxes.tensor.shape == (n, 4)
    assert inst.scores.shape == (n,) and inst.pred_classes.shape == (n,)
    assert inst.pred_masks.shape == (n, *img.shape[:2]) and inst.pred_masks.dtype == torch.bool
    k = len(predictor.metadata.keypoint_names)
    assert inst.pred_keypoints.shape == (n, k, 3)
    # Every annotated person with 10+ keypoints has a prediction whose labelled keypoints lie
    # within 5% of the person's height (median), in image coordinates (COCO's pixel indices +
    # 0.5, detectron2's continuous ones).
    pred = inst.pred_keypoints[..., :2].numpy()
    people = [
        a for a in coco["annotations"] if a["image_id"] == image["id"] and a["num_keypoints"] >= 10
    ]
    assert len(people) >= 2
    for a in people:
        gt = np.asarray(a["keypoints"], np.float64).reshape(k, 3)
        lab = gt[:, 2] > 0
        err = np.linalg.norm(pred[:, lab] - (gt[None, lab, :2] + 0.5), axis=2)
        best = np.median(err, axis=1).min()
        assert best < 0.05 * a["bbox"][3], (a["id"], best, a["bbox"])


def test_demo_tool_writes_images_and_results(memorised_rcnn, tmp_path):
    out_dir, _ = memorised_rcnn
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "demo.py"),
        "--config-file",
        str(RECIPE),
        "--input",
        str(SAMPLES),
        "--output",
        str(out),
        "--dataset",
        "coco_person_sample",
        "--confidence-threshold",
        "0.05",
        *MEMORISE_OPTS,
        "MODEL.WEIGHTS",
        str(out_dir / "model_final.pth"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "demo: 4 images" in proc.stdout
    drawn = sorted(p.name for p in out.glob("*_pred.jpg"))
    assert drawn == sorted(p.stem + "_pred.jpg" for p in SAMPLES.glob("*.jpg"))
    results = json.loads((out / "results.json").read_text())
    record = json.loads((out / "results.json.meta.json").read_text())  # what made them
    assert (record["dataset"], record["score_scale"]) == ("coco_person_sample",
                                                          "softmax_probability")  # fmt: skip
    assert record["producer"].startswith("GeneralizedRCNN / ")
    coco = json.loads((SAMPLES / "test_coco.json").read_text())
    ids = {image["id"] for image in coco["images"]}
    sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    assert len(results) > 0 and {r["image_id"] for r in results} <= ids
    for r in results:
        w, h = sizes[r["image_id"]]
        kp = np.asarray(r["keypoints"]).reshape(-1, 3)
        assert len(kp) == 17 and (kp[:, 0] >= -1).all() and (kp[:, 0] <= w + 1).all()
        assert (kp[:, 1] >= -1).all() and (kp[:, 1] <= h + 1).all()
        assert set(r) >= {
            "image_id",
            "category_id",
            "bbox",
            "score",
            "segmentation",
            "keypoints",
            "file_name",
        }
        assert r["image_id"] in ids
        assert len(r["bbox"]) == 4 and len(r["keypoints"]) % 3 == 0
    # The results are the memorised model's: they score like its evaluation (keypoint AP 0.94+).
    assert _keypoint_ap(results, SAMPLES / "test_coco.json") > 0.85


def test_demo_tool_names_a_missing_input(tmp_path):
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "demo.py"),
        "--config-file",
        str(RECIPE),
        "--input",
        str(tmp_path / "nope.jpg"),
        "--output",
        str(tmp_path / "o"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"--input {tmp_path / 'nope.jpg'}: no such file or folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_only_with_flip_tta(memorised_rcnn, tmp_path):
    """`train_net.py --eval-only TEST.AUG.ENABLED True` evaluates keypoints with flip TTA next to
    the plain evaluation, as detectron2 users expect, and prints both summary lines. The plain
    evaluation reproduces the training run's, and flip TTA keeps the memorised model's accuracy.
    This model never saw mirrored people, so its flipped pass is weak and this test does not
    see a wrong flip map (tried: the identity map passes here); test_test_time_augmentation.py
    checks the map against keypoint names."""
    from conftest import run_train_net

    out_dir, _ = memorised_rcnn
    opts = list(MEMORISE_OPTS)
    proc = run_train_net(
        [
            "--config-file",
            str(RECIPE),
            "--eval-only",
            *opts,
            "MODEL.WEIGHTS",
            str(out_dir / "model_final.pth"),
            "TEST.AUG.ENABLED",
            "True",
            "TEST.AUG.MIN_SIZES",
            "(320,)",
            "TEST.AUG.MAX_SIZE",
            "448",
            "OUTPUT_DIR",
            str(tmp_path),
        ],
        cwd=tmp_path,
    )
    results = json.loads((tmp_path / "results_coco_person_sample.json").read_text())
    trained = json.loads((out_dir / "results_coco_person_sample.json").read_text())
    for task in ("bbox", "segm", "keypoints"):
        assert task in results and f"{task}_TTA" in results
        assert results[task]["AP"] == pytest.approx(trained[task]["AP"], abs=1e-6)
    # AP in percent (the plain evaluation: 94-96). With TTA above 80 on the machines of earlier
    # sessions, 79.2 on a 2-core Intel Xeon at 2 threads (the same before and after the change
    # of 2026-12-01; runs differ across machines and thread counts). The bound catches a merge
    # that loses the people, not a small loss.
    assert results["keypoints_TTA"]["AP"] > 70, results["keypoints_TTA"]
    assert results["bbox_TTA"]["AP"] > 50, results["bbox_TTA"]
    assert "train_net coco_person_sample TTA: box AP" in proc.stdout
    assert (
        tmp_path / "inference_TTA" / "coco_person_sample" / "coco_instances_results.json"
    ).exists()


def _demo_module():
    from multitask_pose.commands import demo

    return demo


def test_demo_tool_on_a_video(memorised_rcnn, tmp_path, capsys):
    """An 8-frame video of the COCO sample images, written here: the drawn video has every frame
    at the input's size, and each frame's results equal the predictor's on that decoded frame."""
    out_dir, _ = memorised_rcnn
    video = tmp_path / "walk.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (640, 480))
    images = sorted(SAMPLES.glob("*.jpg"))
    for path in images + images:
        writer.write(cv2.resize(cv2.imread(str(path)), (640, 480)))
    writer.release()
    cap = cv2.VideoCapture(str(video))
    decoded = [f for ok, f in iter(lambda: cap.read(), (False, None)) if ok]
    assert len(decoded) == 8
    demo = _demo_module()
    out = tmp_path / "demo"
    opts = [*MEMORISE_OPTS, "MODEL.WEIGHTS", str(out_dir / "model_final.pth")]
    argv = ["--config-file", str(RECIPE), "--video-input", str(video), "--output", str(out),
            "--confidence-threshold", "0.05", *opts]  # fmt: skip
    assert demo.main(argv) == 0
    assert "demo: 8 frames" in capsys.readouterr().out
    drawn = cv2.VideoCapture(str(out / "walk_pred.mp4"))
    frames = [f for ok, f in iter(lambda: drawn.read(), (False, None)) if ok]
    assert len(frames) == 8 and all(f.shape == (480, 640, 3) for f in frames)
    results = json.loads((out / "walk_results.json").read_text())
    record = json.loads((out / "walk_results.json.meta.json").read_text())
    assert record["dataset"] == f"video {video}" and record["score_scale"] == "softmax_probability"
    assert {r["frame"] for r in results} <= set(range(8))
    assert all(r["image_id"] == r["frame"] and r["time_s"] == r["frame"] / 5 for r in results)
    predictor = DefaultPredictor(predictor_cfg(out_dir / "model_final.pth"))
    with_people = 0
    for i, frame in enumerate(decoded):
        inst = predictor(frame)["instances"].to("cpu")
        mine = [r for r in results if r["frame"] == i]
        assert len(mine) == len(inst)
        if not len(inst):
            continue
        with_people += 1
        boxes = torch.tensor([r["bbox"] for r in mine])
        ref = inst.pred_boxes.tensor.clone()
        ref[:, 2:] -= ref[:, :2]  # xyxy -> xywh
        assert torch.allclose(boxes, ref, atol=1e-3)
        kps = torch.tensor([r["keypoints"] for r in mine]).view(len(mine), -1, 3)
        # (COCO results are in pixel indices: detectron2's continuous coordinates - 0.5)
        assert torch.allclose(kps[..., :2] + 0.5, inst.pred_keypoints[..., :2], atol=1e-2)
    # The memorised people on most frames: the frames are the sample images squeezed to 640x480
    # and re-encoded, which the model never saw (all 8 in earlier runs; 6 with OpenCV 5.1.0).
    assert with_people >= 5, with_people


def test_demo_tool_names_an_unreadable_video_and_a_missing_camera(tmp_path, capsys):
    demo = _demo_module()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    base = ["--config-file", str(RECIPE), "--output", str(tmp_path / "o"),
            "--allow-random-weights", *MEMORISE_OPTS]  # fmt: skip (the video's error, no model)
    assert demo.main(["--video-input", str(bad), *base]) == 2
    err = capsys.readouterr().err
    assert f"video {bad}" in err and ("cannot open" in err or "no frame" in err)
    assert not list((tmp_path / "o").glob("*.mp4"))  # nothing half-written
    if not cv2.VideoCapture(0).isOpened():
        assert demo.main(["--webcam", *base]) == 2
        assert "camera 0: OpenCV cannot open it (no camera" in capsys.readouterr().err


def _export_tool():
    """tools/export_model.py's library: its main takes the tool's arguments."""
    from pose_topdown import export

    return export


def _eager_outputs(model, x):
    """The eager R-CNN's outputs on one resized image, as the exported files give them."""
    with torch.no_grad():
        inst = model.inference([{"image": x}], do_postprocess=False)[0]
    return {k: inst.get(k) for k in inst.get_fields()} | {"pred_boxes": inst.pred_boxes.tensor}


def _exported_outputs(path, x):
    """An exported file's outputs by name: TorchScript in torch, ONNX in ONNX Runtime."""
    if str(path).endswith(".onnx"):
        got = rcnn_onnx_runner(str(path))(x)
    else:
        got = torch.jit.load(str(path))(x)
    names = sorted(["pred_boxes", "pred_classes", "pred_keypoint_heatmaps", "pred_keypoints",
                    "pred_masks", "scores"] + ["pred_keypoint_offsets"] * (len(got) == 8))
    return dict(zip(names + ["image_size"], got))  # fmt: skip


def _assert_same(got, ref, x, keypoint_atol=1e-4):
    assert got["image_size"].tolist() == list(x.shape[1:])
    assert set(got) - {"image_size"} == set(ref)
    for k, v in ref.items():
        assert got[k].shape == v.shape, k
    assert torch.allclose(got["pred_boxes"], ref["pred_boxes"], atol=1e-3)
    assert torch.allclose(got["scores"], ref["scores"], atol=1e-4)
    assert torch.equal(got["pred_classes"], ref["pred_classes"])
    assert torch.allclose(got["pred_masks"], ref["pred_masks"], atol=1e-3)
    assert torch.allclose(got["pred_keypoint_heatmaps"], ref["pred_keypoint_heatmaps"], atol=1e-3)
    if keypoint_atol is not None:
        assert torch.allclose(got["pred_keypoints"], ref["pred_keypoints"], atol=keypoint_atol)


def test_rcnn_exports_to_torchscript_and_onnx_with_pytorchs_outputs(
    memorised_rcnn, tmp_path, capsys
):
    """tools/export_model.py on the memorising R-CNN (detectron2's keypoint head): the
    TorchScript file loaded alone in torch, and the ONNX file in ONNX Runtime, give the eager
    model's boxes, scores, masks and heatmaps on every sample image (other sizes and detection
    counts than the traced one) and find the memorised people. TorchScript keeps detectron2's
    keypoint decode (equal keypoints); ONNX decodes with the vectorised codec, whose keypoints
    equal detectron2's wherever the upsampled maximum is near the coarse one: every confident
    keypoint, and the count the tool reports."""
    out_dir, _ = memorised_rcnn
    export_model = _export_tool()
    opts = [*MEMORISE_OPTS, "MODEL.WEIGHTS", str(out_dir / "model_final.pth")]
    cfg = predictor_cfg(out_dir / "model_final.pth")
    cfg.MODEL.DEVICE = "cpu"
    model = DefaultPredictor(cfg).model
    images = rcnn_images(cfg)
    assert len(images) == 4 and len({tuple(x.shape) for x in images}) > 1
    coco = json.loads((SAMPLES / "test_coco.json").read_text())
    for name, kind in (("rcnn.ts", "TorchScript"), ("rcnn.onnx", "ONNX")):
        argv = ["--config-file", str(RECIPE), "--output", str(tmp_path / name), *opts]
        assert export_model.main(argv) == 0
        summary = capsys.readouterr().out.strip().splitlines()[-1]
        assert summary.startswith("export_model: GeneralizedRCNN") and f"({kind}," in summary
        same = total = 0
        for x, image in zip(images, coco["images"]):
            got, ref = _exported_outputs(tmp_path / name, x), _eager_outputs(model, x)
            if kind == "TorchScript":
                _assert_same(got, ref, x)
            else:
                _assert_same(got, ref, x, keypoint_atol=None)
                near = (got["pred_keypoints"] - ref["pred_keypoints"])[..., :2].abs().amax(-1)
                agree = near <= 1e-3
                assert agree[ref["pred_keypoints"][..., 2] >= 0.5].all()
                same, total = same + int(agree.sum()), total + agree.numel()
            people = sum(a["image_id"] == image["id"] for a in coco["annotations"])
            assert int((got["scores"] > 0.5).sum()) >= people - 1
    assert f"keypoints equal to detectron2's decode {same}/{total};" in summary
    assert same >= 0.8 * total


def test_trace_rcnn_gives_an_in_memory_export_checked_against_pytorch():
    """trace_rcnn on a small random R-CNN (no checkpoint, nothing written): the TorchScript
    callable gives the eager outputs on an image of another size than the traced one, rebuilt
    into detectron2's Instances; an ONNX export outside a zero tolerance is refused by name."""
    from detectron2.modeling import build_model

    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    opts = ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
            "TEST.DETECTIONS_PER_IMAGE", "3", "MODEL.RPN.POST_NMS_TOPK_TEST", "50"]  # fmt: skip
    cfg.merge_from_list(opts)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
              for h, w in ((96, 128), (128, 96), (112, 112))]  # fmt: skip
    traced = trace_rcnn(model, images[:2], onnx=False)
    assert traced.max_difference <= 1e-6 and traced.detections == [3, 3]
    with torch.no_grad():
        got = traced.instances(traced.run(images[2]))
        ref = model.inference([{"image": images[2]}], do_postprocess=False)[0]
    assert got.image_size == ref.image_size == (112, 112)
    assert sorted(got.get_fields()) == sorted(ref.get_fields()) and len(got) == 3
    assert torch.equal(got.pred_boxes.tensor, ref.pred_boxes.tensor)
    assert torch.allclose(got.pred_masks, ref.pred_masks, atol=1e-6)
    refused = r"relative to its outputs \(> 0.0\), most in pred_"
    with pytest.raises(ExportCheckError, match=refused):
        trace_rcnn(model, images[:2], onnx=True, tolerance=0.0)


def test_rcnn_with_the_offset_head_exports_with_its_offsets(memorised_rcnn, tmp_path, capsys):
    """KeypointOffsetHead (the memorised weights plus random offset weights, so that the offsets
    move the keypoints) exports to both formats: the files' keypoints equal the eager model's
    on images whose boxes differ in size from the traced one's (the decode's window is computed
    at run time), and an image with no person gives empty outputs, not an error."""
    out_dir, _ = memorised_rcnn
    export_model = _export_tool()
    state = torch.load(out_dir / "model_final.pth", map_location="cpu")
    gen = torch.Generator().manual_seed(0)
    conv = state["model"]["roi_heads.keypoint_head.score_lowres.weight"]
    state["model"]["roi_heads.keypoint_head.offset_lowres.weight"] = 0.02 * torch.randn(
        conv.shape[0], 2 * conv.shape[1], *conv.shape[2:], generator=gen
    )
    state["model"]["roi_heads.keypoint_head.offset_lowres.bias"] = torch.zeros(2 * conv.shape[1])
    weights = tmp_path / "offset.pth"
    torch.save(state, weights)
    head = ["MODEL.ROI_KEYPOINT_HEAD.NAME", "KeypointOffsetHead"]
    cfg = predictor_cfg(weights)
    cfg.merge_from_list([*head, "MODEL.DEVICE", "cpu"])
    model = DefaultPredictor(cfg).model
    assert model.roi_heads.keypoint_head.offset_lowres.weight.abs().sum() > 0  # loaded
    images = rcnn_images(cfg)
    blank = torch.full_like(images[1], 114)
    with torch.no_grad():
        assert len(model.inference([{"image": blank}], do_postprocess=False)[0]) == 0
    for name in ("offset.ts", "offset.onnx"):
        argv = ["--config-file", str(RECIPE), "--output", str(tmp_path / name), *MEMORISE_OPTS,
                *head, "MODEL.WEIGHTS", str(weights)]  # fmt: skip
        assert export_model.main(argv) == 0
        assert "KeypointOffsetHead" in capsys.readouterr().out
        for x in [*images, blank]:
            got, ref = _exported_outputs(tmp_path / name, x), _eager_outputs(model, x)
            assert "pred_keypoint_offsets" in got
            _assert_same(got, ref, x, keypoint_atol=1e-3)
    # A feature the file cannot hold: refused by name, nothing written.
    argv = ["--config-file", str(RECIPE), "--output", str(tmp_path / "tta.onnx"), *MEMORISE_OPTS,
            "TEST.AUG.ENABLED", "True", "MODEL.WEIGHTS", str(weights)]  # fmt: skip
    assert export_model.main(argv) == 2
    assert "TEST.AUG.ENABLED (test-time augmentation) does not export" in capsys.readouterr().err
    assert not (tmp_path / "tta.onnx").exists()
