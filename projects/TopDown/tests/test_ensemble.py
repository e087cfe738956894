"""Heatmap ensembles: an ensemble of a model with itself is that model (through the whole
inference: crops, flip test, decoding, NMS); an ensemble of two is the weighted mean of their
heatmaps, decoded once; members of other input sizes are resampled; bad members are refused at
build time."""

import pytest
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from topdown.data import TopDownTestMapper
from topdown_testing import SAMPLE, sample_cfg

SMALL = ["MODEL.TOPDOWN.INPUT_SIZE", "(64, 96)", "MODEL.TOPDOWN.HEATMAP_SIZE", "(16, 24)"]


def member(tmp_path, name, seed, *opts):
    """A small HRNet's config file and checkpoint (random weights from ``seed``)."""
    cfg = sample_cfg(*SMALL, *opts)
    torch.manual_seed(seed)
    model = build_model(cfg)
    for p in model.parameters():  # non-trivial heatmaps (the official init makes them ~0)
        p.data.normal_(0, 0.05)
    (tmp_path / f"{name}.yaml").write_text(cfg.dump())
    torch.save({"model": model.state_dict()}, tmp_path / f"{name}.pth")
    return str(tmp_path / f"{name}.yaml"), str(tmp_path / f"{name}.pth"), model.eval()


def ensemble(configs, weights, *opts):
    cfg = sample_cfg(*SMALL, "MODEL.TOPDOWN.POSE_NET", "HeatmapEnsemble",
                     "MODEL.ENSEMBLE.CONFIGS", str(list(configs)),
                     "MODEL.ENSEMBLE.WEIGHTS", str(list(weights)), *opts)  # fmt: skip
    return build_model(cfg).eval()


def test_ensemble_of_a_model_with_itself_is_the_model(tmp_path):
    a_cfg, a_w, a = member(tmp_path, "a", 0)
    ens = ensemble([a_cfg, a_cfg], [a_w, a_w])
    x = TopDownTestMapper(sample_cfg(*SMALL), SAMPLE)(DatasetCatalog.get(SAMPLE)[0])
    with torch.no_grad():
        want, got = a([x])[0]["instances"], ens([x])[0]["instances"]
    assert len(want) > 0
    torch.testing.assert_close(got.pred_keypoints, want.pred_keypoints)
    torch.testing.assert_close(got.scores, want.scores)


def test_ensemble_is_the_weighted_mean_of_heatmaps_resampled_to_one_size(tmp_path):
    a_cfg, a_w, a = member(tmp_path, "a", 0)
    b_cfg, b_w, b = member(tmp_path, "b", 1, "MODEL.TOPDOWN.INPUT_SIZE", "(32, 64)",
                           "MODEL.TOPDOWN.HEATMAP_SIZE", "(8, 16)")  # fmt: skip
    ens = ensemble([a_cfg, b_cfg], [a_w, b_w], "MODEL.ENSEMBLE.MEMBER_WEIGHTS", "[3.0, 1.0]")
    crops = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        ha = a.pose_net(crops)["heatmap"]
        small = F.interpolate(crops, size=(64, 32), mode="bilinear", align_corners=False)
        hb = F.interpolate(b.pose_net(small)["heatmap"], size=(24, 16), mode="bilinear",
                           align_corners=False)  # fmt: skip
        got = ens.pose_net(crops)["heatmap"]
    assert got.shape == (2, 17, 24, 16)
    torch.testing.assert_close(got, 0.75 * ha + 0.25 * hb)
    # Decoded once: the ensemble's keypoints are the decoding of the mean, which differs from
    # the mean of the two decodings.
    mean_xy = ens.codec.decode(got)[0]
    per_model = 0.75 * ens.codec.decode(ha)[0] + 0.25 * ens.codec.decode(
        F.interpolate(hb, size=(24, 16))
    )[0]
    assert not torch.allclose(mean_xy, per_model)


def test_bad_members_are_refused_at_build_time(tmp_path):
    a_cfg, a_w, _ = member(tmp_path, "a", 0)
    from topdown import get_topdown_cfg
    from topdown.modeling import build_pose_net

    cfg14 = get_topdown_cfg()
    cfg14.merge_from_list(["MODEL.TOPDOWN.NUM_KEYPOINTS", "14", *SMALL,
                           "MODEL.HRNET.WIDTH", "18", "MODEL.HRNET.STEM_BLOCKS", "1",
                           "MODEL.HRNET.NUM_MODULES", "(1, 1, 1)",
                           "MODEL.HRNET.NUM_BLOCKS", "(1, 1, 1)"])  # fmt: skip
    (tmp_path / "k14.yaml").write_text(cfg14.dump())
    state = {f"pose_net.{k}": v for k, v in build_pose_net(cfg14).state_dict().items()}
    torch.save({"model": state}, tmp_path / "k14.pth")
    with pytest.raises(ValueError, match="predicts 14 keypoints.*share the keypoint set"):
        ensemble([a_cfg, str(tmp_path / "k14.yaml")], [a_w, str(tmp_path / "k14.pth")])
    with pytest.raises(ValueError, match="one checkpoint per config"):
        ensemble([a_cfg, a_cfg], [a_w])
    with pytest.raises(ValueError, match="MEMBER_WEIGHTS"):
        ensemble([a_cfg], [a_w], "MODEL.ENSEMBLE.MEMBER_WEIGHTS", "[1.0, 2.0]")
    other_std = sample_cfg(*SMALL, "MODEL.PIXEL_STD", "[1.0, 1.0, 1.0]")
    (tmp_path / "std.yaml").write_text(other_std.dump())
    with pytest.raises(ValueError, match="MODEL.PIXEL_STD.*same input"):
        ensemble([a_cfg, str(tmp_path / "std.yaml")], [a_w, a_w])
    ens = ensemble([a_cfg], [a_w])
    ens.train()
    with pytest.raises(RuntimeError, match="for inference"):
        ens.pose_net(torch.zeros(1, 3, 96, 64))
