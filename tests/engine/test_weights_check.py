"""No predictions from random weights: every tool that predicts or evaluates refuses an empty
MODEL.WEIGHTS, and a checkpoint that lacks a head of the model it builds, with one line naming the
key, the modules and what to pass, exit code 2 and no traceback; --allow-random-weights runs.
Small random checkpoints of the CPU recipes stand in for trained ones (a full state dict is what
a trained checkpoint holds)."""

import subprocess
import sys

import pytest
import torch
from coco_testing import SAMPLE_OPTS as COCO_SAMPLE_OPTS
from coco_testing import rcnn_sample_cfg, topdown_sample_cfg
from detectron2.modeling import build_model

from conftest import RECIPE, ROOT
from multitask_pose.engine import PosePredictor
from multitask_pose.engine.weights_check import RandomWeightsError, random_modules

TOPDOWN_RECIPE = ROOT / "projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml"
SAMPLE = "coco_person_sample"
SMALL = ("INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160")
SAMPLE_OPTS = [*COCO_SAMPLE_OPTS, *SMALL]
EMPTY = ("MODEL.WEIGHTS is empty: the model would predict from random weights; pass MODEL.WEIGHTS"
         " <trained checkpoint> (or --allow-random-weights for smoke tests)")  # fmt: skip


def rcnn_cfg(*opts):
    return rcnn_sample_cfg(*SMALL, *opts)


def topdown_cfg(*opts):
    return topdown_sample_cfg(*SMALL, *opts)


@pytest.fixture(scope="module")
def rcnn_state():
    torch.manual_seed(0)
    return build_model(rcnn_cfg()).state_dict()


def save(path, state, drop=()):
    """A checkpoint as the trainers write it, without the tensors under the ``drop`` prefixes."""
    torch.save({"model": {k: v for k, v in state.items() if not k.startswith(drop)}}, path)
    return path


def run_tool(*args):
    """A tool as a user runs it: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def one_line_refusal(err, tool):
    """The refusal: the tool's last stderr line, starting with ``tool:``; no traceback."""
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{tool}: "), err[-3000:]
    return last


def test_random_modules_names_the_outermost_module_left_out(rcnn_state):
    model = build_model(rcnn_cfg())
    head = [k for k in rcnn_state if k.startswith("roi_heads.keypoint_head.")]
    assert random_modules(model, head) == ["roi_heads.keypoint_head"]
    # One layer of the head: that layer, not the head.
    layer = [k for k in head if k.startswith("roi_heads.keypoint_head.score_lowres.")]
    assert layer and random_modules(model, layer) == ["roi_heads.keypoint_head.score_lowres"]
    # An ImageNet backbone alone: the ROI heads (the most weights, first), the RPN, the FPN.
    imagenet = [k for k in rcnn_state if not k.startswith("backbone.bottom_up.")]
    names = random_modules(model, imagenet)
    assert names[:2] == ["roi_heads", "proposal_generator"], names
    assert all(n.startswith("backbone.fpn_") for n in names[2:]) and len(names) == 2 + 8


def test_pose_predictor_refuses_missing_heads(rcnn_state, tmp_path):
    with pytest.raises(RandomWeightsError) as e:
        PosePredictor(rcnn_cfg())
    assert str(e.value) == EMPTY
    no_head = save(tmp_path / "no_keypoint_head.pth", rcnn_state, ("roi_heads.keypoint_head.",))
    with pytest.raises(RandomWeightsError, match=r"^MODEL.WEIGHTS .*no_keypoint_head.pth has no"
                       r" weights for roi_heads.keypoint_head \(left at random") as e:  # fmt: skip
        PosePredictor(rcnn_cfg("MODEL.WEIGHTS", str(no_head)))
    assert "\n" not in str(e.value) and "--allow-random-weights" in str(e.value)
    backbone_only = save(tmp_path / "backbone.pth", rcnn_state,
                         ("roi_heads.", "proposal_generator.", "backbone.fpn"))  # fmt: skip
    with pytest.raises(RandomWeightsError,
                       match=r"for roi_heads, proposal_generator, .* and 6 more"):  # fmt: skip
        PosePredictor(rcnn_cfg("MODEL.WEIGHTS", str(backbone_only)))
    # A checkpoint of another keypoint set: the score layer's shapes differ, so it stays random.
    other = dict(rcnn_state)
    for k in ("roi_heads.keypoint_head.score_lowres.weight",
              "roi_heads.keypoint_head.score_lowres.bias"):  # fmt: skip
        other[k] = other[k][:, :14] if other[k].ndim > 1 else other[k][:14]
    with pytest.raises(RandomWeightsError, match="for roi_heads.keypoint_head.score_lowres "):
        PosePredictor(rcnn_cfg("MODEL.WEIGHTS", str(save(tmp_path / "k14.pth", other))))
    # A complete checkpoint loads; the flag's key lets the others run.
    full = PosePredictor(rcnn_cfg("MODEL.WEIGHTS", str(save(tmp_path / "all.pth", rcnn_state))))
    torch.testing.assert_close(full.model.state_dict(), rcnn_state)
    PosePredictor(rcnn_cfg("MODEL.WEIGHTS", str(no_head), "MODEL.ALLOW_RANDOM_WEIGHTS", "True"))
    PosePredictor(rcnn_cfg("MODEL.ALLOW_RANDOM_WEIGHTS", "True"))


def test_topdown_predictor_and_its_detector_refuse_random_weights(rcnn_state, tmp_path):
    from pose_topdown.predictor import TopDownPredictor

    with pytest.raises(RandomWeightsError) as e:
        TopDownPredictor(topdown_cfg())
    assert str(e.value) == EMPTY
    torch.manual_seed(0)
    state = build_model(topdown_cfg()).state_dict()
    final = sorted({k.rsplit(".", 1)[0] for k in state if "final_layer" in k})
    assert final == ["pose_net.final_layer"], final  # HRNet's heatmap predictor
    no_final = save(tmp_path / "no_final.pth", state, ("pose_net.final_layer.",))
    with pytest.raises(RandomWeightsError, match="has no weights for pose_net.final_layer "):
        TopDownPredictor(topdown_cfg("MODEL.WEIGHTS", str(no_final)))
    TopDownPredictor(topdown_cfg("MODEL.WEIGHTS", str(save(tmp_path / "all.pth", state))))
    # The detector of BOX_SOURCE "detector", named by its own key.
    det_yaml = tmp_path / "detector.yaml"
    det_yaml.write_text(rcnn_cfg().dump())
    weights = ["MODEL.WEIGHTS", str(tmp_path / "all.pth")]
    detector = ["TEST.TOPDOWN.BOX_SOURCE", "detector", "TEST.TOPDOWN.DETECTOR_CONFIG",
                str(det_yaml)]  # fmt: skip
    with pytest.raises(RandomWeightsError, match=r"^TEST.TOPDOWN.DETECTOR_WEIGHTS is empty: .*"
                       r"pass TEST.TOPDOWN.DETECTOR_WEIGHTS <trained checkpoint>"):  # fmt: skip
        TopDownPredictor(topdown_cfg(*weights, *detector))
    det_no_head = save(tmp_path / "det.pth", rcnn_state, ("roi_heads.box_predictor.",))
    detector += ["TEST.TOPDOWN.DETECTOR_WEIGHTS", str(det_no_head)]
    with pytest.raises(RandomWeightsError, match=r"^TEST.TOPDOWN.DETECTOR_WEIGHTS .*det.pth has"
                       r" no weights for roi_heads.box_predictor "):  # fmt: skip
        TopDownPredictor(topdown_cfg(*weights, *detector))
    TopDownPredictor(topdown_cfg(*weights, *detector, "MODEL.ALLOW_RANDOM_WEIGHTS", "True"))


def test_demo_refuses_and_runs_with_the_flag(rcnn_state, tmp_path):
    demo = ROOT / "tools" / "demo.py"
    image = ROOT / "datasets/samples/coco/000000000785.jpg"
    base = [demo, "--config-file", RECIPE, "--input", image, "--output", tmp_path / "out"]
    code, _, err = run_tool(*base, *SAMPLE_OPTS)
    assert code == 2 and one_line_refusal(err, "demo") == f"demo: {EMPTY}"
    assert not (tmp_path / "out").exists()
    no_head = save(tmp_path / "no_head.pth", rcnn_state, ("roi_heads.keypoint_head.",))
    code, _, err = run_tool(*base, *SAMPLE_OPTS, "MODEL.WEIGHTS", no_head)
    assert code == 2 and "has no weights for roi_heads.keypoint_head " in one_line_refusal(
        err, "demo"
    )
    code, _, err = run_tool(*base, *SAMPLE_OPTS, "MODEL.WEIGHTS", tmp_path / "none.pth")
    assert code == 2
    missing = (f"demo: MODEL.WEIGHTS {tmp_path / 'none.pth'}: no such file; pass MODEL.WEIGHTS"
               " <trained checkpoint>")  # fmt: skip
    assert one_line_refusal(err, "demo") == missing
    code, out, err = run_tool(*base, "--allow-random-weights", *SAMPLE_OPTS)
    assert code == 0, err[-3000:]
    assert "demo: 1 images" in out and (tmp_path / "out" / "results.json").is_file()
    # The top-down mode: a random HRNet.
    top = [demo, "--topdown", "--config-file", TOPDOWN_RECIPE, "--input", image, "--output",
           tmp_path / "td"]  # fmt: skip
    code, _, err = run_tool(*top, "--dataset", SAMPLE, *SAMPLE_OPTS)
    assert code == 2 and one_line_refusal(err, "demo") == f"demo: {EMPTY}"


def test_detect_persons_refuses(rcnn_state, tmp_path, capsys):
    from multitask_pose.commands import detect_persons

    argv = ["--config-file", str(RECIPE), "--dataset", SAMPLE, "--quiet", "--output",
            str(tmp_path / "dets.json"), *SAMPLE_OPTS]  # fmt: skip
    assert detect_persons.main(argv) == 2
    assert capsys.readouterr().err.strip() == f"detect_persons: {EMPTY}"
    # Refused before anything is written (a folder's file list is written before detecting).
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((ROOT / "datasets/samples/coco/000000000785.jpg").read_bytes())
    listed = ["--input", str(folder), *argv[argv.index("--quiet") :]]
    assert detect_persons.main(["--config-file", str(RECIPE), *listed]) == 2
    assert capsys.readouterr().err.strip() == f"detect_persons: {EMPTY}"
    assert not list(tmp_path.glob("dets.json*"))
    no_box = save(tmp_path / "no_box.pth", rcnn_state, ("roi_heads.box_predictor.",))
    assert detect_persons.main([*argv, "MODEL.WEIGHTS", str(no_box)]) == 2
    assert "has no weights for roi_heads.box_predictor " in capsys.readouterr().err
    assert not (tmp_path / "dets.json").exists()
    assert detect_persons.main(["--allow-random-weights", *argv, "MODEL.WEIGHTS", str(no_box)]) == 0
    assert (tmp_path / "dets.json").is_file()


@pytest.mark.parametrize("stage", ["rcnn", "topdown"])
def test_train_net_eval_only_refuses(stage, rcnn_state, tmp_path):
    script, recipe, tool = {
        "rcnn": (ROOT / "tools" / "train_net.py", RECIPE, "train_net"),
        "topdown": (ROOT / "projects/TopDown/train_net.py", TOPDOWN_RECIPE, "topdown train_net"),
    }[stage]
    args = [script, "--config-file", recipe, "--eval-only", *SAMPLE_OPTS,
            "OUTPUT_DIR", tmp_path / "out"]  # fmt: skip
    code, _, err = run_tool(*args)
    assert code == 2 and one_line_refusal(err, tool) == f"{tool}: {EMPTY}"
    if stage == "rcnn":  # a checkpoint without the keypoint head
        no_head = save(tmp_path / "no_head.pth", rcnn_state, ("roi_heads.keypoint_head.",))
        code, _, err = run_tool(*args, "MODEL.WEIGHTS", no_head)
        assert code == 2
        assert "has no weights for roi_heads.keypoint_head " in one_line_refusal(err, tool)


def test_ensemble_needs_no_weights_of_its_own_but_its_members_do(tmp_path):
    """A HeatmapEnsemble's members load their own checkpoints (MODEL.ENSEMBLE.WEIGHTS) at build
    time, so its empty MODEL.WEIGHTS is no refusal; a member without its final layer is."""
    from pose_topdown.predictor import TopDownPredictor

    torch.manual_seed(0)
    state = build_model(topdown_cfg()).state_dict()
    member = tmp_path / "member.yaml"
    member.write_text(topdown_cfg().dump())
    full = save(tmp_path / "full.pth", state)
    no_final = save(tmp_path / "no_final.pth", state, ("pose_net.final_layer.",))

    def ensemble(*weights):
        return topdown_cfg("MODEL.TOPDOWN.POSE_NET", "HeatmapEnsemble", "MODEL.ENSEMBLE.CONFIGS",
                           str([str(member)] * len(weights)), "MODEL.ENSEMBLE.WEIGHTS",
                           str([str(w) for w in weights]))  # fmt: skip

    TopDownPredictor(ensemble(full, full))
    with pytest.raises(RandomWeightsError, match=r"^MODEL.ENSEMBLE.WEIGHTS .*no_final.pth has no"
                       r" weights for pose_net.final_layer "):  # fmt: skip
        TopDownPredictor(ensemble(full, no_final))


def test_export_model_refuses_missing_heads(rcnn_state, tmp_path, capsys):
    """export_model loads the checkpoint, then refuses one without the R-CNN's keypoint head or
    the top-down network's last layer, in one line (exit 2), before writing anything."""
    from pose_topdown import export as export_model

    no_head = save(tmp_path / "no_head.pth", rcnn_state, ("roi_heads.keypoint_head.",))
    out = tmp_path / "rcnn.ts"
    assert export_model.main(["--config-file", str(RECIPE), "--output", str(out), *SAMPLE_OPTS,
                              "MODEL.WEIGHTS", str(no_head)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err == (
        f"export_model: MODEL.WEIGHTS {no_head} has no weights for roi_heads.keypoint_head (left"
        " at random initialisation, their predictions would be noise); pass MODEL.WEIGHTS"
        " <checkpoint trained with this config>"
    )
    torch.manual_seed(0)
    state = build_model(topdown_cfg()).state_dict()
    last = ".".join(list(state)[-1].split(".")[:2])  # the network's last layer
    no_last = save(tmp_path / "no_last.pth", state, (last + ".",))
    assert export_model.main(["--config-file", str(TOPDOWN_RECIPE), "--output",
                              str(tmp_path / "td.onnx"), *SAMPLE_OPTS, "MODEL.WEIGHTS",
                              str(no_last)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"export_model: MODEL.WEIGHTS {no_last} has no weights for {last}")
    assert not out.exists() and not (tmp_path / "td.onnx").exists()
