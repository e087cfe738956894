"""Untrusted checkpoints: a crafted weights file that would create a file when unpickled is
refused through every entry point that loads weights (both trainers with MODEL.WEIGHTS and
--resume, both predictors, the top-down stage's detector, tools/train_net.py --eval-only), with an
error naming the file and the type; genuine detectron2 zoo files (.pkl of numpy arrays, Python 2
era numpy module names included) and the project's own checkpoints still load;
MODEL.TRUST_PICKLED_WEIGHTS opts out."""

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from coco_testing import SAMPLE_OPTS
from coco_testing import rcnn_sample_cfg as rcnn_cfg
from coco_testing import topdown_sample_cfg as topdown_cfg
from detectron2.modeling import build_model

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.engine import MultiTaskTrainer, PosePredictor, UnsafeCheckpointError
from multitask_pose.engine.checkpoint import SafeCheckpointer, restricted_load

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth.yaml"
TOPDOWN_RECIPE = (
    ROOT / "projects" / "TopDown" / "configs" / "Synthetic" / "hrnet_w18_small_synth.yaml"
)


class Payload:
    """Unpickling this creates the directory ``path`` (os.makedirs): a harmless stand-in for
    code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def zoo_pkl(path, state, payload=None, protocol=2):
    """A detectron2 model-zoo style .pkl: numpy arrays under "model", an "__author__"; with a
    ``payload`` hidden next to them."""
    data = {"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}
    if payload is not None:
        data["extra"] = [1, {"nested": payload}]
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


@pytest.fixture(scope="module")
def rcnn_state():
    torch.manual_seed(0)
    return build_model(rcnn_cfg()).state_dict()


@pytest.fixture
def crafted(tmp_path, rcnn_state):
    """(evil .pkl, evil .pth, the file their payload would create)."""
    marker = tmp_path / "payload_ran"
    pkl = zoo_pkl(tmp_path / "evil.pkl", rcnn_state, Payload(marker))
    pth = tmp_path / "evil.pth"
    torch.save({"model": dict(rcnn_state), "extra": Payload(marker)}, pth)
    assert not marker.exists()
    return pkl, pth, marker


def assert_refused(call, path, marker, type_name):
    with pytest.raises(UnsafeCheckpointError) as e:
        call()
    assert str(path) in str(e.value) and type_name in str(e.value), str(e.value)
    assert "TRUST_PICKLED_WEIGHTS" in str(e.value)
    assert not marker.exists(), "the payload ran"


def test_restricted_unpickler_allows_data_and_refuses_globals(tmp_path):
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, 2.5, "x", (b"y", None)],
            "c": np.int64(7), "d": np.array(["s"]),
            "e": {"f": np.zeros((0, 4), np.uint8)}}  # fmt: skip
    for protocol in (2, 4, 5):
        out = restricted_load(io.BytesIO(pickle.dumps(data, protocol)))
        assert out.keys() == data.keys() and out["b"] == data["b"] and out["c"] == 7
        np.testing.assert_array_equal(out["a"], data["a"])
        assert out["e"]["f"].shape == (0, 4) and out["d"][0] == "s"
    # numpy 1.x's module name (what zoo files written years ago hold).
    old = pickle.dumps(data["a"], 2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    np.testing.assert_array_equal(restricted_load(io.BytesIO(old)), data["a"])
    for bad, name in [(Payload(tmp_path / "x"), "os.makedirs"), (os.system, "system"),
                      (torch.nn.Linear(1, 1), "torch.nn")]:  # fmt: skip
        with pytest.raises(UnsafeCheckpointError, match=f"f.pkl: refusing to unpickle .*{name}"):
            restricted_load(io.BytesIO(pickle.dumps({"x": bad})), filename="f.pkl")
    assert not (tmp_path / "x").exists()


def test_zoo_files_and_own_checkpoints_still_load(tmp_path, rcnn_state):
    model = build_model(rcnn_cfg())
    for name, protocol in [("zoo2.pkl", 2), ("zoo4.pkl", 4)]:
        path = zoo_pkl(tmp_path / name, rcnn_state, protocol=protocol)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        SafeCheckpointer(model).load(str(path))
        for k, v in model.state_dict().items():
            torch.testing.assert_close(v, rcnn_state[k], msg=k)
    # A Caffe2-era file ({"blobs": ...}) goes through detectron2's own parsing too.
    blobs = tmp_path / "blobs.pkl"
    blobs.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.ones((2, 2), np.float32)}}, 2))
    assert SafeCheckpointer(model)._load_file(str(blobs))["__author__"] == "Caffe2"
    # The trainer's own checkpoints: model, optimizer, scheduler and iteration, weights-only.
    trainer = MultiTaskTrainer(rcnn_cfg("OUTPUT_DIR", str(tmp_path / "run")))
    trainer.checkpointer.save("model_0000000", iteration=0)
    again = MultiTaskTrainer(rcnn_cfg("OUTPUT_DIR", str(tmp_path / "run")))
    again.resume_or_load(resume=True)
    assert again.start_iter == 1


def test_trainers_refuse_crafted_weights(crafted, tmp_path):
    pkl, pth, marker = crafted
    from pose_topdown.engine import TopDownTrainer

    for path in (pkl, pth):
        trainer = MultiTaskTrainer(
            rcnn_cfg("MODEL.WEIGHTS", str(path), "OUTPUT_DIR", str(tmp_path))
        )
        assert_refused(lambda: trainer.resume_or_load(resume=False), path, marker, "os.makedirs")
    td = TopDownTrainer(topdown_cfg("MODEL.WEIGHTS", str(pkl), "OUTPUT_DIR", str(tmp_path / "td")))
    assert_refused(lambda: td.resume_or_load(resume=False), pkl, marker, "os.makedirs")


def test_resume_refuses_a_crafted_last_checkpoint_without_falling_back(crafted, tmp_path):
    """--resume: last_checkpoint names the crafted file; an intact older checkpoint exists. The
    refusal is an error, not a fallback to the older file (a fallback is for damaged files)."""
    _, pth, marker = crafted
    out = tmp_path / "run"
    trainer = MultiTaskTrainer(rcnn_cfg("OUTPUT_DIR", str(out)))
    trainer.checkpointer.save("model_0000009", iteration=9)
    (out / "model_0000019.pth").write_bytes(pth.read_bytes())
    (out / "last_checkpoint").write_text("model_0000019.pth")
    again = MultiTaskTrainer(rcnn_cfg("OUTPUT_DIR", str(out)))
    assert_refused(lambda: again.resume_or_load(resume=True), out / "model_0000019.pth", marker,
                   "os.makedirs")  # fmt: skip


def test_predictors_and_detector_refuse_crafted_weights(crafted, tmp_path):
    pkl, pth, marker = crafted
    from pose_topdown.data.boxes import PersonDetector
    from pose_topdown.predictor import TopDownPredictor

    for path in (pkl, pth):
        assert_refused(lambda: PosePredictor(rcnn_cfg("MODEL.WEIGHTS", str(path))), path, marker,
                       "os.makedirs")  # fmt: skip
    assert_refused(lambda: TopDownPredictor(topdown_cfg("MODEL.WEIGHTS", str(pkl))), pkl, marker,
                   "os.makedirs")  # fmt: skip
    det_yaml = tmp_path / "detector.yaml"
    det_yaml.write_text(rcnn_cfg().dump())
    assert_refused(lambda: PersonDetector(str(det_yaml), str(pkl)), pkl, marker, "os.makedirs")
    # The top-down config's TEST.TOPDOWN.DETECTOR_WEIGHTS (the model builds the detector).
    cfg = topdown_cfg("TEST.TOPDOWN.BOX_SOURCE", "detector", "TEST.TOPDOWN.DETECTOR_CONFIG",
                      str(det_yaml), "TEST.TOPDOWN.DETECTOR_WEIGHTS", str(pth))  # fmt: skip
    assert_refused(lambda: build_model(cfg), pth, marker, "os.makedirs")


def test_trusted_opt_out_loads_with_the_full_pickle(crafted, rcnn_state):
    """MODEL.TRUST_PICKLED_WEIGHTS True: the full pickle, so the payload runs (this is what the
    flag means) and the weights load."""
    pkl, pth, marker = crafted
    predictor = PosePredictor(rcnn_cfg("MODEL.WEIGHTS", str(pkl), "MODEL.TRUST_PICKLED_WEIGHTS",
                                       "True"))  # fmt: skip
    assert marker.exists()
    for k, v in predictor.model.state_dict().items():
        torch.testing.assert_close(v, rcnn_state[k], msg=k)
    marker.rmdir()
    PosePredictor(rcnn_cfg("MODEL.WEIGHTS", str(pth), "MODEL.TRUST_PICKLED_WEIGHTS", "True"))
    assert marker.exists()


def test_train_net_eval_only_refuses_a_crafted_pkl(crafted, tmp_path):
    """train_net's body (tools/train_net.py calls it with these flags): the file and type named,
    no payload run."""
    from detectron2.engine import default_argument_parser

    from multitask_pose.engine import train_net_main

    pkl, _, marker = crafted
    args = default_argument_parser().parse_args(
        ["--config-file", str(RECIPE), "--eval-only", *SAMPLE_OPTS, "MODEL.WEIGHTS", str(pkl),
         "OUTPUT_DIR", str(tmp_path / "out")]
    )  # fmt: skip
    assert_refused(lambda: train_net_main(args), pkl, marker, "os.makedirs")
    assert not (tmp_path / "out" / ".run.lock").exists()  # released on the way out
