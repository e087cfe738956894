"""HintPose on HRNet: parameters by hand, HRNet's names intact (a checkpoint loads with only the
new layers missing), one supervised output per hop, and the cue reaching the prediction."""

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from topdown.data import TopDownTrainMapper
from topdown.data.mapper import person_dicts
from topdown.modeling import HintPoseHRNet, PoseHighResolutionNet
from topdown_testing import SAMPLE, sample_cfg


def _count(m):
    return sum(p.numel() for p in m.parameters())


def hintpose_parameters(width, hops, cue_on, k=17):
    """By hand: HRNet (counted from our HRNet, whose count test_pose_nets pins to the published
    figure) plus the new layers: input refinement conv3x3 (64 + 1 -> 64) + BN and conv3x3
    (64 -> 64) + BN with the cue; update conv1x1 (K -> 256) + BN and extract conv1x1 (256 -> 256)
    + BN with more than one hop; no biases."""
    n = _count(PoseHighResolutionNet(width=width))
    if cue_on:
        n += (65 * 64 * 9 + 2 * 64) + (64 * 64 * 9 + 2 * 64)
    if hops > 1:
        n += (k * 256 + 2 * 256) + (256 * 256 + 2 * 256)
    return n


def test_parameters_by_hand_and_hrnet_checkpoint_names():
    hrnet = PoseHighResolutionNet(width=32)
    model = HintPoseHRNet(width=32, hops=3, cue_on=True)
    assert _count(model) == hintpose_parameters(32, 3, True) == _count(hrnet) + 145_472
    missing, unexpected = model.load_state_dict(hrnet.state_dict(), strict=False)
    assert unexpected == []
    assert {m.split(".")[0] for m in missing} == {"input_refine", "update", "extract"}
    assert _count(HintPoseHRNet(width=32, hops=1, cue_on=False)) == _count(hrnet)


def test_one_supervised_output_per_hop_through_the_meta_architecture():
    persons = person_dicts(DatasetCatalog.get(SAMPLE), 1, False)
    for hops, expected in [(3, {"loss_heatmap_hop1", "loss_heatmap_hop2", "loss_heatmap"}),
                           (1, {"loss_heatmap"})]:  # fmt: skip
        cfg = sample_cfg("MODEL.TOPDOWN.POSE_NET", "HintPoseHRNet", "MODEL.TOPDOWN.CUE", "BoxCue",
                         "MODEL.HINTPOSE.HOPS", str(hops), "MODEL.HRNET.INIT", "kaiming",
                         "MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)",
                         "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)")  # fmt: skip
        torch.manual_seed(0)
        model = build_model(cfg)
        np.random.seed(0)
        mapper = TopDownTrainMapper(cfg, is_train=True)
        losses = model([mapper(p) for p in persons[:4]])
        assert set(losses) == expected
        total = sum(losses.values())
        assert torch.isfinite(total)
        total.backward()
        assert model.pose_net.input_refine[0][0].weight.grad.abs().sum() > 0
        if hops > 1:  # the later hops train the feedback blocks
            assert model.pose_net.update[0].weight.grad.abs().sum() > 0
        # The cue reaches the prediction: another cue, another heatmap.
        model.eval()
        x = torch.randn(1, 3, 96, 64)
        with torch.no_grad():
            a = model.pose_net(x, torch.zeros(1, 1, 96, 64))["heatmap"]
            b = model.pose_net(x, torch.ones(1, 1, 96, 64))["heatmap"]
        assert not torch.allclose(a, b)


def test_checkpoints_across_hrnet_and_hintpose_name_the_new_and_unused_keys(tmp_path, caplog):
    """A HintPose checkpoint into plain HRNet reports HintPose's own layers as unused; an HRNet
    checkpoint into HintPose reports exactly those layers as missing (fvcore's messages, through
    TopDownCheckpointer)."""
    import logging

    from topdown.engine import TopDownCheckpointer

    small = ["MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)", "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)"]
    hint = build_model(sample_cfg(*small, "MODEL.TOPDOWN.POSE_NET", "HintPoseHRNet",
                                  "MODEL.TOPDOWN.CUE", "BoxCue"))  # fmt: skip
    plain = build_model(sample_cfg(*small))
    new = {"input_refine", "update", "extract"}
    torch.save({"model": hint.state_dict()}, tmp_path / "hint.pth")
    torch.save({"model": plain.state_dict()}, tmp_path / "plain.pth")
    for model, ckpt, says in [(plain, "hint.pth", "not used by the model"),
                              (hint, "plain.pth", "not found in the checkpoint")]:  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fvcore"):
            TopDownCheckpointer(model).load(str(tmp_path / ckpt))
        text = " ".join(r.getMessage() for r in caplog.records if says in r.getMessage())
        named = {
            w.split(".")[1]
            for w in text.replace(",", " ").replace("{", " ").split()
            if w.startswith("pose_net.")
        }
        assert named == new, (ckpt, text[:500])
