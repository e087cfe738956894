"""Pseudo-labels from keypoint results: confident keypoints labelled, the rest unlabelled, weak
persons dropped; the tool's output registers and loads; bad results named."""

import json
import subprocess
import sys

import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from multitask_pose.data import register_coco_person
from multitask_pose.data.paths import samples_root
from multitask_pose.data.pseudo_labels import pseudo_label
from multitask_pose.evaluation.results_record import describe_images, write_results_record

GT = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
SCORE_OF_V = {2: 0.95, 1: 0.5, 0: 0.1}  # what a model might give visible / hidden / absent points


def _results():
    """The sample's persons as predictions: keypoint scores by the annotation's visibility."""
    out = []
    for a in GT["annotations"]:
        kp = np.array(a["keypoints"], dtype=np.float64).reshape(17, 3)
        kp[:, 2] = [SCORE_OF_V[int(v)] for v in kp[:, 2]]
        out.append({"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
                    "score": 0.8, "keypoints": kp.reshape(-1).tolist(), "gt": a})  # fmt: skip
    return out


def test_confident_keypoints_become_labels():
    results = _results()
    data, report = pseudo_label(results, GT["images"], 17, kp_thresh=0.9, min_keypoints=4)
    # Independently: the persons with at least 4 visible (v=2) keypoints, those points labelled.
    want = [r["gt"] for r in results if sum(v == 2 for v in r["gt"]["keypoints"][2::3]) >= 4]
    assert 0 < len(want) < len(results) and len(data["annotations"]) == len(want)
    for ann, gt in zip(data["annotations"], want):
        kp, g = np.array(ann["keypoints"]).reshape(17, 3), np.array(gt["keypoints"]).reshape(17, 3)
        visible = g[:, 2] == 2
        np.testing.assert_array_equal(kp[visible], g[visible])
        assert not kp[~visible].any()
        assert ann["num_keypoints"] == visible.sum() and ann["pseudo_score"] == 0.8
        assert ann["area"] == pytest.approx(0.53 * gt["bbox"][2] * gt["bbox"][3])
    assert report["dropped"] == {"too few keypoints": len(results) - len(want)}
    # A box threshold above the detections' score drops everything.
    assert pseudo_label(results, GT["images"], 17, box_thresh=0.9)[1]["persons"] == 0


@pytest.mark.parametrize(
    "change,message",
    [
        ({"image_id": 5}, r"result 0 \(image 5\): not an image of the set"),
        ({"keypoints": [0.0] * 42}, r"42 keypoint numbers, expected 51"),
        ({"bbox": [1, 2, 3]}, r"needs a 4-number bbox"),
    ],
)
def test_bad_results_are_named(change, message):
    results = [{**_results()[0], **change}]
    with pytest.raises(ValueError, match=message):
        pseudo_label(results, GT["images"], 17)


def test_tool_writes_a_dataset_that_loads(tmp_path):
    results = [{k: v for k, v in r.items() if k != "gt"} for r in _results()]
    src = tmp_path / "results.json"
    src.write_text(json.dumps(results))
    # a top-down model's results: the scale of the report's threshold, which the tool checks
    write_results_record(src, dataset="coco_person_sample", producer="TopDownPoseEstimator / X",
                         score_scale="heatmap_peak")  # fmt: skip
    out = tmp_path / "pseudo.json"
    tool = samples_root().parents[1] / "tools" / "pseudo_label.py"
    run = subprocess.run([sys.executable, str(tool), "--results", str(src), "--dataset",
                          "coco_person_sample", "--output", str(out)], capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("pseudo_label: ") and "persons" in run.stdout
    register_coco_person("test_pseudo_labels", str(out), str(samples_root() / "coco"))
    try:
        dicts = DatasetCatalog.get("test_pseudo_labels")
        assert len(dicts) == 4 and sum(len(d["annotations"]) for d in dicts) > 0
    finally:
        DatasetCatalog.remove("test_pseudo_labels")
    bad = subprocess.run(
        [
            sys.executable,
            str(tool),
            "--results",
            str(src),
            "--dataset",
            "no_such_set",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no_such_set" in bad.stderr


def test_tool_on_a_folder_checks_the_results_were_made_on_it(tmp_path, capsys):
    """--images (detect_persons' list of a folder's images): results whose record names that
    folder are labelled; results made on another folder are refused in one line, exit 2."""
    from multitask_pose.commands import pseudo_label as tool

    folder = samples_root() / "coco"
    ids = {im["id"]: i for i, im in enumerate(GT["images"])}  # a folder's ids: file positions
    listing = tmp_path / "dets.json.images.json"
    listing.write_text(json.dumps([{"id": ids[im["id"]], "file_name": str(folder / im["file_name"])}
                                   for im in GT["images"]]))  # fmt: skip
    results = [{k: v for k, v in r.items() if k != "gt"} | {"image_id": ids[r["image_id"]]}
               for r in _results()]  # fmt: skip
    src = tmp_path / "results.json"
    src.write_text(json.dumps(results))
    argv = ["--results", str(src), "--images", str(listing), "--output", str(tmp_path / "p.json")]

    def record(images_in):
        write_results_record(src, dataset=describe_images([images_in]), score_scale="heatmap_peak",
                             producer="TopDownPoseEstimator / X")  # fmt: skip

    record(folder)
    assert tool.main(argv) == 0
    assert "persons" in capsys.readouterr().out
    record(tmp_path)  # made on another folder
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"images in {tmp_path}" in err and str(folder) in err
