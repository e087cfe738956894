"""Learning curves read from a run's metrics.json: resumed iterations, evaluation records, the
final results file; the plot and the tool; bad inputs named."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from multitask_pose.engine.learning_curves import plot_learning_curves, read_learning_curves


def write_run(path, records, final=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    if final is not None:
        (path / "results_synth_people_val.json").write_text(json.dumps(final))
    return path


RECORDS = [
    {"iteration": 19, "total_loss": 10.0, "loss_keypoint": 8.0, "lr": 0.1, "time": 1.0},
    {"iteration": 39, "total_loss": 9.0, "loss_keypoint": 7.0},
    {"iteration": 39, "keypoints/AP": 10.0, "keypoints/AP50": 30.0, "bbox/AP": 20.0},
    # a killed run resumed from iteration 40 logs 39..59 again: the last record wins
    {"iteration": 39, "total_loss": 8.5, "loss_keypoint": 6.5},
    {"iteration": 59, "total_loss": 7.0, "loss_keypoint": 5.0},
    {"iteration": 60, "keypoints/AP": 25.0, "bbox/AP": 40.0},  # the evaluation after training
]


def test_curves_from_metrics_and_results(tmp_path):
    run = write_run(tmp_path / "run", RECORDS, final={"keypoints": {"AP": 25.0, "AP50": 60.0}})
    c = read_learning_curves(run)
    assert c.losses["total_loss"] == ([20, 40, 60], [10.0, 8.5, 7.0])
    assert set(c.losses) == {"total_loss", "loss_keypoint"}  # lr, time are not losses
    assert c.ap["keypoints/AP"] == ([40, 60], [0.1, 0.25])  # percent -> [0, 1]; clamped to it 60
    assert c.ap["bbox/AP"] == ([40, 60], [0.2, 0.4])
    # AP50 was not logged after training: the final results file adds it at the last iteration
    assert c.ap["keypoints/AP50"] == ([40, 60], [0.3, 0.6])
    png = plot_learning_curves([c, read_learning_curves(run, "again")], tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_bad_runs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json not found"):
        read_learning_curves(tmp_path)
    write_run(tmp_path / "noloss", [{"iteration": 3, "lr": 0.1}])
    with pytest.raises(ValueError, match="noloss.*no loss"):
        read_learning_curves(tmp_path / "noloss")
    bad = write_run(tmp_path / "bad", RECORDS)
    with open(bad / "metrics.json", "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"metrics.json, line 7: not json"):
        read_learning_curves(bad)


def test_tool_writes_the_plot_and_a_summary(tmp_path):
    run = write_run(tmp_path / "run", RECORDS)
    tool = [sys.executable, str(ROOT / "tools" / "plot_curves.py")]
    out = subprocess.run([*tool, str(run), "--output", str(tmp_path / "p.png")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith(
        "plot_curves: run: total_loss 10 -> 7 over 60 it, keypoints AP 0.250 (it 60)"
    )
    assert (tmp_path / "p.png").is_file()
    missing = subprocess.run([*tool, str(tmp_path / "nowhere")], capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert missing.returncode == 2 and "nowhere/metrics.json not found" in missing.stderr


def test_tensorboard_events_hold_the_losses_and_ap(memorised_rcnn, tmp_path):
    """A real short run (the shared memorising R-CNN): its TensorBoard events hold every loss and
    the keypoint / box AP at the same iterations as metrics.json, with the same values (float32
    in the events); the tool plots from them alone."""
    out_dir, _ = memorised_rcnn
    js = read_learning_curves(out_dir, source="json")
    tb = read_learning_curves(out_dir, source="tensorboard")
    assert set(tb.losses) == set(js.losses) >= {"total_loss", "loss_keypoint", "loss_mask"}
    for key in ("keypoints/AP", "bbox/AP", "segm/AP"):
        assert key in tb.ap
    for series_tb, series_js in [(tb.losses[k], js.losses[k]) for k in js.losses] + [
        (tb.ap[k], js.ap[k]) for k in js.ap
    ]:
        assert series_tb[0] == series_js[0]
        assert series_tb[1] == pytest.approx(series_js[1], rel=1e-6, abs=1e-7)
    assert tb.ap["keypoints/AP"][1][-1] > 0.5  # the memorised sample's AP, as logged
    # Events alone (no metrics.json): the tool reads them by itself.
    events_only = tmp_path / "events_only"
    events_only.mkdir()
    for f in out_dir.glob("events.out.tfevents.*"):
        (events_only / f.name).write_bytes(f.read_bytes())
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "plot_curves.py"), str(events_only)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (events_only / "learning_curves.png").stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="no TensorBoard event file"):
        read_learning_curves(tmp_path, source="tensorboard")
