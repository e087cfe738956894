"""HintPose on HRNet: parameters by hand, HRNet's names intact (a checkpoint loads with only the
new layers missing), a loaded HRNet checkpoint giving HRNet's output at the first step, the hops
wired as the report's residual refinement (against a reference built from HRNet's own layers),
one supervised output per hop, and the cue's position reaching the prediction."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from multitask_pose.config import flatten_config
from pose_topdown.data import TopDownTrainMapper
from pose_topdown.data.mapper import person_dicts
from pose_topdown.modeling import HintPoseHRNet, PoseHighResolutionNet
from topdown_testing import SAMPLE, hintpose_parameters, sample_cfg
from topdown_testing import count_parameters as _count


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
        # The residual branches start at zero (their last BN), and that BN learns at once: the
        # cue's from every hop's loss, the feedback's from the later hops'.
        norms = model.pose_net.residual_norms()
        assert len(norms) == (2 if hops > 1 else 1)
        for bn in norms:
            assert bn.weight.grad.abs().sum() > 0


def test_checkpoints_across_hrnet_and_hintpose_name_the_new_and_unused_keys(tmp_path, caplog):
    """A HintPose checkpoint into plain HRNet reports HintPose's own layers as unused; an HRNet
    checkpoint into HintPose reports exactly those layers as missing (fvcore's messages, through
    TopDownCheckpointer)."""
    import logging

    from pose_topdown.engine import TopDownCheckpointer

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


def _tiny(**kw):
    """A small HRNet-shaped config (the wiring, not the size, is under test)."""
    return dict(width=8, stem_blocks=1, num_modules=(1, 1, 1), num_blocks=(1, 1, 1), **kw)


def _perturbed_hrnet(seed=0):
    """A tiny HRNet with every weight, bias and BN statistic random: a stand-in for a trained
    checkpoint (the official init leaves BN at identity and biases at zero)."""
    torch.manual_seed(seed)
    hrnet = PoseHighResolutionNet(**_tiny(init="kaiming"))
    with torch.no_grad():
        for name, t in hrnet.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else
                        torch.randn_like(t) * (0.1 if "final_layer" in name else 0.5))  # fmt: skip
    return hrnet.eval()


@pytest.mark.parametrize("cue_on, hops", [(True, 3), (False, 3), (True, 1)])
@pytest.mark.parametrize("train", [False, True])
def test_a_loaded_hrnet_checkpoint_gives_hrnet_output_from_every_hop_at_step_0(cue_on, hops,
                                                                                train):
    """Report section 2: the cue and the refinement are residual branches "to reuse ImageNet
    pre-trained models". With an HRNet checkpoint loaded, every hop's heatmaps equal HRNet's
    exactly, whatever the cue, in train and eval mode; the branches' last BN still gets a
    gradient, so they learn from the first step."""
    hrnet = _perturbed_hrnet()
    torch.manual_seed(1)
    hint = HintPoseHRNet(**_tiny(init="kaiming", hops=hops, cue_on=cue_on))
    missing, unexpected = hint.load_state_dict(hrnet.state_dict(), strict=False)
    assert unexpected == [] and all(m.split(".")[0] in {"input_refine", "update", "extract"}
                                    for m in missing)  # fmt: skip
    hrnet.train(train)
    hint.train(train)
    x = torch.randn(2, 3, 64, 32)
    cue = torch.rand(2, 1, 64, 32) if cue_on else None
    want = hrnet(x)["heatmap"]
    out = hint(x, cue)
    assert set(out) == set(hint.supervised_outputs())
    for name, heat in out.items():
        assert torch.equal(heat, want), name
    sum(h.square().sum() for h in out.values()).backward()
    for bn in hint.residual_norms():
        assert bn.weight.grad.abs().sum() > 0
    assert len(hint.residual_norms()) == int(cue_on) + int(hops > 1)


def _reference_hops(hrnet, hint, x, cue):
    """The report's wiring written out on HRNet's own modules (a plain PoseHighResolutionNet with
    the same weights) and HintPose's new blocks: the cue merged by summation after the stem, hop 1
    from layer1's features F, hop t from F + extract(update(H_{t-1}))."""
    f = hrnet.stem(x)
    if cue is not None:
        small = F.interpolate(cue, size=f.shape[-2:], mode="bilinear", align_corners=False)
        f = f + hint.input_refine(torch.cat([f, small], 1))
    base = hrnet.layer1(f)
    heats = [hrnet.final_layer(hrnet.stages(base))]
    for _ in range(hint.hops - 1):
        heats.append(hrnet.final_layer(hrnet.stages(base + hint.extract(hint.update(heats[-1])))))
    return heats


@pytest.mark.parametrize("cue_on", [True, False])
def test_hops_are_the_reports_residual_refinement(cue_on):
    """Each hop's output against the reference wiring, with every residual branch non-zero (as
    after training): the prediction is the last hop, hops 2-3 start from F plus the feedback, and
    the feedback is residual."""
    hrnet = _perturbed_hrnet(seed=2)
    hint = HintPoseHRNet(**_tiny(hops=3, cue_on=cue_on))
    hint.load_state_dict(hrnet.state_dict(), strict=False)
    with torch.no_grad():
        for bn in hint.residual_norms():
            bn.weight.normal_(0, 1)
            bn.bias.normal_(0, 0.5)
        for m in (hint.update, hint.extract, *( [hint.input_refine] if cue_on else [])):
            for p in m.parameters():
                if p.dim() == 4:
                    p.normal_(0, 0.3)
    hint.eval()
    hrnet.eval()
    torch.manual_seed(3)
    x = torch.randn(2, 3, 64, 32)
    cue = torch.rand(2, 1, 64, 32) if cue_on else None
    with torch.no_grad():
        out = hint(x, cue)
        ref = _reference_hops(hrnet, hint, x, cue)
    names = ["heatmap_hop1", "heatmap_hop2", "heatmap"]
    for name, r in zip(names, ref):
        torch.testing.assert_close(out[name], r, rtol=1e-5, atol=1e-6, msg=name)
    # The hops differ from each other: each refines the previous one.
    assert not torch.allclose(ref[0], ref[1]) and not torch.allclose(ref[1], ref[2])


def test_the_cue_position_reaches_the_prediction():
    """Two cues of the same mean (one Gaussian moved inside the crop) give different heatmaps:
    the network reads where the cue points, not how much of it there is."""
    hrnet = _perturbed_hrnet(seed=4)
    hint = HintPoseHRNet(**_tiny(hops=1, cue_on=True))
    hint.load_state_dict(hrnet.state_dict(), strict=False)
    with torch.no_grad():
        for p in hint.input_refine.parameters():
            p.normal_(0, 0.3)
    hint.eval()
    from multitask_pose.codecs.utils import gaussian_heatmaps

    a = gaussian_heatmaps(torch.tensor([[[10.0, 16.0]]]), (32, 64), 2.0)
    b = gaussian_heatmaps(torch.tensor([[[20.0, 44.0]]]), (32, 64), 2.0)
    torch.testing.assert_close(a.mean(), b.mean())
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        ha, hb = hint(x, a)["heatmap"], hint(x, b)["heatmap"]
        torch.testing.assert_close(ha, _reference_hops(hrnet, hint, x, a)[-1])
    assert (ha - hb).abs().max() > 1e-3 * ha.abs().max()


# ---------------------------------------------------------------- the report's settings, one by one
COCO = Path(__file__).resolve().parents[2] / "configs" / "COCO"
ENSEMBLE_RECIPE = COCO / "ensembles" / "hintpose_6_models_256x192.yaml"


def _recipe(name):
    from pose_topdown import get_topdown_cfg

    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(COCO / name))
    return cfg


def _kinds(cfg):
    """(cue, hops) of a HintPose config: the report's model kinds."""
    return (cfg.MODEL.TOPDOWN.CUE == "JointHintCue" and cfg.MODEL.HINTPOSE.CUE_ON,
            cfg.MODEL.HINTPOSE.HOPS)  # fmt: skip


_NET = HintPoseHRNet(**_tiny(hops=3, cue_on=True))
_HINTPOSE = [f"hintpose_w{w}_256x192.yaml" for w in (32, 48)]
# (setting, the report's words (HintPose technical report), what it is, ours)
HINTPOSE_SETTINGS = [
    ("baseline network", "sec. 2: we adopt HRNet as a baseline architecture",
     ["PoseHighResolutionNet"] * 2, lambda: [type(_NET).__mro__[1].__name__] * 2),
    ("residual branches", "sec. 2: two simple convolutional layers with a residual connection",
     {"input_refine": 2, "update+extract": 2},
     lambda: {"input_refine": sum(isinstance(m, torch.nn.Conv2d)
                                  for m in _NET.input_refine.modules()),
              "update+extract": sum(isinstance(m, torch.nn.Conv2d)
                                    for m in [*_NET.update.modules(), *_NET.extract.modules()])}),
    ("branches start at zero", "sec. 2: to reuse ImageNet pre-trained models", [0.0, 0.0],
     lambda: [float(bn.weight.abs().max()) for bn in _NET.residual_norms()]),
    ("instance cue", "sec. 2.1: a single channel Gaussian heatmap peaked on the target person",
     (1, "JointHintCue"), lambda: (_NET.cue_channels, _recipe(_HINTPOSE[0]).MODEL.TOPDOWN.CUE)),
    ("feedback blocks", "sec. 2.2: two 1x1 convolutional blocks", [(1, 1), (1, 1)],
     lambda: [_NET.update[0].kernel_size, _NET.extract[0].kernel_size]),
    ("the branches' layers", "sec. 2 and 2.2: convolutional blocks with a residual connection "
     "(conv-BN-ReLU, then conv-BN before the sum: this project's reading)",
     [["Conv2d", "BatchNorm2d", "ReLU"], ["Conv2d", "BatchNorm2d"]] * 2,
     lambda: [[type(m).__name__ for m in block]
              for block in (*_NET.input_refine, _NET.update, _NET.extract)]),
    ("feedback onto layer1's features", "sec. 2.2: onto features after layer1 of HRNet",
     (_NET.layer1[-1].conv3.out_channels,) * 2,
     lambda: (_NET.extract[0].out_channels, _NET.update[0].out_channels)),
    ("hops", "sec. 3.1: evaluated for three hops", [3, 3],
     lambda: [_recipe(r).MODEL.HINTPOSE.HOPS for r in _HINTPOSE]),
    ("every hop supervised by MSE", "sec. 3.1: all of its prediction outputs ... mean squared "
     "error", ({"heatmap_hop1": 1.0, "heatmap_hop2": 1.0, "heatmap": 1.0}, "JointsMSELoss"),
     lambda: (_NET.supervised_outputs(), _recipe(_HINTPOSE[0]).MODEL.TOPDOWN.LOSS_NAME)),
    ("prediction after three hops", "sec. 3.1: the output heatmaps after three hops", "heatmap",
     lambda: _NET.prediction),
    ("training cue", "sec. 3.1: a random ground-truth joint, its x, y augmented", True,
     lambda: _training_cue_is_a_jittered_joint()),
    ("HRNet's hyper-parameters", "sec. 3.1: the same hyper-parameters as the official HRNet",
     [], lambda: _differences_from_hrnet()),
    ("small boxes ignored", "sec. 3.1: bounding boxes smaller than 32 x 32", [32.0, 32.0],
     lambda: [_recipe(r).TEST.TOPDOWN.DET_MIN_SIZE for r in _HINTPOSE]),
    ("inference cues", "sec. 3.1: local peaks of another model's joint heatmaps in each box",
     ["keypoints"] * 2, lambda: [_recipe(r).TEST.TOPDOWN.HINT.SOURCE for r in _HINTPOSE]),
    ("one crop per cue", "sec. 3.1: the same cropped image fed multiple times, with each cue",
     [0, 0], lambda: [_recipe(r).TEST.TOPDOWN.HINT.MAX_PER_BOX for r in _HINTPOSE]),
    ("6-model ensemble", "footnote 2: two with cue and refinement, two cue only, two refinement "
     "only, heatmaps averaged", ({(True, 3): 2, (True, 1): 2, (False, 3): 2}, []),
     lambda: _ensemble_kinds()),
]


def _training_cue_is_a_jittered_joint():
    """Training cues sit on labelled joints of the person, moved by the jitter: every drawn cue
    is within 5 jitter sigmas of a labelled joint, and they are not all on the joints."""
    from pose_topdown.data.cues import JointHintCue

    cue = JointHintCue(sigma=6.0, train_jitter=0.05)
    kp = np.array([[10.0, 20.0, 2], [50.0, 80.0, 1], [90.0, 10.0, 0]])  # the last unlabelled
    np.random.seed(0)
    drawn = np.array([cue.training_hints({"keypoints": kp, "box": [0, 0, 100, 100]})[0, :2]
                      for _ in range(200)])  # fmt: skip
    d = np.linalg.norm(drawn[:, None] - kp[None, :2, :2], axis=-1).min(1)
    return bool((d < 5 * 0.05 * 100).all() and (d > 0.1).mean() > 0.5)


def _differences_from_hrnet():
    """The keys where a HintPose recipe differs from its HRNet recipe, beyond HintPose's own
    (network, cue, hints, the report's inference) and the ensemble's."""
    own = ("MODEL.TOPDOWN.POSE_NET", "MODEL.TOPDOWN.CUE", "MODEL.HINTPOSE.", "MODEL.TOPDOWN.HINT",
           "TEST.TOPDOWN.HINT.", "TEST.TOPDOWN.DET_MIN_SIZE")  # fmt: skip
    out = []
    for w in (32, 48):
        a, b = _recipe(f"hintpose_w{w}_256x192.yaml"), _recipe(f"hrnet_w{w}_256x192.yaml")
        for key, value in flatten_config(a).items():
            if not key.startswith(own) and flatten_config(b).get(key) != value:
                out.append((w, key))
    return out


def _ensemble_kinds():
    """The member kinds of the 6-model ensemble recipe, and its differences from the HintPose
    recipe whose inference it runs (beyond the ensemble's own keys)."""
    from pose_topdown import get_topdown_cfg

    root = Path(__file__).resolve().parents[4]
    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(ENSEMBLE_RECIPE))
    kinds = {}
    for member in cfg.MODEL.ENSEMBLE.CONFIGS:
        m = get_topdown_cfg()
        m.merge_from_file(str(root / member))
        kinds[_kinds(m)] = kinds.get(_kinds(m), 0) + 1
    base, diff = flatten_config(_recipe("hintpose_w48_256x192.yaml")), []
    for key, value in flatten_config(cfg).items():
        if not key.startswith(("MODEL.ENSEMBLE.", "MODEL.WEIGHTS", "MODEL.TOPDOWN.POSE_NET",
                               "OUTPUT_DIR")) and base.get(key) != value:  # fmt: skip
            diff.append(key)
    return kinds, diff


@pytest.mark.parametrize("setting", HINTPOSE_SETTINGS, ids=[s[0] for s in HINTPOSE_SETTINGS])
def test_hintpose_setting_matches_the_report(setting):
    name, source, report, ours = setting
    got = ours()
    assert got == report, f"{name}: ours {got!r}, the report {report!r} ({source})"


def test_the_6_model_ensemble_recipe_builds_with_its_mixed_members(tmp_path):
    """The ensemble recipe with its six member kinds, each as a tiny network of the same kind
    (its member configs' HintPose keys on a small HRNet, random weights), builds and predicts:
    the cue goes to the four cued members only."""
    from pose_topdown import get_topdown_cfg

    root = Path(__file__).resolve().parents[4]
    ens = get_topdown_cfg()
    ens.merge_from_file(str(ENSEMBLE_RECIPE))
    small = ["MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)", "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)"]
    configs, weights = [], []
    for i, member in enumerate(ens.MODEL.ENSEMBLE.CONFIGS):
        m = get_topdown_cfg()
        m.merge_from_file(str(root / member))
        cue, hops = _kinds(m)
        cfg = sample_cfg(*small, "MODEL.TOPDOWN.POSE_NET", "HintPoseHRNet",
                         "MODEL.TOPDOWN.CUE", "JointHintCue" if cue else "",
                         "MODEL.HINTPOSE.CUE_ON", str(cue),
                         "MODEL.HINTPOSE.HOPS", str(hops))  # fmt: skip
        torch.manual_seed(i)
        model = build_model(cfg)
        configs.append(str(tmp_path / f"m{i}.yaml"))
        weights.append(str(tmp_path / f"m{i}.pth"))
        (tmp_path / f"m{i}.yaml").write_text(cfg.dump())
        torch.save({"model": model.state_dict()}, weights[-1])
    cfg = sample_cfg(*small, "MODEL.TOPDOWN.POSE_NET", "HeatmapEnsemble",
                     "MODEL.TOPDOWN.CUE", ens.MODEL.TOPDOWN.CUE,
                     "MODEL.ENSEMBLE.CONFIGS", str(configs), "MODEL.ENSEMBLE.WEIGHTS", str(weights),
                     "TEST.TOPDOWN.BACKEND", "eager")  # fmt: skip
    model = build_model(cfg).eval()
    got = [m.cue_channels for m in model.pose_net.members]
    assert sorted(got) == [0, 0, 1, 1, 1, 1]
    seen = []
    for m in model.pose_net.members:
        m.register_forward_hook(lambda mod, args, out: seen.append(args[1] is not None))
    image = torch.zeros(3, 120, 90)
    hints = torch.tensor([[[40.0, 50.0, 1.0], [45.0, 80.0, 0.9]]])
    with torch.no_grad():
        out = model.estimate(image, torch.tensor([[10.0, 10.0, 70.0, 110.0]]), torch.ones(1),
                             hints)  # fmt: skip
    assert seen == [c == 1 for c in got]
    assert out.pred_keypoints.shape[1:] == (17, 3) and torch.isfinite(out.pred_keypoints).all()
