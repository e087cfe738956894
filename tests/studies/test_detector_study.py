"""The detector study (multitask_pose/studies/detector_study.py, tools/detector_study.py): box
AP/AR of a detection file against an independent count, its argument checks, its table, and (slow)
a whole two-iteration study whose cells are read from their files and whose second run trains,
detects and evaluates nothing."""

import json
import shutil

import pytest
from detectron2.data import DatasetCatalog

from conftest import ROOT
from multitask_pose.engine.cli import ConfigError
from multitask_pose.studies import detector_study, topdown_methods

SAMPLE = "coco_person_sample"


def gt_detections():
    """Every non-crowd annotated person of the sample as a detection (COCO xywh, score 1)."""
    from detectron2.structures import BoxMode

    return [
        {"image_id": r["image_id"], "category_id": 1, "score": 1.0,
         "bbox": BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYWH_ABS)}
        for r in DatasetCatalog.get(SAMPLE) for a in r["annotations"] if not a.get("iscrowd", 0)
    ]  # fmt: skip


def test_box_ap_and_ar_against_a_count(tmp_path):
    """Ground-truth boxes as detections: AP and AR@100 are 100; half of them: AR is the recalled
    fraction (every kept box matches at every IoU threshold)."""
    dets = gt_detections()
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    ap, ar = detector_study.box_ap_ar(path, SAMPLE)
    assert ap == pytest.approx(100.0) and ar == pytest.approx(100.0)
    # keep every second box: AR@100 averages recall over the IoU thresholds and over the images'
    # persons pooled, so it is the fraction kept
    kept = dets[::2]
    path.write_text(json.dumps(kept))
    ap, ar = detector_study.box_ap_ar(path, SAMPLE)
    assert ar == pytest.approx(100.0 * len(kept) / len(dets), abs=0.01)
    assert ap < 100.0
    path.write_text("[]")
    assert detector_study.box_ap_ar(path, SAMPLE) == (0.0, 0.0)


def test_argument_errors(tmp_path, capsys):
    def error(*argv):
        with pytest.raises(SystemExit):
            detector_study.parse_args(list(argv))
        return capsys.readouterr().err

    assert "--topdown" in error()
    assert "no config.yaml" in error("--topdown", str(tmp_path))
    (tmp_path / "config.yaml").write_text("")
    assert "no model_final.pth" in error("--topdown", str(tmp_path))
    (tmp_path / "model_final.pth").write_text("")
    assert "KEY VALUE pairs" in error("--topdown", str(tmp_path), "--", "SEED")
    with pytest.raises(ConfigError, match="no such config"):
        detector_study.main(["--topdown", str(tmp_path), "--configs", str(tmp_path / "x.yaml")])


def test_table_cells():
    def r(box, kp, train=2.0):
        return {"box_a": box, "ar_a": box + 5, "kp_a": kp, "train_min": train, "infer_ms": 40.0}

    gt = {"box_a": 100.0, "ar_a": 100.0, "kp_a": 60.0}
    lines = detector_study.table([("faster", [r(30.0, 40.0), r(32.0, 42.0, 4.0)])], gt, ["a"],
                                 "note").splitlines()  # fmt: skip
    assert lines[:4] == [
        "note", "",
        "| detector | box AP a | box AR@100 a | top-down kp AP a | train min | infer ms/img |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    assert lines[4] == (
        "| faster | 0.310 (0.300, 0.320) | 0.360 (0.350, 0.370) | 0.410 (0.400, 0.420) | 3.0 | 40 |"
    )
    assert lines[5] == "| ground-truth boxes | 1.000 | 1.000 | 0.600 | - | - |"


@pytest.mark.slow
def test_detector_study_end_to_end(tmp_path, capsys):
    """Two detectors and the top-down model (trained by the top-down study's runner) at two
    iterations each on the COCO sample (about 2 minutes alone)."""
    tiny = ["DATASETS.TRAIN", f"('{SAMPLE}',)", "DATASETS.TEST", f"('{SAMPLE}',)",
            "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0"]  # fmt: skip
    topdown_methods.main(["--output", str(tmp_path / "td"), "--seeds", "1", "--max-iter", "2",
                "--no-detector", "--no-posefix", "--ensemble", "--no-hintpose-ensemble",
                "--models", "hrnet",
                "--datasets", SAMPLE, "--", *tiny])  # fmt: skip
    td = tmp_path / "td" / "hrnet_w18_small_synth_basic" / "seed1"
    det = ROOT / "configs" / "Synthetic" / "detectors"
    argv = ["--output", str(tmp_path / "ds"), "--seeds", "1", "--max-iter", "2",
            "--record", str(tmp_path / "record"), "--datasets", SAMPLE, "--topdown", str(td),
            "--configs", str(det / "faster_rcnn_R_18_FPN_synth_basic.yaml"),
            str(det / "htc_keypoint_R_18_FPN_synth_basic.yaml"), "--", *tiny]  # fmt: skip
    capsys.readouterr()
    detector_study.main(argv)
    first = capsys.readouterr().out
    table = (tmp_path / "ds" / "detector_study.md").read_text()
    assert table in first and first.strip().splitlines()[-1].startswith("detector_study: ")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table.splitlines()[4:]}
    assert list(rows) == ["faster_rcnn_R_18_FPN_synth_basic", "htc_keypoint_R_18_FPN_synth_basic",
                          "ground-truth boxes"]  # fmt: skip
    for name in ("faster_rcnn_R_18_FPN_synth_basic", "htc_keypoint_R_18_FPN_synth_basic"):
        run = tmp_path / "ds" / name / "seed1"
        ap, ar = detector_study.box_ap_ar(run / "detections" / f"{SAMPLE}.json", SAMPLE)
        res = json.loads((run / "topdown" / SAMPLE / f"results_{SAMPLE}.json").read_text())
        assert rows[name][1:4] == [f"{ap / 100:.3f}", f"{ar / 100:.3f}",
                                   f"{res['keypoints']['AP'] / 100:.3f}"]  # fmt: skip
        cfg = (run / "topdown" / SAMPLE / "config.yaml").read_text()
        assert f"DET_FILE: {run / 'detections' / f'{SAMPLE}.json'}" in cfg
    detector_study.main(argv)
    again = capsys.readouterr().out
    assert "training" not in again and "evaluating" not in again and "detecting" not in again
    assert (tmp_path / "ds" / "detector_study.md").read_text() == table
    # the output folder lost: resumed from the record (the detection files in it), nothing
    # trained, detected or evaluated again
    shutil.rmtree(tmp_path / "ds")
    detector_study.main(argv)
    again = capsys.readouterr().out
    assert "study: restored" in again and not list((tmp_path / "ds").rglob("*.pth"))
    assert "training" not in again and "evaluating" not in again and "detecting" not in again
    assert (tmp_path / "ds" / "detector_study.md").read_text() == table


def test_a_zoo_entry_is_the_topdown_model(tmp_path, monkeypatch, capsys):
    """--topdown zoo://<name>: the entry's recipe and stored weights run on the boxes."""
    from multitask_pose.model_zoo import zoo_weights_file
    from multitask_pose.studies import runner

    name = "zoo://hrnet_w18_small_synthpeople"
    recipe = ROOT / "projects" / "TopDown" / "configs" / "Zoo" / "hrnet_w18_small_synthpeople.yaml"
    if zoo_weights_file("hrnet_w18_small_synthpeople").is_file():
        assert detector_study.parse_args(["--topdown", name]).topdown == name
    with pytest.raises(SystemExit):
        detector_study.parse_args(["--topdown", "zoo://nothing"])
    assert "no such model zoo entry" in capsys.readouterr().err
    ran = []

    def evaluate_run(config, eval_dir, dataset, opts, *a):
        ran.append((config, opts))
        return {"keypoints": {"AP": 61.0, "AP75": 70.0}}

    monkeypatch.setattr(runner, "evaluate_run", evaluate_run)
    box = ["TEST.TOPDOWN.BOX_SOURCE", "gt"]
    assert detector_study.topdown_keypoint_ap(name, tmp_path, "d", box, "x") == (61.0, 70.0)
    assert ran == [(recipe, ["MODEL.WEIGHTS", name, *box])]
    detector_study.topdown_keypoint_ap(tmp_path, tmp_path, "d", box, "x")
    weights = str(tmp_path / "model_final.pth")
    assert ran[1] == (tmp_path / "config.yaml", ["MODEL.WEIGHTS", weights, *box])
