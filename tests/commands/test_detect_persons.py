"""tools/detect_persons.py with the R-CNN that memorised the COCO sample (the shared session
fixture): a valid COCO detection file within the limits asked, a killed run resumed to the same
file without duplicates, two processes writing the same file as one, and clear errors for an
existing output, masks without a mask head and a folder holding a damaged image."""

import json

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from pycocotools.coco import COCO

from multitask_pose.commands import detect_persons

SAMPLE = "coco_person_sample"


def args_for(out, output, *extra):
    return ["--config-file", str(out / "config.yaml"), "--output", str(output), "--quiet",
            *extra, "MODEL.WEIGHTS", str(out / "model_final.pth")]  # fmt: skip


def test_detection_file_is_valid_within_limits_and_resumes(memorised_rcnn, tmp_path, capsys):
    from multitask_pose.data.image_check import read_image_checked
    from multitask_pose.engine.checkpoint import PosePredictor
    from multitask_pose.engine.person_detection import DetectionItem, run_person_detection
    from pose_topdown.data import load_detection_file

    out, _ = memorised_rcnn
    limits = ["--dataset", SAMPLE, "--topk", "3", "--min-size", "40", "--score-thresh", "0.3"]
    full = tmp_path / "full.json"
    assert detect_persons.main(args_for(out, full, *limits)) == 0
    assert "detect_persons: 4 images" in capsys.readouterr().out
    dets = json.loads(full.read_text())
    record = json.loads((tmp_path / "full.json.meta.json").read_text())  # what made it
    assert record["dataset"] == SAMPLE and record["written_by"] == "tools/detect_persons.py"
    assert record["producer"].startswith("GeneralizedRCNN / ")
    assert record["score_scale"] == "softmax_probability"  # its keypoints: detectron2's scores
    assert record["weights"] == str(out / "model_final.pth")
    COCO(_json_of(SAMPLE)).loadRes(str(full))  # pycocotools accepts it
    per_image = {}
    for d in dets:
        per_image.setdefault(d["image_id"], []).append(d)
        assert d["score"] >= 0.3 and min(d["bbox"][2:]) >= 40 and d["category_id"] == 1
    assert len(dets) >= 8 and max(len(v) for v in per_image.values()) <= 3
    assert all("keypoints" in d for d in dets)  # the keypoint R-CNN's, for keypoint hints
    boxes = load_detection_file(str(full), [d["image_id"] for d in DatasetCatalog.get(SAMPLE)])
    assert sum(len(b) for b, _ in boxes.values()) == len(dets)  # the top-down stage reads it

    # A run killed after two images, resumed: the same file, no image twice.
    cfg = _cfg(out)
    predictor = PosePredictor(cfg)
    items = [DetectionItem(d["image_id"], d["file_name"]) for d in DatasetCatalog.get(SAMPLE)]
    part = tmp_path / "part.json"
    fmt = predictor.input_format
    kw = dict(read_image=lambda f: read_image_checked(f, format=fmt), score_thresh=0.3,
              min_size=40, topk=3, progress=False)  # fmt: skip

    def kill_after_two(n):
        if n == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_person_detection(predictor, items, str(part), on_image=kill_after_two, **kw)
    lines = (tmp_path / "part.json.partial0.jsonl").read_text().splitlines()
    assert len(lines) == 2 and not part.exists()
    with (tmp_path / "part.json.partial0.jsonl").open("a") as f:
        f.write('{"image_id": 3, "detec')  # a line cut by the kill
    stats = run_person_detection(predictor, items, str(part), resume=True, **kw)
    assert stats["resumed"] == 2
    assert json.loads(part.read_text()) == dets
    assert not list(tmp_path.glob("part.json.partial*"))

    # Two CPU processes share the images and write the same file as one process.
    two = tmp_path / "two.json"
    assert detect_persons.main(args_for(out, two, *limits, "--num-gpus", "2")) == 0
    two_dets = json.loads(two.read_text())
    assert [d["image_id"] for d in two_dets] == [d["image_id"] for d in dets]
    for a, b in zip(two_dets, dets):  # one process uses 2 threads, each of two 1: float rounding
        assert np.allclose(a["bbox"], b["bbox"], atol=1e-3) and abs(a["score"] - b["score"]) < 1e-4


def _json_of(name):
    from detectron2.data import MetadataCatalog

    return MetadataCatalog.get(name).json_file


def _cfg(out):
    import multitask_pose

    cfg = multitask_pose.get_multitask_cfg()
    cfg.merge_from_file(str(out / "config.yaml"))
    cfg.merge_from_list(["MODEL.WEIGHTS", str(out / "model_final.pth"),
                         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"])  # fmt: skip
    cfg.freeze()
    return cfg


def test_clear_errors(memorised_rcnn, tmp_path, capsys):
    out, _ = memorised_rcnn
    existing = tmp_path / "dets.json"
    existing.write_text("[]")
    assert detect_persons.main(args_for(out, existing, "--dataset", SAMPLE)) == 2
    assert "--resume" in capsys.readouterr().err
    no_masks = args_for(out, tmp_path / "m.json", "--dataset", SAMPLE, "--masks")
    assert detect_persons.main([*no_masks, "MODEL.MASK_ON", "False"]) == 2
    assert "no mask head" in capsys.readouterr().err
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")  # skipped (tests/engine/test_image_folders)
    assert detect_persons.main(args_for(out, tmp_path / "f.json", "--input", str(folder))) == 2
    assert "a.jpg is empty (0 bytes)" in capsys.readouterr().err
