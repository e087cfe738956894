"""A study's record (multitask_pose/studies/records.py, ``--record``): what a finished run keeps
(no weights, no checkpoint; results files only where later runs read them), restored byte for byte
where missing and never over a file that is there; the error analysis answered from a recorded
costs file, and redone when the results change; a recorded run trained again only when later steps
need its weights. (A whole study resumed from its record: the slow end-to-end top-down test.)"""

import gzip
import json
from types import SimpleNamespace

import pytest

from multitask_pose.studies import reasons, records, runner

SAMPLE = "coco_person_sample"


def _run(root):
    """A finished top-down run's folder as the runner leaves it, with its evaluation."""
    run = root / "model" / "seed1"
    files = {
        "ablation_row.json": '{"name": "model", "dataset": "d"}',
        "config.yaml": "SEED: 1\n",
        "results_d.json": '{"keypoints": {"AP": 50.0}}',
        "last_checkpoint": "model_final.pth",
        "model_final.pth": "weights",
        "log.txt": "training log",
        "inference/d/coco_instances_results.json": '[{"image_id": 1, "bbox": [0, 0, 1, 1]}]',
        "eval/d_gt/config.yaml": "SEED: 1\n",
        "eval/d_gt/results_d.json": '{"keypoints": {"AP": 40.0}}',
        "eval/d_gt/inference/d/coco_instances_results.json": "[]",
        "eval/d_gt/inference/d/coco_instances_results.json.costs.json": '{"costs": {}}',
    }
    for rel, text in files.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(text)
    return run


def _tree(root):
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_save_keeps_the_small_files_and_restore_writes_them_back(tmp_path):
    out, record = tmp_path / "out", tmp_path / "record"
    run = _run(out)
    pseudo = out / "pseudo_labels" / "seed1.json"  # a file a study makes from a run
    pseudo.parent.mkdir()
    pseudo.write_text('{"annotations": []}')
    assert records.save(None, out, run) == 0 and not record.exists()  # no record: nothing

    records.save(record, out, run, pseudo)
    kept = {"model/seed1/" + f for f in ("ablation_row.json", "config.yaml", "results_d.json",
            "eval/d_gt/results_d.json",
            "eval/d_gt/inference/d/coco_instances_results.json.costs.json")}  # fmt: skip
    assert _tree(record) == kept | {"pseudo_labels/seed1.json.gz"}
    records.save(record, out, run, inputs=True)  # the results files too, compressed
    results = {"model/seed1/inference/d/coco_instances_results.json.gz",
               "model/seed1/eval/d_gt/inference/d/coco_instances_results.json.gz"}  # fmt: skip
    assert _tree(record) == kept | results | {"pseudo_labels/seed1.json.gz"}
    assert gzip.decompress((record / "pseudo_labels/seed1.json.gz").read_bytes()) == (
        pseudo.read_bytes()
    )

    # into a lost output folder: every recorded file, as it was; a second time: nothing
    lost = tmp_path / "lost"
    assert records.restore(record, lost) == len(kept) + 3
    assert _tree(lost) == {f.removesuffix(".gz") for f in _tree(record)}
    for rel in _tree(lost):
        assert (lost / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert records.restore(record, lost) == 0
    # a file that is there is never replaced
    (lost / "model/seed1/results_d.json").write_text("newer")
    records.restore(record, lost)
    assert (lost / "model/seed1/results_d.json").read_text() == "newer"
    assert records.restore(tmp_path / "no_record_yet", lost) == 0


def test_save_records_the_costs_of_keypoint_results(tmp_path, monkeypatch):
    """Keypoint results are analysed before they are recorded (the record keeps the costs, which
    the effects' reasons read); box-only results are not."""
    out = tmp_path / "out"
    run = _run(out)
    kp = run / "eval/d_det/inference/d/coco_instances_results.json"
    kp.parent.mkdir(parents=True)
    kp.write_text('[{"image_id": 1, "keypoints": [1, 2, 1]}]')
    analysed = []

    def fake_costs(path, dataset):
        analysed.append((path, dataset))
        reasons.costs_file(path).write_text("{}")

    monkeypatch.setattr(reasons, "error_costs", fake_costs)
    records.save(tmp_path / "record", out, run)
    assert analysed == [(kp, "d")]
    assert (tmp_path / "record/model/seed1/eval/d_det/inference/d/"
            "coco_instances_results.json.costs.json").is_file()  # fmt: skip


def test_error_costs_from_a_recorded_costs_file(tmp_path):
    """With its results file gone, the costs kept beside it answer; when the results file changes,
    the analysis is done again."""
    from test_reasons import _results

    path = tmp_path / "results.json"
    _results(path, jittered=lambda i: i % 2 == 0)
    costs = reasons.error_costs(path, SAMPLE)
    kept = reasons.costs_file(path)
    path.unlink()
    assert reasons.analysed(path) and reasons.error_costs(path, SAMPLE) == costs
    _results(path)  # perfect results now: the kept costs are not theirs
    assert reasons.error_costs(path, SAMPLE)["AP"]["AP"] == pytest.approx(1.0)
    assert json.loads(kept.read_text())["costs"]["AP"]["AP"] == pytest.approx(1.0)
    assert not reasons.analysed(tmp_path / "other.json")


def test_a_recorded_run_is_trained_again_only_when_its_weights_are_needed(tmp_path, monkeypatch):
    run = _run(tmp_path)
    (run / "model_final.pth").unlink()  # as restored from a record
    trained = []

    def fake_train(cmd, **kwargs):
        trained.append(cmd)
        raise SystemExit("training")

    monkeypatch.setattr(runner.subprocess, "run", fake_train)
    args = SimpleNamespace(max_iter=None, opts=[])
    row = runner.run_one("model", tmp_path / "c.yaml", args, tmp_path, 1)
    assert row["name"] == "model" and not trained  # read back
    with pytest.raises(SystemExit, match="training"):
        runner.run_one("model", tmp_path / "c.yaml", args, tmp_path, 1, needs_weights=True)
    assert len(trained) == 1 and not (run / "ablation_row.json").exists()
