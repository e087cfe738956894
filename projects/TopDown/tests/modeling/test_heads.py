"""The head seam (pose_topdown/modeling/heads.py): each head's flip test and loss equal an
independent reference, the meta-architecture runs a head whatever its outputs, and a head, codec and
loss that do not fit together are refused when the model is built.

The SimCC head and loss follow MMPose 1.x (open-mmlab/mmpose @759b39c):
``mmpose/models/heads/coord_cls_heads/simcc_head.py``, ``mmpose/models/utils/tta.py``,
``mmpose/models/losses/classification_loss.py``; the memorisation run shows a non-heatmap codec
trains and decodes through the unchanged meta-architecture."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

from multitask_pose.codecs import GaussianHeatmapCodec, SimCCCodec
from pose_topdown.modeling import TOPDOWN_HEAD_REGISTRY, build_topdown_head
from pose_topdown.modeling.simcc_head import KLDiscretLoss
from topdown_testing import sample_cfg

SIMCC = ["MODEL.TOPDOWN.HEAD.NAME", "SimCCHead", "MODEL.TOPDOWN.CODEC.NAME", "SimCCCodec",
         "MODEL.TOPDOWN.LOSS_NAME", "KLDiscretLoss", "MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)",
         "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)"]  # fmt: skip


def test_registered_heads():
    assert {"HeatmapHead", "SoftArgmaxHead", "SimCCHead"} <= set(TOPDOWN_HEAD_REGISTRY._obj_map)


def test_a_module_registers_itself_and_its_keys_without_an_import_line():
    """No import line names simcc_head.py: ``import pose_topdown`` alone (a fresh process) registers
    its head and loss and adds its keys (``topdown_keys``) to every top-down config."""
    code = ("import pose_topdown\n"
            "from pose_topdown.modeling import TOPDOWN_HEAD_REGISTRY, TOPDOWN_LOSS_REGISTRY\n"
            "c = pose_topdown.get_topdown_cfg().MODEL.TOPDOWN.CODEC\n"
            "print('SimCCHead' in TOPDOWN_HEAD_REGISTRY, 'KLDiscretLoss' in TOPDOWN_LOSS_REGISTRY,"
            " c.SIMCC_SIGMA, c.SIMCC_SPLIT_RATIO)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["True", "True", "6.0", "2.0"], out.stderr[-2000:]


# setting -> (ours, MMPose's, where)
SIMCC_HEAD_SETTINGS = {
    "x classifier: flattened maps -> W x ratio bins": (
        lambda h: tuple(h.x_classifier.weight.shape), (128, 16 * 24), "simcc_head.py:153-158"),
    "y classifier: flattened maps -> H x ratio bins": (
        lambda h: tuple(h.y_classifier.weight.shape), (192, 16 * 24), "simcc_head.py:153-159"),
    "classifier init std 0.01": (
        lambda h: round(float(h.x_classifier.weight.detach().std()), 3), 0.01, "simcc_head.py:369"),
    "classifier bias 0": (lambda h: float(h.y_classifier.bias.detach().abs().max()), 0.0,
                          "simcc_head.py:369"),
    "loss beta": (lambda h: h.loss_fn.beta, 1.0, "classification_loss.py:159"),
}


@pytest.mark.parametrize("name", sorted(SIMCC_HEAD_SETTINGS))
def test_simcc_head_settings(name):
    torch.manual_seed(0)
    head = build_topdown_head(sample_cfg(*SIMCC))
    get, want, where = SIMCC_HEAD_SETTINGS[name]
    assert get(head) == pytest.approx(want, abs=1e-3), (name, where)


def reference_kl_loss(px, py, tx, ty, w):
    """MMPose's KLDiscretLoss (classification_loss.py:177-215) in numpy: per keypoint and axis, the
    mean over bins of t (log t - log softmax(p)) (0 where t = 0), times its weight, summed, / K."""
    total = 0.0
    k = w.shape[1]
    for p, t in ((px, tx), (py, ty)):
        p = p.reshape(-1, p.shape[-1]).astype(np.float64)
        t = t.reshape(-1, t.shape[-1]).astype(np.float64)
        logp = p - p.max(1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
        kl = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1)) - logp), 0.0).mean(1)
        total += (kl * w.reshape(-1)).sum()
    return total / k


def test_kl_discret_loss_equals_the_reference():
    codec = SimCCCodec((64, 96), (16, 24))
    rng = np.random.default_rng(0)
    kp = np.stack([rng.uniform(0, 64, (4, 17)), rng.uniform(0, 96, (4, 17)),
                   rng.integers(0, 3, (4, 17))], -1)  # fmt: skip
    t = codec.encode(kp)
    px, py = torch.randn(4, 17, 128) * 3, torch.randn(4, 17, 192) * 3
    got = float(KLDiscretLoss()((px, py), t))
    want = reference_kl_loss(px.numpy(), py.numpy(), t["x_labels"].numpy(),
                             t["y_labels"].numpy(), t["target_weight"].numpy())  # fmt: skip
    assert got == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="SimCCHead"):
        KLDiscretLoss()(torch.zeros(4, 17, 24, 16), t)


def test_simcc_flip_test_merges_the_mirrored_outputs():
    """MMPose's flip test (simcc_head.py:259-274, tta.py:85-86): the mirrored crop's x outputs
    reversed and both axes' keypoints exchanged, then averaged with the crop's, then decoded."""
    torch.manual_seed(0)
    head = build_topdown_head(sample_cfg(*SIMCC)).eval()
    fl = head.flip_indices.numpy()
    assert (fl != np.arange(17)).any()
    x, y = torch.randn(3, 17, 128), torch.randn(3, 17, 192)
    mx, my = torch.randn(3, 17, 128), torch.randn(3, 17, 192)
    got_xy, got_s = head.decode((x, y), (mx, my))
    ax = 0.5 * (x.numpy() + mx.numpy()[:, fl, ::-1])
    ay = 0.5 * (y.numpy() + my.numpy()[:, fl])
    idx = np.stack([ax.argmax(-1), ay.argmax(-1)], -1) / 2.0
    np.testing.assert_array_equal(got_xy.numpy(), idx)
    np.testing.assert_allclose(got_s.numpy(), np.minimum(ax.max(-1), ay.max(-1)), rtol=1e-6)
    # the head's forward: each keypoint's map flattened through the shared classifiers
    maps = torch.randn(2, 17, 24, 16)
    fx, fy = head(maps)
    w = head.x_classifier.weight.detach().numpy()
    ref = maps.numpy().reshape(2, 17, -1) @ w.T + head.x_classifier.bias.detach().numpy()
    np.testing.assert_allclose(fx.detach().numpy(), ref, rtol=1e-4, atol=1e-5)
    assert fy.shape == (2, 17, 192)


def test_heatmap_head_flip_test_is_the_official_one():
    """HeatmapHead: the mirrored maps flipped back (channels exchanged, columns reversed), shifted
    one column right with SHIFT_HEATMAP, averaged, then decoded by the codec."""
    cfg = sample_cfg()
    head = build_topdown_head(cfg)
    fl = head.flip_indices.numpy()
    a, b = torch.rand(2, 17, 24, 16), torch.rand(2, 17, 24, 16)
    back = b.numpy()[:, fl, :, ::-1].copy()
    back[..., 1:] = back[..., :-1].copy()
    want = head.codec.decode(torch.as_tensor(0.5 * (a.numpy() + back)))
    got = head.decode(a, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6, atol=1e-6)
    head.shift_heatmap = False
    unshifted = head.codec.decode(torch.as_tensor(0.5 * (a.numpy() + b.numpy()[:, fl, :, ::-1])))
    np.testing.assert_allclose(head.decode(a, b)[0].numpy(), unshifted[0].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(head.decode(a)[0].numpy(), head.codec.decode(a)[0].numpy())


def test_mismatched_head_codec_and_loss_are_refused():
    with pytest.raises(ValueError, match="decodes GaussianHeatmapCodec outputs.*SimCCCodec"):
        build_model(sample_cfg("MODEL.TOPDOWN.CODEC.NAME", "SimCCCodec",
                               "MODEL.TOPDOWN.LOSS_NAME", "KLDiscretLoss"))  # fmt: skip
    with pytest.raises(ValueError, match=r"KLDiscretLoss.*\['x_labels', 'y_labels'\]"):
        build_model(sample_cfg("MODEL.TOPDOWN.LOSS_NAME", "KLDiscretLoss"))
    with pytest.raises(ValueError, match=r"JointsMSELoss.*\['heatmaps'\]"):
        build_model(sample_cfg(*SIMCC, "MODEL.TOPDOWN.LOSS_NAME", "JointsMSELoss"))
    with pytest.raises(ValueError, match="decodes SoftArgmaxCodec"):
        build_model(sample_cfg("MODEL.TOPDOWN.HEAD.NAME", "SoftArgmaxHead"))
    assert isinstance(build_model(sample_cfg()).codec, GaussianHeatmapCodec)


def test_simcc_model_trains_through_the_meta_architecture():
    """A few steps of the SimCC model: the head's classifiers get gradients (the meta-architecture
    applies the head before the loss) and its state dict holds them; the pose network's keys are
    the heatmap model's, so its checkpoints load."""
    from topdown_testing import trained_predictor

    predictor = trained_predictor(sample_cfg(*SIMCC), {"loss_heatmap"}, steps=4)
    keys = set(predictor.model.state_dict())
    assert {"head.x_classifier.weight", "head.y_classifier.bias"} <= keys
    heatmap_keys = set(build_model(sample_cfg()).state_dict())
    assert keys - heatmap_keys == {"head.x_classifier.weight", "head.x_classifier.bias",
                                   "head.y_classifier.weight", "head.y_classifier.bias"}
    assert heatmap_keys <= keys


ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.slow  # about a minute alone on a 2-core CPU (150 iterations, AP 1.000 measured)
def test_simcc_memorises_the_coco_sample(tmp_path):
    """SimCC through the unchanged meta-architecture, mapper, flip test and evaluator:
    HRNet-W18-small with the SimCC head, codec and loss, trained on the four real COCO sample
    images' persons and evaluated on them, reaches keypoint AP >= 0.8."""
    from test_topdown_memorisation import MEMORISE_OPTS, RECIPE

    # sigma: MMPose's 6 bins at 256-pixel-high crops, scaled to these 96-pixel ones
    cmd = [sys.executable, str(ROOT / "projects" / "TopDown" / "train_net.py"), "--config-file",
           str(RECIPE), *MEMORISE_OPTS, *SIMCC[:6], "MODEL.TOPDOWN.CODEC.SIMCC_SIGMA", "2.25",
           "SOLVER.MAX_ITER", "150", "SOLVER.STEPS", "(120, 142)",
           "OUTPUT_DIR", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    kp = json.loads((tmp_path / "results_coco_person_sample.json").read_text())["keypoints"]
    assert kp["AP"] >= 80.0, kp
