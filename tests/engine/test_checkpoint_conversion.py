"""tools/convert_checkpoint.py: checkpoints in MMPose's, the official HRNet code's and detectron2's
naming, built here from our models' tensors (the names from their public source: MMPose's
hrnet.py / resnet.py / heatmap_head.py, detectron2's DeformBottleneckBlock), convert back into a
strict load with equal outputs; other architectures and keypoint counts are named; detectron2's
sigmoid modulation reproduces its deformable block."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from conftest import ROOT
from multitask_pose import get_multitask_cfg
from multitask_pose.engine import checkpoint_conversion as convert_checkpoint
from multitask_pose.engine.checkpoint import torch_load
from multitask_pose.engine.checkpoint_conversion import convert_state

COCO_TD = ROOT / "projects" / "TopDown" / "configs" / "COCO"
HEAD = ("deconv_layers", "final_layer")  # MMPose's head modules; the rest is its backbone


def _topdown(config):
    from pose_topdown import get_topdown_cfg

    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(config))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a misplaced buffer shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _mmpose_state(model, prefix_head="head."):
    state = {}
    for k, v in model.state_dict().items():
        k = k[len("pose_net.") :]
        state[(prefix_head if k.startswith(HEAD) else "backbone.") + k] = v.clone()
    return state


def _heatmaps(model, x):
    with torch.no_grad():
        return model.pose_net(x)["heatmap"]


@pytest.mark.parametrize("config", ["hrnet_w32_256x192.yaml", "simple_baseline_R50_256x192.yaml"])
def test_mmpose_checkpoints_load_strictly_with_equal_outputs(config, tmp_path, capsys):
    model = _topdown(COCO_TD / config)
    state = _mmpose_state(model)
    extra = {"data_preprocessor.mean": torch.zeros(1, 3, 1, 1),
             "data_preprocessor.std": torch.ones(1, 3, 1, 1)}  # fmt: skip
    # A 1.x release: meta (with numpy arrays, as MMPose's dataset metadata) + state_dict.
    meta = {"dataset_meta": {"sigmas": np.full(17, 0.05, np.float32)}, "epoch": 210}
    src = tmp_path / "mmpose.pth"
    torch.save({"meta": meta, "state_dict": {**state, **extra}}, src)
    out = tmp_path / "ours.pth"
    cfg_file = str(COCO_TD / config)
    argv = [
        "--from",
        "mmpose",
        "--input",
        str(src),
        "--output",
        str(out),
        "--config-file",
        cfg_file,
    ]
    assert convert_checkpoint.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"{len(state)} tensors, {len(state)} renamed, 2 dropped, 0 not mapped" in printed
    assert "dropped data_preprocessor.mean" in printed and "loads strictly" in printed
    fresh = _topdown(COCO_TD / config)
    for p in fresh.parameters():
        p.data.normal_()  # so that equality cannot come from the shared seed
    fresh.load_state_dict(torch_load(str(out))["model"], strict=True)
    x = torch.randn(2, 3, 256, 192)
    assert torch.equal(_heatmaps(fresh, x), _heatmaps(model, x))
    # MMPose 0.x names the head keypoint_head: the same result.
    old, _ = convert_state(_mmpose_state(model, "keypoint_head."), "mmpose")
    assert old.keys() == torch_load(str(out))["model"].keys()


def test_official_release_names_and_bad_checkpoints(tmp_path, capsys):
    model = _topdown(COCO_TD / "hrnet_w32_256x192.yaml")
    official = {"module." + k[len("pose_net.") :]: v for k, v in model.state_dict().items()}
    src = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(official, src)  # a bare state dict, DataParallel's prefix
    cfg_file = str(COCO_TD / "hrnet_w32_256x192.yaml")
    out = tmp_path / "ours.pth"
    argv = ["--from", "official", "--input", str(src), "--output", str(out)]
    assert convert_checkpoint.main([*argv, "--config-file", cfg_file]) == 0
    got = torch_load(str(out))["model"]
    assert got.keys() == model.state_dict().keys()
    assert all(torch.equal(got[k], v) for k, v in model.state_dict().items())
    capsys.readouterr()
    # Another keypoint count (an AI Challenger model: 14 heatmaps) is named by its layer.
    aic = dict(official)
    aic["module.final_layer.weight"] = aic["module.final_layer.weight"][:14]
    aic["module.final_layer.bias"] = aic["module.final_layer.bias"][:14]
    torch.save(aic, src)
    assert convert_checkpoint.main([*argv, "--config-file", cfg_file]) == 2
    err = capsys.readouterr().err
    assert "pose_net.final_layer.weight: checkpoint (14, 32, 1, 1), model (17, 32, 1, 1)" in err
    # Another architecture: HRNet weights for a SimpleBaseline config.
    torch.save(official, src)
    sb = str(COCO_TD / "simple_baseline_R50_256x192.yaml")
    assert convert_checkpoint.main([*argv, "--config-file", sb]) == 2
    err = capsys.readouterr().err
    assert "model keys missing" in err and "unexpected keys" in err
    # Not an MMPose file; a file holding code.
    assert convert_checkpoint.main(["--from", "mmpose", "--input", str(src), "--output",
                                    str(out)]) == 2  # fmt: skip
    assert "not an MMPose top-down model" in capsys.readouterr().err

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"state_dict": {"a": torch.zeros(1)}, "x": Evil()}, src)
    assert convert_checkpoint.main([*argv]) == 2
    assert "refusing to load" in capsys.readouterr().err


def _dcn_rcnn_cfg(modulation):
    cfg = get_multitask_cfg()
    cfg.merge_from_file(
        str(ROOT / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth_basic.yaml")
    )
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.BACKBONE.NAME",
                         "build_multitask_resnet_fpn_backbone",
                         "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "[False, True, True, True]",
                         "MODEL.RESNETS.DEFORM_MODULATED", "True",
                         "MODEL.RESNETS.DEFORM_MODULATION", modulation])  # fmt: skip
    return cfg


def test_detectron2_deformable_checkpoints_round_trip_and_match_its_block(tmp_path):
    from torchvision.ops import deform_conv2d

    torch.manual_seed(0)
    model = build_model(_dcn_rcnn_cfg("sigmoid")).eval()
    ours = model.state_dict()
    with torch.no_grad():
        for k, v in ours.items():
            if ".conv2.offset." in k:
                v.normal_(0, 0.05)  # offsets and mask logits that matter
    d2 = {k.replace(".conv2.offset.", ".conv2_offset."): v for k, v in ours.items()}
    assert sum(".conv2_offset." in k for k in d2) == 2 * 6  # res3-res5, 2 blocks each
    src, out = tmp_path / "d2.pth", tmp_path / "ours.pth"
    torch.save({"model": d2, "__author__": "detectron2"}, src)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(_dcn_rcnn_cfg("sigmoid").dump())
    argv = ["--from", "detectron2", "--input", str(src), "--output", str(out),
            "--config-file", str(cfg_file)]  # fmt: skip
    assert convert_checkpoint.main(argv) == 0
    got = torch_load(str(out))["model"]
    assert got.keys() == ours.keys() and all(torch.equal(got[k], ours[k]) for k in ours)
    # detectron2's DeformBottleneckBlock forward, written out from its source (offset_mask =
    # conv2_offset(x); the first two thirds are the offsets, sigmoid of the last third the
    # mask; torchvision's deform_conv2d takes the same layouts), against our converted block.
    block = model.backbone.bottom_up.res4[0]
    x = torch.randn(1, block.conv2.weight.shape[1], 20, 24)
    w_off, b_off = (
        d2["backbone.bottom_up.res4.0.conv2_offset.weight"],
        d2["backbone.bottom_up.res4.0.conv2_offset.bias"],
    )
    offset_mask = torch.nn.functional.conv2d(x, w_off, b_off, stride=block.conv2.stride, padding=1)
    offset, mask = offset_mask[:, :18], offset_mask[:, 18:].sigmoid()
    ref = deform_conv2d(x, offset, block.conv2.weight, stride=block.conv2.stride, padding=1,
                        mask=mask)  # fmt: skip
    ref = block.conv2.norm(ref)
    with torch.no_grad():
        assert torch.allclose(block.conv2(x), ref, atol=1e-5)
        # Our own modulation (2 x sigmoid) gives other outputs: the switch is what matches.
        block.conv2.modulation = "2sigmoid"
        assert not torch.allclose(block.conv2(x), ref, atol=1e-3)
