"""Damaged inputs: image files that are empty, cut short or not images at all, detection files
with non-finite numbers, empty arrays given to the predictors. Each is found and named; the demo
refuses bad files before any work unless DATALOADER.SKIP_DAMAGED_IMAGES skips them; training
refuses a dataset with damaged images before its first iteration unless told to leave them out."""

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog

import multitask_pose  # noqa: F401
from multitask_pose.config import get_multitask_cfg
from multitask_pose.data.datasets import register_coco_person
from multitask_pose.data.image_check import (
    DamagedImageError,
    image_problem,
    read_image_checked,
    screen_dataset_images,
)
from multitask_pose.data.keypoints import COCO_PERSON
from multitask_pose.engine import MultiTaskTrainer, PosePredictor

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "datasets" / "samples" / "coco"
RECIPE = ROOT / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth.yaml"
GOOD = SAMPLE / "000000000785.jpg"


def cut(src, dst, fraction):
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


@pytest.fixture
def bad_files(tmp_path):
    """{kind: path} of damaged files next to two good ones."""
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(GOOD, folder / "good1.jpg")
    shutil.copy(SAMPLE / "000000040083.jpg", folder / "good2.jpg")
    png = folder / "good.png"
    cv2.imwrite(str(png), cv2.imread(str(GOOD)))
    bad = {
        "truncated_jpeg": cut(GOOD, folder / "truncated.jpg", 1 / 3),
        "empty": folder / "empty.jpg",
        "not_an_image": folder / "page.jpg",
        "truncated_png": cut(png, folder / "truncated.png", 0.5),
    }
    bad["empty"].write_bytes(b"")
    bad["not_an_image"].write_text("<html><body>404 Not Found</body></html>")
    return folder, bad


def test_structural_check_names_each_damage(bad_files, tmp_path):
    folder, bad = bad_files
    assert image_problem(folder / "good1.jpg") is None
    assert image_problem(folder / "good.png") is None
    renamed = tmp_path / "png_named.jpg"  # decoders read the content: not a problem
    shutil.copy(folder / "good.png", renamed)
    assert image_problem(renamed) is None
    assert "JPEG cut short" in image_problem(bad["truncated_jpeg"])
    assert "empty" in image_problem(bad["empty"])
    assert "not an image" in image_problem(bad["not_an_image"])
    assert "PNG cut short" in image_problem(bad["truncated_png"])
    assert "cannot be read" in image_problem(tmp_path / "missing.jpg")


def test_full_decode_refuses_what_opencv_fills_with_grey(bad_files):
    folder, bad = bad_files
    # The reason for the check: OpenCV decodes the cut JPEG into a whole image.
    assert cv2.imread(str(bad["truncated_jpeg"])) is not None
    for kind, path in bad.items():
        with pytest.raises(DamagedImageError, match=str(path)):
            read_image_checked(path)
    image = read_image_checked(folder / "good1.jpg", format="BGR")
    np.testing.assert_array_equal(image, cv2.imread(str(folder / "good1.jpg")))


def test_demo_refuses_damaged_files_or_skips_them_with_the_key(bad_files, memorised_rcnn,
                                                               tmp_path, capfd):  # fmt: skip
    folder, bad = bad_files
    run_dir, _ = memorised_rcnn
    out = tmp_path / "demo"
    # tools/demo.py's main in this process (its command line is tested in tests/engine).
    from multitask_pose.commands import demo

    args = ["--config-file", str(run_dir / "config.yaml"), "--input", str(folder), "--output",
            str(out), "MODEL.WEIGHTS", str(run_dir / "model_final.pth")]  # fmt: skip
    assert demo.main(args) == 2  # before any work, naming the first (sorted) and the key
    stderr = capfd.readouterr().err
    assert f"{bad['empty']} is empty (0 bytes) (and 3 more damaged images)" in stderr
    assert "DATALOADER.SKIP_DAMAGED_IMAGES True" in stderr and not out.exists()
    status = demo.main([*args, "DATALOADER.SKIP_DAMAGED_IMAGES", "True"])
    stdout, stderr = capfd.readouterr()
    assert status == 0, stderr[-3000:]
    for path in bad.values():
        assert f"skipped {path}" in stderr
    assert stdout.strip().endswith("; skipped 4 damaged images")
    drawn = sorted(p.name for p in out.glob("*_pred.jpg"))
    assert drawn == sorted(["good_pred.jpg", "good1_pred.jpg", "good2_pred.jpg"])
    results = json.loads((out / "results.json").read_text())
    assert {Path(r["file_name"]).name for r in results} <= {"good.png", "good1.jpg", "good2.jpg"}


def damaged_copy_of_the_sample(tmp_path, name):
    """The COCO sample registered under ``name`` from a copy in which one image is cut short."""
    root = tmp_path / "sample"
    shutil.copytree(SAMPLE, root)
    victim = root / "000000196141.jpg"
    cut(SAMPLE / victim.name, victim, 0.4)
    if name not in DatasetCatalog.list():
        register_coco_person(name, str(root / "test_coco.json"), str(root), spec=COCO_PERSON)
    return victim


def sample_cfg(name, *opts):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)",
                         "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
                         "OUTPUT_DIR", "", *opts])  # fmt: skip
    return cfg


def test_training_refuses_damaged_images_before_the_first_iteration(tmp_path):
    victim = damaged_copy_of_the_sample(tmp_path, "damaged_sample_train")
    cfg = sample_cfg("damaged_sample_train", "OUTPUT_DIR", str(tmp_path / "out"))
    with pytest.raises(DamagedImageError) as e:
        MultiTaskTrainer(cfg)
    msg = str(e.value)
    assert "DATASETS.TRAIN dataset 'damaged_sample_train'" in msg and "1 of 4" in msg
    assert str(victim) in msg and "SKIP_DAMAGED_IMAGES" in msg
    from pose_topdown import get_topdown_cfg
    from pose_topdown.engine import TopDownTrainer

    td = get_topdown_cfg()
    td.merge_from_file(str(ROOT / "projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml"))
    td.merge_from_list(["DATASETS.TRAIN", "('damaged_sample_train',)", "DATALOADER.NUM_WORKERS",
                        "0", "OUTPUT_DIR", str(tmp_path / "td")])  # fmt: skip
    with pytest.raises(DamagedImageError, match=str(victim)):
        TopDownTrainer(td)
    # The evaluation loader checks too.
    with pytest.raises(DamagedImageError, match="test dataset 'damaged_sample_train'"):
        MultiTaskTrainer.build_test_loader(cfg, "damaged_sample_train")


def test_skip_option_leaves_damaged_images_out(tmp_path, caplog):
    victim = damaged_copy_of_the_sample(tmp_path, "damaged_sample_skip")
    cfg = sample_cfg("damaged_sample_skip", "DATALOADER.SKIP_DAMAGED_IMAGES", "True")
    with caplog.at_level(logging.WARNING):
        loader = MultiTaskTrainer.build_train_loader(cfg)
    assert any(str(victim) in r.getMessage() and "leaving out 1 of 4" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    seen = set()
    for _, batch in zip(range(8), loader):
        seen |= {Path(d["file_name"]).name for d in batch}
    assert len(seen) == 3 and victim.name not in seen


def test_check_results_are_cached_per_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MTP_DATASETS_CACHE", str(tmp_path / "cache" / "datasets"))
    good = tmp_path / "a.jpg"
    shutil.copy(GOOD, good)
    dicts = [{"file_name": str(good)}]
    assert screen_dataset_images(dicts, "t") is dicts
    cache = json.loads((tmp_path / "cache" / "image_checks.json").read_text())
    assert cache[str(good)][2] is None
    # A cached verdict is reused while size and modification time are unchanged ...
    calls = []
    monkeypatch.setattr("multitask_pose.data.image_check.image_problem",
                        lambda p: calls.append(p) or None)  # fmt: skip
    screen_dataset_images(dicts, "t")
    assert calls == []
    monkeypatch.undo()
    monkeypatch.setenv("MTP_DATASETS_CACHE", str(tmp_path / "cache" / "datasets"))
    # ... and the file is checked again once it changes.
    cut(GOOD, good, 0.5)
    with pytest.raises(DamagedImageError, match="JPEG cut short"):
        screen_dataset_images(dicts, "t")


def test_detection_file_with_non_finite_numbers_is_an_error(tmp_path):
    from pose_topdown.data.boxes import DetectionFileError, load_detection_file

    good = {"image_id": 785, "category_id": 1, "bbox": [10, 10, 50, 100], "score": 0.9}
    bad_entries = [dict(good, score=float("nan")), dict(good, bbox=[10, 10, float("inf"), 5]),
                   dict(good, score="high")]  # fmt: skip
    for n, bad in enumerate(bad_entries):
        path = tmp_path / f"dets{n}.json"
        path.write_text(json.dumps([good, bad]))  # json writes NaN / Infinity tokens
        with pytest.raises(DetectionFileError, match=f"{path}: entry 1 .*not a finite number"):
            load_detection_file(str(path), [785])


def test_predictors_refuse_empty_arrays():
    from pose_topdown import get_topdown_cfg
    from pose_topdown.predictor import TopDownPredictor

    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    td = get_topdown_cfg()
    td.merge_from_file(str(ROOT / "projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml"))
    for c in (cfg, td):  # MODEL.WEIGHTS "": random, which the predictors refuse unless allowed
        c.MODEL.ALLOW_RANDOM_WEIGHTS = True
    for predictor in (PosePredictor(cfg), TopDownPredictor(td)):
        with pytest.raises(ValueError, match="empty image of shape"):
            predictor(np.zeros((0, 40, 3), np.uint8))
        with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) array"):
            predictor(np.zeros((40, 40), np.uint8))
