"""A photo folder -> person boxes -> top-down skeletons, as a user runs it from any directory:
tools/detect_persons.py over the folder, then tools/demo.py --topdown on its file (BOX_SOURCE
"file"), or with the detector in the loop; a box file made on other images is refused in one
line. Wiring tests: small random checkpoints of the CPU recipes (full state dicts, what trained
checkpoints hold) on two COCO sample photos and a generated image."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from coco_testing import rcnn_sample_cfg, topdown_sample_cfg
from detectron2.modeling import build_model

from conftest import ROOT
from multitask_pose.evaluation.results_record import record_path, write_results_record

TOOLS = ROOT / "tools"
TD_CONFIGS = ROOT / "projects/TopDown/configs/Synthetic"
RCNN_CONFIG = ROOT / "configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml"
SAMPLES = ROOT / "datasets/samples/coco"
# every box of the file becomes a pose: no score floor, no duplicate removal
ALL_BOXES = ["TEST.TOPDOWN.IOU_NMS_THRESH", "1.0", "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0"]


def run(cwd, tool, *args):
    """A tool by its absolute path from ``cwd``: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, str(TOOLS / tool), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def one_line(err, tool):
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{tool}: "), err[-3000:]
    return last


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Checkpoints, a photo folder (two COCO photos, a generated image, a note) and two working
    directories elsewhere."""
    tmp = tmp_path_factory.mktemp("photos")
    torch.manual_seed(0)
    torch.save({"model": build_model(rcnn_sample_cfg()).state_dict()}, tmp / "rcnn.pth")
    torch.save({"model": build_model(topdown_sample_cfg()).state_dict()}, tmp / "hrnet.pth")
    photos = tmp / "photos"
    photos.mkdir()
    for name in ("000000000785.jpg", "000000196141.jpg"):
        shutil.copy(SAMPLES / name, photos / name)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photos / "generated.png"), rng.integers(0, 255, (240, 320, 3), np.uint8))
    (photos / "notes.txt").write_text("not an image")
    for d in ("a", "b"):
        (tmp / d).mkdir()
    return tmp


def detect(setup, cwd, folder, output, *opts):
    code, out, err = run(cwd, "detect_persons.py", "--config-file", RCNN_CONFIG, "--input",
                         folder, "--output", output, "--topk", "3", "--quiet",
                         "MODEL.WEIGHTS", setup / "rcnn.pth", *opts)  # fmt: skip
    assert code == 0, err[-3000:]
    return out


def demo_topdown(setup, cwd, inputs, output, *opts, config="hrnet_w18_small_synth.yaml",
                 dataset=()):  # fmt: skip
    return run(cwd, "demo.py", "--topdown", "--config-file", TD_CONFIGS / config, "--input",
               *inputs, "--output", output, "--confidence-threshold", "0", *dataset,
               "MODEL.WEIGHTS", setup / "hrnet.pth", *ALL_BOXES, *opts)  # fmt: skip


def poses_by_file(results):
    by = {}
    for r in results:
        by.setdefault(r["file_name"].rsplit("/", 1)[-1], []).append(r)
    return by


def boxes_of(rows):
    return sorted(tuple(round(v, 2) for v in r["bbox"]) for r in rows)


def test_detect_persons_then_demo_topdown_from_other_directories(setup):
    """detect_persons run in one directory with a relative --input, demo --topdown in another
    with the folder's absolute path (and, again, with its files listed in another order): one
    pose per box of the file, on the boxes of the file, for every image."""
    dets = setup / "a" / "dets.json"
    detect(setup, setup / "a", "../photos", "dets.json")
    record = json.loads(open(record_path(dets)).read())
    assert record["dataset"] == f"images in {setup / 'photos'}"
    file_rows = json.loads(dets.read_text())
    names = {e["id"]: e["file_name"].rsplit("/", 1)[-1]
             for e in json.loads((setup / "a" / "dets.json.images.json").read_text())}  # fmt: skip
    assert sorted(names.values()) == ["000000000785.jpg", "000000196141.jpg", "generated.png"]
    expected = {}
    for r in file_rows:
        expected.setdefault(names[r["image_id"]], []).append(r)
    assert sum(map(len, expected.values())) == len(file_rows) > 0
    photos = setup / "photos"
    in_order = [photos]
    reversed_files = sorted((p for p in photos.iterdir() if p.suffix != ".txt"), reverse=True)
    for n, inputs in enumerate((in_order, reversed_files)):
        out = setup / "b" / f"out{n}"
        code, stdout, err = demo_topdown(setup, setup / "b", inputs, out, "TEST.TOPDOWN.BOX_SOURCE",
                                         "file", "TEST.TOPDOWN.DET_FILE", dets)  # fmt: skip
        assert code == 0, err[-3000:]
        assert f"demo: 3 images, {len(file_rows)} persons" in stdout
        got = poses_by_file(json.loads((out / "results.json").read_text()))
        assert set(got) == set(expected)
        for name, rows in expected.items():
            assert boxes_of(got[name]) == boxes_of(rows), name
            assert all(len(r["keypoints"]) == 17 * 3 for r in got[name])
        assert len(list(out.glob("*_pred.jpg"))) == 3
        written = json.loads(open(record_path(out / "results.json")).read())["dataset"]
        assert written == "images in " + ":".join(map(str, inputs))  # absolute, from anywhere


@pytest.mark.slow  # three demo runs in subprocesses, about 30 s: kept out of `make test`
def test_a_box_file_of_other_images_is_refused(setup):
    """A file made on another folder, or on a registered dataset, is refused for the photos in
    one line naming both (exit 2); so is the photos' file for a registered dataset."""
    other = setup / "other"
    other.mkdir(exist_ok=True)
    shutil.copy(SAMPLES / "000000040083.jpg", other / "000000040083.jpg")
    detect(setup, setup / "a", other, "other.json")
    photos = setup / "photos"
    code, _, err = demo_topdown(setup, setup / "b", [photos], setup / "b" / "refused",
                                "TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE",
                                setup / "a" / "other.json")  # fmt: skip
    assert code == 2
    assert one_line(err, "demo") == (
        f"demo: TEST.TOPDOWN.DET_FILE: {setup / 'a' / 'other.json'} holds results on images in"
        f" {other} (its record other.json.meta.json says so), not on images in {photos}: give"
        f" results made on images in {photos}"
    )
    sample = setup / "sample_dets.json"
    shutil.copy(SAMPLES / "test_coco_det_AP_H_56.json", sample)
    write_results_record(sample, dataset="coco_person_sample", producer="x", score_scale=None)
    code, _, err = demo_topdown(setup, setup / "b", [photos], setup / "b" / "refused",
                                "TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE",
                                sample)  # fmt: skip
    assert code == 2
    assert "holds results on dataset 'coco_person_sample' (its record" in one_line(err, "demo")
    write_results_record(sample, dataset=f"images in {photos}", producer="x", score_scale=None)
    code, _, err = demo_topdown(setup, setup / "b", [SAMPLES], setup / "b" / "refused",
                                "TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE",
                                sample, dataset=("--dataset", "coco_person_sample"))  # fmt: skip
    assert code == 2, err[-3000:]
    assert f"holds results on images in {photos} (its record" in one_line(err, "demo")
    assert not (setup / "b" / "refused").exists()


def test_a_repository_path_in_a_config_works_from_any_directory(setup):
    """The shipped detection file of the COCO sample named by its repository path, from a
    directory that has no such file: its boxes are found (the repository root)."""
    code, out, err = demo_topdown(setup, setup / "b", [SAMPLES], setup / "b" / "repo_path",
                                  "TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE",
                                  "datasets/samples/coco/test_coco_det_AP_H_56.json",
                                  dataset=("--dataset", "coco_person_sample"))  # fmt: skip
    assert code == 0, err[-3000:]
    n = len(json.loads((SAMPLES / "test_coco_det_AP_H_56.json").read_text()))
    assert f"demo: 4 images, {n} persons" in out


@pytest.mark.slow  # detect_persons and two demo runs in subprocesses, about 30 s
def test_the_detector_in_the_loop_from_another_directory(setup):
    """hrnet_w18_small_synth_rcnn_boxes.yaml names its detector's config by a repository path:
    from another directory it is found; a missing detector checkpoint is one line naming
    TEST.TOPDOWN.DETECTOR_WEIGHTS and what to pass; given (relative to the current directory),
    the poses are on the boxes detect_persons writes with the same detector."""
    config = "hrnet_w18_small_synth_rcnn_boxes.yaml"
    code, _, err = demo_topdown(setup, setup / "b", [setup / "photos"], setup / "b" / "loop",
                                config=config)  # fmt: skip
    assert code == 2
    assert one_line(err, "demo") == (
        "demo: TEST.TOPDOWN.DETECTOR_WEIGHTS output/main_job/train/model_final.pth: no such file"
        f" (looked in {setup / 'b'} and in the repository {ROOT}); pass"
        " TEST.TOPDOWN.DETECTOR_WEIGHTS <trained checkpoint>"
    )
    shutil.copy(setup / "rcnn.pth", setup / "b" / "detector.pth")
    code, out, err = demo_topdown(setup, setup / "b", [setup / "photos"], setup / "b" / "loop",
                                  "TEST.TOPDOWN.DETECTOR_WEIGHTS", "detector.pth",
                                  "TEST.TOPDOWN.DET_TOPK", "3", config=config)  # fmt: skip
    assert code == 0, err[-3000:]
    got = poses_by_file(json.loads((setup / "b" / "loop" / "results.json").read_text()))
    # the same detector's boxes from detect_persons (its score floor: the detector config's)
    detect(setup, setup / "a", setup / "photos", "loop_dets.json")
    rows = json.loads((setup / "a" / "loop_dets.json").read_text())
    names = {e["id"]: e["file_name"].rsplit("/", 1)[-1]
             for e in json.loads((setup / "a" / "loop_dets.json.images.json").read_text())}
    expected = {}
    for r in rows:
        expected.setdefault(names[r["image_id"]], []).append(r)
    assert set(got) == set(expected) and len(rows) > 0
    for name in expected:
        assert boxes_of(got[name]) == boxes_of(expected[name]), name
