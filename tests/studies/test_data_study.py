"""The data study (multitask_pose/studies/data_study.py, tools/data_study.py): its argument
checks, each row's training overrides, the table, the hard negatives counted with each row's own
training settings, and (slow) a whole two-iteration study on the real samples whose cells are read
from their files and whose second run trains, labels and evaluates nothing."""

import json
import shutil

import pytest

from conftest import ROOT
from multitask_pose.studies import data_study

SAMPLE = "coco_person_sample"
SAMPLE_DETS = ROOT / "datasets" / "samples" / "coco" / "test_coco_det_AP_H_56.json"


def test_argument_errors(tmp_path, capsys):
    def error(*argv):
        with pytest.raises(SystemExit):
            data_study.parse_args(list(argv))
        return capsys.readouterr().err

    assert "give --detector" in error()
    assert "expected DATASET=FILE" in error("--detections", "synth_people_basic_val")
    assert "expected DATASET=FILE" in error("--detections", f"x={tmp_path / 'none.json'}")
    assert "no config.yaml" in error("--detector", str(tmp_path))
    assert "--rows needs baseline" in error(
        "--detections", f"synth_people_basic_val={SAMPLE_DETS}", "--rows", "aic"
    )
    # Only the validation set's boxes are needed without the HNDM and pseudo-label rows.
    args = data_study.parse_args(
        ["--detections", f"synth_people_basic_val={SAMPLE_DETS}", "--rows", "baseline", "aic"]
    )
    assert data_study.needed_detections(args) == ["synth_people_basic_val"]


def test_each_row_trains_on_its_data():
    args = data_study.parse_args(["--detections", f"synth_people_basic_val={SAMPLE_DETS}",
                                  f"synth_people_basic_train={SAMPLE_DETS}",
                                  f"synth_people_basic_unlabelled={SAMPLE_DETS}"])  # fmt: skip
    det = args.detections

    def opts(row, pseudo=None):
        o = data_study.variant_opts(row, args, det, pseudo)
        return dict(zip(o[::2], o[1::2]))

    assert opts("baseline") == {"DATASETS.TRAIN": "('synth_people_basic_train',)"}
    # Concatenated, as the reports join AI Challenger (and pseudo-labels) with COCO.
    assert opts("aic") == {
        "DATASETS.TRAIN": "('synth_people_basic_train', 'synth_people_aic_train')",
    }
    assert "DATASETS.TRAIN_RATIOS" not in opts("pseudo", "/x/seed1.json")
    assert opts("inconsistent")["DATASETS.TRAIN_RATIOS"] == "(1, 1)"
    assert opts("hndm")["INPUT.HARD_NEGATIVES.FILE"] == str(SAMPLE_DETS)
    report, every, clean = opts("hndm"), opts("hndm_iou"), opts("hndm_iou_clean")
    assert report.pop("INPUT.HARD_NEGATIVES.RULE") == "no_intersection"  # the report's
    assert every.pop("INPUT.HARD_NEGATIVES.RULE") == clean.pop(
        "INPUT.HARD_NEGATIVES.RULE") == "iou"  # fmt: skip
    assert report.pop("INPUT.HARD_NEGATIVES.MAX_KEYPOINTS") == "-1"
    assert every.pop("INPUT.HARD_NEGATIVES.MAX_KEYPOINTS") == "-1"
    assert clean.pop("INPUT.HARD_NEGATIVES.MAX_KEYPOINTS") == "0"
    assert clean == every == report
    sel = opts("inconsistent_selected")
    assert sel["DATASETS.KEYPOINT_SELECTION"] == "True"
    assert sel["DATASETS.TRAIN"] == opts("inconsistent")["DATASETS.TRAIN"]
    assert "KEYPOINT_SELECTION" not in str(opts("inconsistent"))
    pseudo = opts("pseudo", "/x/seed42.json")
    assert pseudo["DATASETS.TRAIN"] == "('synth_people_basic_train', 'pseudo_seed42')"
    assert pseudo["DATASETS.REGISTER_COCO"].startswith("(('pseudo_seed42', '/x/seed42.json', '")


def test_table_cells_and_spread_verdicts():
    base = {"GT": [{"kp": 40.0, "train_min": 1.0}, {"kp": 42.0, "train_min": 3.0}]}
    other = {"GT": [{"kp": 50.0, "train_min": 2.0}, {"kp": 51.0, "train_min": 2.0}]}
    text = data_study.table([("baseline", base), ("+ x", other)], ["GT"], "note")
    lines = text.splitlines()
    assert lines[0] == "note"
    assert lines[4] == "| baseline | 0.410 (0.400, 0.420) | - | 2.0 |"
    assert lines[5] == "| + x | 0.505 (0.500, 0.510) | +0.095 (spread 0.020: yes) | 2.0 |"


def test_hard_negatives_counted_with_each_rows_training_settings(tmp_path):
    """The HNDM notes count what each row's training mined: the score, IoU, rule and keypoint
    limit of its first seed's config.yaml (here not the recipe's defaults, and the keypoint limit
    of the report's row set by an override after ``--``, which comes after the row's own)."""
    import yaml
    from detectron2.data import DatasetCatalog

    from multitask_pose.data.hard_negatives import mine_dataset_dicts

    args = data_study.parse_args(["--detections", f"{SAMPLE}={SAMPLE_DETS}", "--train", SAMPLE,
                                  "--val", SAMPLE, "--rows", "baseline", "hndm", "hndm_iou_clean",
                                  "--seeds", "7", "8"])  # fmt: skip
    settings = {"hndm": (0.2, 0.3, "no_intersection", 0), "hndm_iou_clean": (0.2, 0.6, "iou", 0)}
    for row, (score, iou, rule, max_kps) in settings.items():
        run = tmp_path / row / "seed7"
        run.mkdir(parents=True)
        hn = {"SCORE": score, "IOU": iou, "RULE": rule, "MAX_KEYPOINTS": max_kps}
        (run / "config.yaml").write_text(yaml.safe_dump({"INPUT": {"HARD_NEGATIVES": hn}}))
    notes = data_study.data_counts(args, args.detections, tmp_path)
    dicts = DatasetCatalog.get(SAMPLE)
    dets = json.loads(SAMPLE_DETS.read_text())
    _, report = mine_dataset_dicts(dicts, dets, 0.2, 0.3, 0, rule="no_intersection")
    assert notes[0] == (
        f"HNDM, no intersection, no labelled keypoint inside: {report['mined']} hard negatives in"
        f" {report['images_with_negatives']} of {report['images']} images ({report['confident']}"
        f" of {report['detections']} detections scoring >= 0.2;"
        f" {report['holding_keypoints']} holding one dropped)"
    )
    _, report = mine_dataset_dicts(dicts, dets, 0.2, 0.6, 0, rule="iou")
    _, default = mine_dataset_dicts(dicts, dets, 0.5, 0.3, 0, rule="iou")
    assert report["mined"] != default["mined"]  # (so the settings read make a difference)
    assert notes[1].startswith(
        f"HNDM, IoU < 0.6, no labelled keypoint inside: {report['mined']} hard negatives"
    )
    assert notes[1].endswith(f"; {report['holding_keypoints']} holding one dropped)")
    assert len(notes) == 2


@pytest.mark.slow
def test_data_study_end_to_end(tmp_path, capsys):
    """Every row at two iterations on the real COCO and AIC samples, with the sample's real
    detections as the detector's boxes (about 6 minutes alone)."""
    tiny = ["SOLVER.IMS_PER_BATCH", "4", "DATALOADER.NUM_WORKERS", "0"]
    argv = ["--output", str(tmp_path / "ds"), "--seeds", "1", "--max-iter", "2",
            "--record", str(tmp_path / "record"),
            "--train", SAMPLE, "--aic", "aic_person_sample", "--unlabelled", SAMPLE,
            "--inconsistent", SAMPLE, "--val", SAMPLE, "--detections", f"{SAMPLE}={SAMPLE_DETS}",
            "--kp-thresh", "0", "--box-thresh", "0", "--min-keypoints", "1",
            "--", *tiny]  # fmt: skip
    capsys.readouterr()
    data_study.main(argv)
    first = capsys.readouterr().out
    out = tmp_path / "ds"
    text = (out / "data_study.md").read_text()
    assert text in first and first.strip().splitlines()[-1].startswith("data_study: ")
    rows = {ln.split(" | ")[0][2:]: ln.split(" | ") for ln in text.splitlines()[4:12]}
    assert list(rows) == list(data_study.ROWS.values())
    for key, label in data_study.ROWS.items():
        for i, box in ((1, "gt"), (3, "det")):
            res = json.loads((out / key / "seed1" / "eval" / f"{SAMPLE}_{box}" /
                              f"results_{SAMPLE}.json").read_text())  # fmt: skip
            assert rows[label][i] == f"{res['keypoints']['AP'] / 100:.3f}"
    cfg = (out / "pseudo" / "seed1" / "config.yaml").read_text()
    assert "pseudo_seed1" in cfg and "TRAIN_RATIOS: []" in cfg
    pseudo = json.loads((out / "pseudo_labels" / "seed1.json").read_text())
    assert pseudo["annotations"] and "pseudo-labels seed 1:" in text
    assert "HNDM, no intersection:" in text and "HNDM, IoU < 0.3:" in text
    assert "HNDM, IoU < 0.3, no labelled keypoint inside:" in text
    assert "data selection on coco_person_sample" in text
    import yaml

    hndm = yaml.safe_load((out / "hndm" / "seed1" / "config.yaml").read_text())
    hn = hndm["INPUT"]["HARD_NEGATIVES"]
    assert hn["FILE"] == str(SAMPLE_DETS) and hn["RULE"] == "no_intersection"
    clean = yaml.safe_load((out / "hndm_iou_clean/seed1/config.yaml").read_text())
    assert clean["INPUT"]["HARD_NEGATIVES"]["MAX_KEYPOINTS"] == 0
    assert clean["INPUT"]["HARD_NEGATIVES"]["RULE"] == "iou"
    data_study.main(argv)
    again = capsys.readouterr().out
    assert ": training" not in again and "evaluating" not in again
    assert "pseudo-labels of" not in again
    assert (out / "data_study.md").read_text() == text
    # the output folder lost: resumed from the record, the baseline's weights not needed again
    shutil.rmtree(out)
    data_study.main(argv)
    again = capsys.readouterr().out
    assert "study: restored" in again and not list(out.rglob("*.pth"))
    assert ": training" not in again and "evaluating" not in again
    assert "pseudo-labels of" not in again
    assert (out / "data_study.md").read_text() == text
