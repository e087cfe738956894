"""Results made for another dataset are refused by every reader told which dataset they are on
(tools/analyze_keypoints.py, tools/select_hard_examples.py, tools/pseudo_label.py --dataset, the
top-down stage's TEST.TOPDOWN.DET_FILE / HINT.FILE), with the results record
(multitask_pose/evaluation/results_record.py) and, record or not, the boxes against the dataset's
image sizes. The case found by a user: results written by the evaluator on one SynthPeople split
analysed against another whose image ids overlap gave a report with AP 0.000 and exit 0."""

import copy
import json
import logging
import shutil

import pytest
from coco_testing import gt_as_predictions  # tests/coco_testing.py
from detectron2.data import DatasetCatalog

import multitask_pose  # noqa: F401  (registers the datasets)
from conftest import ROOT
from multitask_pose.commands import analyze_keypoints, pseudo_label, select_hard_examples
from multitask_pose.evaluation import PoseCOCOEvaluator
from multitask_pose.evaluation.results_record import (
    BOX_TOLERANCE,
    ResultsDatasetError,
    check_boxes_in_images,
    check_record_dataset,
    describe_images,
    record_path,
    write_results_record,
)

VAL, TRAIN = "synth_people_mini_val", "synth_people_mini_train"
RECORD_LOGGER = "multitask_pose.evaluation.results_record"


@pytest.fixture(scope="module")
def val_results(synth_mini, tmp_path_factory):
    """The evaluator's coco_instances_results.json (and its record) on the mini val split: its
    persons with their keypoints moved by about a pixel, as a model's predictions."""
    dicts = copy.deepcopy(DatasetCatalog.get(VAL))
    for d in dicts:  # masks are not evaluated here; gt_as_predictions rasterises polygons
        for a in d["annotations"]:
            a["segmentation"] = [[0, 0, 1, 0, 1, 1]]
    out = tmp_path_factory.mktemp("val_results")
    evaluator = PoseCOCOEvaluator(VAL, tasks=("keypoints",), distributed=False,
                                  output_dir=str(out))  # fmt: skip
    evaluator.reset()
    for inputs, outputs in gt_as_predictions([d for d in dicts if d["annotations"]], kp_noise=1.0):
        outputs["instances"].remove("pred_masks")
        evaluator.process([inputs], [outputs])
    ap = evaluator.evaluate()["keypoints"]["AP"]
    assert ap > 50  # the predictions are good on their own split
    path = out / "coco_instances_results.json"
    assert json.loads(open(record_path(path)).read())["dataset"] == VAL
    return path


def test_the_splits_share_image_ids():  # the premise: ids alone cannot tell them apart
    val = {d["image_id"] for d in DatasetCatalog.get(VAL)}
    assert val <= {d["image_id"] for d in DatasetCatalog.get(TRAIN)}


def test_results_of_another_split_are_refused_naming_both(val_results, tmp_path, capsys):
    both = f"holds results on dataset '{VAL}'"
    runs = {
        "analyze_keypoints": lambda: analyze_keypoints.main(
            ["--dataset", TRAIN, "--results", str(val_results), "--output",
             str(tmp_path / "analysis"), "--quiet"]),  # fmt: skip
        "select_hard_examples": lambda: select_hard_examples.main(
            ["--dataset", TRAIN, "--results", str(val_results), "--output",
             str(tmp_path / "hard.json")]),  # fmt: skip
        "pseudo_label": lambda: pseudo_label.main(
            ["--dataset", TRAIN, "--results", str(val_results), "--output",
             str(tmp_path / "pl.json"), "--kp-thresh-scale", "softmax_probability"]),  # fmt: skip
    }
    for tool, run in runs.items():
        assert run() == 2, tool
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"{tool}: "), err
        assert both in err[0] and f"not on '{TRAIN}'" in err[0], err
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_same_split_works_and_a_file_without_record_warns(val_results, tmp_path, capsys,
                                                              caplog):  # fmt: skip
    assert analyze_keypoints.main(["--dataset", VAL, "--results", str(val_results), "--output",
                                   str(tmp_path / "a"), "--quiet"]) == 0  # fmt: skip
    ap = float(capsys.readouterr().out.split("AP ")[1].split(";")[0])
    assert ap > 0.5
    bare = tmp_path / "bare.json"  # an older file: no record
    shutil.copy(val_results, bare)
    with caplog.at_level(logging.WARNING, logger=RECORD_LOGGER):
        assert select_hard_examples.main(["--dataset", VAL, "--results", str(bare), "--output",
                                          str(tmp_path / "hard.json")]) == 0  # fmt: skip
    assert "has no record of what made it" in caplog.text
    assert "select_hard_examples: " in capsys.readouterr().out


def test_records_of_folder_images(tmp_path, monkeypatch):
    """A record naming a folder's images (their ids: the files' positions) is refused for a
    registered dataset, and a dataset's record for the folder; the same folder given from
    another directory, or files in it, pass; another folder is refused."""
    monkeypatch.chdir(tmp_path)
    bare = tmp_path / "bare.json"
    bare.write_text("[]")
    write_results_record(bare, dataset=describe_images(["photos/"]), producer="x",
                         score_scale=None)  # fmt: skip
    record = json.loads(open(record_path(bare)).read())
    assert record["dataset"] == f"images in {tmp_path / 'photos'}"
    with pytest.raises(ResultsDatasetError, match=f"holds results on images in .*photos .*, not"
                       f" on dataset '{VAL}'"):  # fmt: skip
        check_record_dataset(record, VAL, bare)
    monkeypatch.chdir(ROOT)
    check_record_dataset(record, describe_images([tmp_path / "photos", tmp_path / "photos/a.jpg"]),
                         bare)  # fmt: skip
    with pytest.raises(ResultsDatasetError, match="not on images in .*photos2"):
        check_record_dataset(record, describe_images([tmp_path / "photos2/a.jpg"]), bare)
    with pytest.raises(ResultsDatasetError, match=f"holds results on dataset '{VAL}'"):
        check_record_dataset({"dataset": VAL}, describe_images(["photos"]), bare)
    check_record_dataset({"dataset": "video walk.mp4"}, VAL, bare)  # no evidence either way


def _beyond(entries, sizes, tol):
    """How many boxes reach beyond their image by more than tol of its side + 2 px (a plain
    loop: the reference for the vectorised check)."""
    n = 0
    for e in entries:
        x, y, w, h = e["bbox"]
        H, W = sizes[e["image_id"]]
        mx, my = tol * W + 2, tol * H + 2
        n += x < -mx or y < -my or x + w > W + mx or y + h > H + my
    return n


def test_without_record_boxes_beyond_the_images_are_refused(val_results, tmp_path, capsys):
    bare = tmp_path / "bare.json"
    shutil.copy(val_results, bare)
    entries = json.loads(bare.read_text())
    train_sizes = {d["image_id"]: (d["height"], d["width"]) for d in DatasetCatalog.get(TRAIN)}
    expected = _beyond(entries, train_sizes, BOX_TOLERANCE)
    assert expected >= 10  # the splits' images differ in shape at the same ids
    assert analyze_keypoints.main(["--dataset", TRAIN, "--results", str(bare), "--output",
                                   str(tmp_path / "a"), "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert f"{expected} of {len(entries)} boxes reach beyond their image of dataset" in err
    assert f"'{TRAIN}'" in err
    for tool in (select_hard_examples, pseudo_label):  # the other readers alike
        extra = ["--kp-thresh-scale", "softmax_probability"] if tool is pseudo_label else []
        assert tool.main(["--dataset", TRAIN, "--results", str(bare), "--output",
                          str(tmp_path / "o.json"), *extra]) == 2  # fmt: skip
        assert f"{expected} of {len(entries)} boxes reach beyond" in capsys.readouterr().err
    # On its own split every box is inside (the evaluator writes them as predicted).
    val_sizes = {d["image_id"]: (d["height"], d["width"]) for d in DatasetCatalog.get(VAL)}
    check_boxes_in_images(entries, val_sizes, VAL, bare)
    assert _beyond(entries, val_sizes, 0.0) == 0


@pytest.mark.parametrize(
    "box, refused",
    [
        ([0, 0, 100, 50], False),  # the whole 100 x 50 image
        ([-11, 0, 50, 50], False),  # 10% of the width + 2 px beyond: the tolerance
        ([-13, 0, 50, 50], True),
        ([50, 0, 62, 50], False),
        ([50, 0, 63, 50], True),
        ([0, 40, 10, 17], False),
        ([0, 40, 10, 18], True),
    ],
)
def test_box_tolerance(box, refused):
    entries = [{"image_id": 7, "bbox": box}, {"image_id": 8, "bbox": [1e6, 0, 1, 1]}]
    check = lambda: check_boxes_in_images(entries, {7: (50, 100)}, "d", "r.json")  # noqa: E731
    if refused:
        with pytest.raises(ResultsDatasetError, match=r"r.json: 1 of 1 boxes .* 100 x 50 image"):
            check()
    else:
        check()  # (image 8 has no known size: not checked)


def test_a_topdown_detection_file_of_another_split_is_refused(val_results):
    from pose_topdown import get_topdown_cfg
    from pose_topdown.data import TopDownTestMapper
    from pose_topdown.data.boxes import DetectionFileError

    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(ROOT / "projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml"))
    cfg.merge_from_list(["TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE",
                         str(val_results)])  # fmt: skip
    mapper = TopDownTestMapper(cfg, VAL)  # its own split: loads
    n = sum(len(v[1]) for v in mapper.detections.values())
    assert n == len(json.loads(val_results.read_text()))
    with pytest.raises(DetectionFileError, match=f"TEST.TOPDOWN.DET_FILE: .*'{VAL}'.*'{TRAIN}'"):
        TopDownTestMapper(cfg, TRAIN)


def test_two_names_of_one_annotation_file_are_one_dataset(val_results, tmp_path):
    from detectron2.data import MetadataCatalog

    from multitask_pose.data.datasets import register_coco_person

    meta = MetadataCatalog.get(VAL)
    alias = "synth_people_mini_val_again"
    if alias not in DatasetCatalog.list():
        register_coco_person(alias, meta.json_file, meta.image_root)
    record = json.loads(open(record_path(val_results)).read())
    check_record_dataset(record, alias, val_results)
    with pytest.raises(ResultsDatasetError):
        check_record_dataset(record, TRAIN, val_results)
