"""The top-down methods study (multitask_pose/studies/topdown_methods.py,
projects/TopDown/study.py): its argument checks, its table, and (slow) a whole study at a
two-iteration budget on the COCO sample: every cell read from its results file, PoseFix fed the
HRNet results of its own seed and setting, HintPose hinted by the detector's keypoints on detector
boxes, and a second run that trains and evaluates nothing."""

import json
import shutil

import pytest

from multitask_pose.studies import topdown_methods


def ablate_results(run):
    """The results file of a run's own (training's final) evaluation on the COCO sample."""
    return run / "inference" / "coco_person_sample" / "coco_instances_results.json"


def test_argument_errors(tmp_path, capsys):
    def error(*argv):
        with pytest.raises(SystemExit):
            topdown_methods.parse_args(list(argv))
        return capsys.readouterr().err

    assert "--detector RUN_DIR" in error()
    assert "no config.yaml" in error("--detector", str(tmp_path))
    (tmp_path / "config.yaml").write_text("")
    assert "no model_final.pth" in error("--detector", str(tmp_path))
    assert "--detector RUN_DIR" in error("--detector", str(tmp_path), "--no-detector")
    assert "add hrnet to --models" in error("--no-detector", "--models", "pcr")
    assert "not in --models" in error("--no-detector", "--models", "hrnet", "--ensemble", "pcr")
    assert "add hrnet to --models" in error("--no-detector", "--models", "hintpose",
                                            "--no-posefix")  # fmt: skip
    assert "two members" in error("--no-detector", "--ensemble", "hrnet")
    assert "HintPose ensemble row needs ['hintpose_cue_only']" in error(
        "--no-detector", "--models", "hrnet", "hintpose", "hintpose_refine_only",
        "--ensemble")  # fmt: skip
    assert "KEY VALUE pairs" in error("--no-detector", "--", "SEED")
    assert "no such model zoo entry" in error("--detector", "zoo://nothing")
    args = topdown_methods.parse_args(["--no-detector", "--datasets", "a", "b", "--", "SEED", "3"])
    assert topdown_methods.settings(args) == [("a_gt", "a", "gt"), ("b_gt", "b", "gt")]
    assert args.opts == ["SEED", "3"] and args.ensemble == ["hrnet", "pcr", "hintpose_refine_only"]
    # the study's two ensemble rows: --ensemble's, and the HintPose report's kinds of one seed
    assert topdown_methods.ensembles(args) == [
        ("ensemble", "ensemble: HRNet-W18-small + PCR-HRNet-W18-small + HintPose refinement only",
         ["hrnet", "pcr", "hintpose_refine_only"]),
        ("hintpose_ensemble", "HintPose ensemble: one model of each kind",
         ["hintpose", "hintpose_cue_only", "hintpose_refine_only"]),
    ]  # fmt: skip
    args = topdown_methods.parse_args(["--no-detector", "--models", "hrnet", "pcr", "--ensemble",
                                       "--no-hintpose-ensemble"])  # fmt: skip
    assert topdown_methods.ensembles(args) == []


def test_every_model_has_its_recipe():
    stems = [stem for stem, _ in topdown_methods.MODELS.values()] + [topdown_methods.POSEFIX[0]]
    assert all((topdown_methods.CONFIGS / f"{s}.yaml").is_file() for s in stems)
    assert topdown_methods.HINTED <= set(topdown_methods.MODELS)


def test_table_cells_and_spread():
    def r(kp, kp75=10.0, train=2.0):
        return {"box": 100.0, "kp": kp, "kp75": kp75, "train_min": train}

    rows = [
        ("HRNet", {"a_gt": [r(50.0), r(52.0)], "a_det": [r(30.0), r(31.0)]}),
        ("PCR", {"a_gt": [r(55.0), r(56.0)], "a_det": [r(33.0), r(35.0)]}),
        (
            "ens",
            {
                "a_gt": [r(51.0, train=float("nan")), r(52.0, train=float("nan"))],
                "a_det": [r(30.0), r(30.0)],
            },
        ),
    ]
    text = topdown_methods.table(rows, ["a_gt", "a_det"], "note")
    lines = text.splitlines()
    assert lines[0] == "note"
    assert lines[2].startswith("| model | kp AP a_gt | kp AP a_det | kp AP75 a_gt | vs HRNet")
    # mean (seeds); difference of means from HRNet against the larger of the two spreads
    assert lines[4] == (
        "| HRNet | 0.510 (0.500, 0.520) | 0.305 (0.300, 0.310) | 0.100 (0.100, 0.100) | - | 2.0 |"
    )
    assert "| +0.045 (spread 0.020: yes) | 2.0 |" in lines[5]
    assert lines[6].endswith("| +0.005 (spread 0.020: no) | - |")


@pytest.mark.slow
def test_study_end_to_end(trained_run, tmp_path, capsys):
    """Two-iteration trainings (about 2 minutes alone on a 2-core AMD EPYC); the detector is the
    session's trained R-CNN run (shared with tests/engine/test_training.py in `make test-slow`)."""
    det, _ = trained_run
    out = tmp_path / "study"
    argv = [
        "--output", str(out), "--seeds", "1", "--max-iter", "2", "--detector", str(det),
        "--record", str(tmp_path / "record"),
        "--datasets", "coco_person_sample",
        "--models", "hrnet", "hintpose_cue_only", "hintpose_refine_only",
        "--ensemble", "hrnet", "hintpose_cue_only", "hintpose_refine_only",
        "--no-hintpose-ensemble",
        "--", "DATASETS.TRAIN", "('coco_person_sample',)", "DATASETS.TEST",
        "('coco_person_sample',)", "SOLVER.IMS_PER_BATCH", "4", "DATALOADER.NUM_WORKERS", "0",
    ]  # fmt: skip
    topdown_methods.main(argv)
    first = capsys.readouterr().out
    table = (out / "study.md").read_text()
    assert table in first and first.strip().splitlines()[-1].startswith("study: HRNet-W18-small")

    def kp_cell(run, setting):
        res = json.loads((run / "eval" / setting / "results_coco_person_sample.json").read_text())
        return f"{res['keypoints']['AP'] / 100:.3f}"

    hrnet = out / "hrnet_w18_small_synth_basic" / "seed1"
    cued = out / "hintpose_w18_small_synth_basic_cue_only" / "seed1"
    posefix = out / "posefix_hrnet_w18_small_synth_basic" / "seed1"
    ens = out / "ensemble_hrnet+hintpose_cue_only+hintpose_refine_only" / "seed1"
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table.splitlines()[4:]}
    assert list(rows) == [
        "HRNet-W18-small", "HintPose cue only", "HintPose refinement only", "HRNet + PoseFix",
        "ensemble: HRNet-W18-small + HintPose cue only + HintPose refinement only",
    ]  # fmt: skip
    for label, run in [("HRNet-W18-small", hrnet), ("HintPose cue only", cued),
                       ("HRNet + PoseFix", posefix),
                       ("ensemble: HRNet-W18-small + HintPose cue only + HintPose refinement only",
                        ens)]:  # fmt: skip
        assert rows[label][1:3] == [
            kp_cell(run, "coco_person_sample_gt"),
            kp_cell(run, "coco_person_sample_det"),
        ]

    def cfg(run, setting):
        return (run / "eval" / setting / "config.yaml").read_text()

    det_file = str(out / "detections" / "coco_person_sample.json")
    assert f"DET_FILE: {det_file}" in cfg(cued, "coco_person_sample_det")
    # Cued as in training, by another model's joints: the detector's own keypoints on its boxes,
    # HRNet's results of the same seed and setting on GT boxes (its training's evaluation too).
    for run in (cued, ens):
        assert "SOURCE: keypoints" in cfg(run, "coco_person_sample_det")
        assert "FILE: ''" in cfg(run, "coco_person_sample_det")
        gt_hints = hrnet / "eval" / "coco_person_sample_gt" / "inference" / "coco_person_sample"
        gt_file = gt_hints / "coco_instances_results.json"
        assert f"FILE: {gt_file}" in cfg(run, "coco_person_sample_gt")
    assert f"FILE: {ablate_results(hrnet)}" in (cued / "config.yaml").read_text()
    assert "CUE: JointHintCue" in cfg(ens, "coco_person_sample_gt")
    for setting in ("coco_person_sample_gt", "coco_person_sample_det"):
        own = hrnet / "eval" / setting / "inference" / "coco_person_sample"
        assert f"DET_FILE: {own / 'coco_instances_results.json'}" in cfg(posefix, setting)
    assert "POSE_NET: HeatmapEnsemble" in cfg(ens, "coco_person_sample_det")
    assert "SOURCE: center" not in table + cfg(cued, "coco_person_sample_gt")
    det_text = (out / "detections" / "coco_person_sample.json").read_text()
    assert json.loads(det_text)

    # everything exists: read back, nothing trained, detected or evaluated
    topdown_methods.main(argv)
    again = capsys.readouterr().out
    assert "training" not in again and "evaluating" not in again and "detecting" not in again
    assert (out / "study.md").read_text() == table
    effects_md = (out / "effects.md").read_text()

    # the output folder lost: resumed from the record (no weights in it), nothing trained or
    # evaluated again (the detector's boxes made again), the same table and effects (their
    # reasons from the recorded error analysis)
    shutil.rmtree(out)
    topdown_methods.main(argv)
    again = capsys.readouterr().out
    assert "study: restored" in again and not list(out.rglob("*.pth"))
    assert "training" not in again and "evaluating" not in again
    assert (out / "detections" / "coco_person_sample.json").read_text() == det_text
    assert (out / "study.md").read_text() == table
    assert (out / "effects.md").read_text() == effects_md


def test_a_zoo_entry_is_a_detector(tmp_path, monkeypatch):
    """--detector zoo://<name>: the entry's recipe and stored weights detect the persons."""
    from conftest import ROOT
    from multitask_pose.model_zoo import zoo_weights_file
    from multitask_pose.studies import jobs, runner

    name = "zoo://multitask_rcnn_R_18_FPN_synthpeople"
    recipe = ROOT / "configs" / "Zoo" / "multitask_rcnn_R_18_FPN_synthpeople.yaml"
    assert jobs.run_files(name) == (recipe, name)
    assert jobs.run_files(tmp_path) == (tmp_path / "config.yaml", str(tmp_path / "model_final.pth"))
    if zoo_weights_file("multitask_rcnn_R_18_FPN_synthpeople").is_file():
        args = topdown_methods.parse_args(["--detector", name])
        assert args.detector == name
    ran = []
    monkeypatch.setattr(runner, "run_logged", lambda cmd, *a, **k: ran.append(cmd))
    runner.detect_persons(name, "d", tmp_path / "d.json")
    cmd = ran[0]
    assert cmd[cmd.index("--config-file") + 1] == str(recipe)
    assert cmd[cmd.index("MODEL.WEIGHTS") + 1] == name
