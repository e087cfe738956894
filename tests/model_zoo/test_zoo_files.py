"""The model zoo's file handling: fp16 export of a checkpoint, ``zoo://`` names resolved by
detectron2's PathManager and loaded by the safe checkpointer, clear errors for unknown or
untrained entries."""

import json

import pytest
import torch
from detectron2.utils.file_io import PathManager
from torch import nn

import multitask_pose.model_zoo as zoo
from multitask_pose.engine.checkpoint import SafeCheckpointer

NAME = "hrnet_w18_small_synthpeople"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)


def _trained(tmp_path):
    torch.manual_seed(0)
    net = Net()
    net.bn.running_mean.uniform_()
    net.bn.num_batches_tracked += 7
    path = tmp_path / "model_0000999.pth"
    torch.save({"model": net.state_dict(), "iteration": 999, "optimizer": {}}, path)
    return net, path


def test_export_fp16_keeps_the_model_only_floats_halved(tmp_path):
    net, path = _trained(tmp_path)
    out = tmp_path / "entry.pth"
    sha = zoo.export_fp16(str(path), out)
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {"model", "__author__"}  # no optimizer, no iteration
    for k, v in net.state_dict().items():
        got = saved["model"][k]
        if torch.is_floating_point(v):
            assert got.dtype == torch.float16 and torch.equal(got, v.half())
        else:
            assert got.dtype == v.dtype and torch.equal(got, v)  # num_batches_tracked: 7
    import hashlib

    assert sha == hashlib.sha256(out.read_bytes()).hexdigest()


def test_zoo_name_loads_through_the_safe_checkpointer(tmp_path, monkeypatch):
    net, path = _trained(tmp_path)
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    zoo.export_fp16(str(path), tmp_path / f"{NAME}.pth")
    fresh = Net()
    SafeCheckpointer(fresh).load(f"zoo://{NAME}")
    for k, v in net.state_dict().items():
        want = v.half().to(v.dtype) if torch.is_floating_point(v) else v
        assert torch.equal(fresh.state_dict()[k], want), k


def test_unknown_or_untrained_entries_are_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no model zoo entry 'nope'; the entries: \\["):
        PathManager.get_local_path("zoo://nope")
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)  # nothing exported there
    with pytest.raises(FileNotFoundError, match=f"train it with tools/train_zoo.py {NAME}"):
        PathManager.get_local_path(f"zoo://{NAME}")
    assert not PathManager.exists(f"zoo://{NAME}")


def test_an_entry_above_25_mb_is_refused(tmp_path, monkeypatch):
    _, path = _trained(tmp_path)
    monkeypatch.setattr(zoo, "MAX_ENTRY_BYTES", 100)
    with pytest.raises(ValueError, match="above the zoo's 9.5.*e-05 MB per entry"):
        zoo.export_fp16(str(path), tmp_path / "big.pth")
    assert not (tmp_path / "big.pth").exists()


def test_a_leg_records_the_iteration_it_resumes_from(tmp_path):
    """The checkpoint detectron2 resumes from decides where a leg starts (not the last logged
    iteration, which may lie past it)."""
    from multitask_pose.model_zoo.training import resumes_from

    assert resumes_from(tmp_path) == 0
    (tmp_path / "model_0000499.pth").write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text("model_0000499.pth")
    (tmp_path / "metrics.json").write_text('{"iteration": 719}\n')
    assert resumes_from(tmp_path) == 500
    torch.save({"model": {}, "iteration": 19999}, tmp_path / "model_final.pth")
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    assert resumes_from(tmp_path) == 20000


def test_training_hours_count_each_iteration_once_with_its_leg_s_threads(tmp_path):
    """A resumed leg runs again the iterations after its checkpoint: they count once (the last
    run), at the threads of the leg that ran them; a leg without threads gives no CPU-hours."""
    from multitask_pose.model_zoo.training import training_hours

    lines = [
        {"iteration": 19, "time": 1.8},
        {"iteration": 39, "time": 1.8},  # run again by leg 2 (killed after 39, resumed at 20)
        {"iteration": 39, "time": 0.9},
        {"iteration": 59, "time": 0.9},
        {"iteration": 60, "bbox/AP": 50.0},  # an evaluation: no time
    ]
    metrics = tmp_path / "metrics.json"
    metrics.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    legs = [{"from": 0, "threads": 1}, {"from": 20, "threads": 2}]
    hours, cpu_hours = training_hours(metrics, legs)
    assert hours == pytest.approx((1.8 + 0.9 + 0.9) * 20 / 3600)
    assert cpu_hours == pytest.approx((1.8 * 1 + 0.9 * 2 + 0.9 * 2) * 20 / 3600)
    assert training_hours(metrics, [{"from": 0, "threads": 1}, {"from": 20}])[1] is None


def test_exporting_before_the_first_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    from multitask_pose.commands import train_zoo

    monkeypatch.setenv("MTP_CACHE", str(tmp_path))
    assert train_zoo.main([NAME, "--export"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"train_zoo: {tmp_path}/zoo/{NAME}: no checkpoint yet; train with tools/train_zoo.py {NAME}"
    )


def test_the_zoo_table_shows_each_record(tmp_path, monkeypatch):
    from multitask_pose.model_zoo.training import LEVELS, zoo_table

    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    (tmp_path / f"{NAME}.pth").write_bytes(b"x" * 2**20)
    results = {"keypoints": {"AP": 61.234}, "bbox": {"AP": 100.0}}
    record = {
        "what": "HRNet", "iterations": 20000, "training_hours": 3.5,
        "cpu_hours": 6.1, "sha256": "ab" * 32, "check": {f"{LEVELS[0]} keypoint AP": 0.6123},
        "legs": [{"cpu": "AMD EPYC", "threads": 2}, {"cpu": "AMD EPYC", "threads": 1}],
        "levels": {lvl: results for lvl in LEVELS},
    }  # fmt: skip
    (tmp_path / f"{NAME}.json").write_text(json.dumps(record))
    lines = zoo_table().splitlines()
    assert len(lines) == 2 + len(zoo.ENTRIES)
    (row,) = [x for x in lines if x.startswith(f"| `{NAME}`")]
    assert row == (
        f"| `{NAME}` | HRNet | 20000 (2) | 3.5 (6.1), AMD EPYC x1; AMD EPYC x2"
        " | kp 0.612 | kp 0.612 | kp 0.612"  # a top-down entry: its GT boxes' AP is no figure
        f" | keypoint AP 0.612 | 1.0, `{'ab' * 6}` |"
    )
    assert all(x.count("|") == lines[0].count("|") for x in lines)
    rcnn = "multitask_rcnn_R_18_FPN_synthpeople"
    results = {"keypoints": {"AP": 35.0}, "bbox": {"AP": 61.0}, "segm": {"AP": 50.0}}
    check = {f"{LEVELS[0]} keypoint AP": 0.35, f"{LEVELS[0]} box AP": 0.61}
    record.update(levels={LEVELS[0]: results}, check=check)
    (tmp_path / f"{rcnn}.json").write_text(json.dumps(record))
    (row,) = [x for x in zoo_table().splitlines() if x.startswith(f"| `{rcnn}`")]
    assert " | kp 0.350 / box 0.610 / mask 0.500 | - | - | keypoint AP 0.350, box AP 0.610 |" in row


@pytest.fixture
def committed(tmp_path, monkeypatch):
    """The repository's weights and record of an entry trained for 6000 iterations in two legs,
    and an empty cache (a new machine): where train_zoo.py's runs go is captured."""
    from multitask_pose.model_zoo import training

    zoo_dir = tmp_path / "model_zoo"
    zoo_dir.mkdir()
    monkeypatch.setattr(zoo, "ZOO_DIR", zoo_dir)
    monkeypatch.setattr(training, "ZOO_DIR", zoo_dir)
    monkeypatch.setenv("MTP_CACHE", str(tmp_path / "cache"))
    net, checkpoint = _trained(tmp_path)
    record = {
        "config": zoo.ENTRIES[NAME].config, "iterations": 6000,
        "sha256": zoo.export_fp16(str(checkpoint), zoo_dir / f"{NAME}.pth"),
        "legs": [{"from": 0, "threads": 2}, {"from": 3000, "threads": 1}],
        "training_hours": 3.0, "cpu_hours": 4.5,
        "curve": {"keypoints/AP": [[2000, 0.27], [6000, 0.51]]},
    }  # fmt: skip
    (zoo_dir / f"{NAME}.json").write_text(json.dumps(record))
    runs = []
    monkeypatch.setattr(training, "run_logged", lambda cmd: runs.append([str(c) for c in cmd]))
    return net, record, runs


def _opt(cmd, key):
    return cmd[cmd.index(key) + 1]


def test_a_new_machine_continues_from_the_repository_s_weights(committed):
    from multitask_pose.model_zoo import training

    net, record, runs = committed
    run_dir = training.train_leg(NAME)
    weights = run_dir / training.EARLIER_WEIGHTS
    assert (_opt(runs[0], "MODEL.WEIGHTS"), _opt(runs[0], "SOLVER.START_ITER")) == (
        str(weights), "6000")
    assert weights.read_bytes() == zoo.zoo_weights_file(NAME).read_bytes()  # a copy: an export
    leg = json.loads((run_dir / "legs.json").read_text())[-1]  # cannot change it under the run
    assert leg["from"] == 6000 and "optimizer restarted" in leg["note"]
    # the continued run's next leg resumes from its own checkpoint, on the same schedule
    (run_dir / "model_0006249.pth").write_bytes(b"")
    (run_dir / "last_checkpoint").write_text("model_0006249.pth")
    training.train_leg(NAME)
    assert _opt(runs[1], "SOLVER.START_ITER") == "6000" and "--resume" in runs[1]
    assert json.loads((run_dir / "legs.json").read_text())[-1]["from"] == 6250


def test_a_continued_run_s_export_carries_the_earlier_record_over(committed, monkeypatch):
    from multitask_pose.model_zoo import training

    net, record, runs = committed
    run_dir = training.train_leg(NAME)
    torch.save({"model": net.state_dict(), "iteration": 6999}, run_dir / "model_0006999.pth")
    (run_dir / "last_checkpoint").write_text("model_0006999.pth")
    lines = [{"iteration": i, "time": 1.8, "total_loss": 1.0} for i in range(6019, 7000, 20)]
    lines.append({"iteration": 6999, "keypoints/AP": 55.0})
    (run_dir / "metrics.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    monkeypatch.setattr(training, "measure", lambda name: {"check": 0.55})
    training.export(NAME)
    new = zoo.zoo_record(NAME)
    assert new["iterations"] == 7000
    assert [leg["from"] for leg in new["legs"]] == [0, 3000, 6000]
    hours, threads = 50 * 1.8 * 20 / 3600, new["legs"][-1]["threads"]  # this process's
    assert new["training_hours"] == pytest.approx(3.0 + hours, abs=0.01)
    assert new["cpu_hours"] == pytest.approx(4.5 + hours * threads, abs=0.01)
    assert new["curve"]["keypoints/AP"] == [[2000, 0.27], [6000, 0.51], [7000, 0.55]]


@pytest.mark.parametrize(
    "change, why",
    [
        ({"config": "other.yaml"}, "it was trained with other.yaml, not projects/"),
        ({"sha256": "0" * 64}, f".*/{NAME}.pth is not the file its record names"),
    ],
)
def test_weights_that_cannot_be_continued_are_refused(committed, change, why):
    from multitask_pose.model_zoo import training

    _, record, runs = committed
    (zoo.ZOO_DIR / f"{NAME}.json").write_text(json.dumps({**record, **change}))
    with pytest.raises(ValueError, match=f"cannot continue zoo entry {NAME} .*: {why}"):
        training.train_leg(NAME)
    assert runs == []


def test_a_run_behind_the_repository_s_weights_is_refused(committed):
    """A machine whose cache kept an older run of the entry must not train on from it (and
    export older weights over the repository's newer ones)."""
    from multitask_pose.model_zoo import training

    _, record, runs = committed
    run_dir = zoo.zoo_run_dir(NAME)
    run_dir.mkdir(parents=True)
    (run_dir / "model_0004999.pth").write_bytes(b"")
    (run_dir / "last_checkpoint").write_text("model_0004999.pth")
    with pytest.raises(ValueError, match="at iteration 5000, behind the repository's weights"):
        training.train_leg(NAME)
    assert runs == []
