"""Heatmap ensembles: an ensemble of a model with itself is that model (through the whole
inference: crops, flip test, decoding, NMS); an ensemble of two is the weighted mean of their
heatmaps, decoded once; members of other input sizes see the crop and give heatmaps in the exact
geometry of the crop affine (against independent warps of known keypoints); cue and no-cue
members mix, as the HintPose report's ensemble (report 004, footnote 2); bad members are refused
at build time."""

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from torch import nn

from multitask_pose.codecs import GaussianHeatmapCodec
from pose_topdown.affine import apply_affine, box_to_center_size, crop_affine
from pose_topdown.data import TopDownTestMapper
from pose_topdown.modeling import HeatmapEnsemble, TopDownPoseNet
from topdown_testing import SAMPLE, SMALL, member, sample_cfg


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


def _upsample_2x_by_hand(h):
    """Linear interpolation to twice the cells along both axes, cell i -> cell 2i (the crop
    affine's pixel-index convention), the last odd row / column repeating the edge."""
    for dim in (-1, -2):
        nxt = torch.cat([h.narrow(dim, 1, h.shape[dim] - 1), h.narrow(dim, -1, 1)], dim)
        h = torch.stack([h, (h + nxt) / 2], dim=dim - 1 if dim == -2 else -1)
        h = h.flatten(dim - 1, dim) if dim == -2 else h.flatten(-2, -1)
    return h


def test_ensemble_is_the_weighted_mean_of_heatmaps_resampled_to_one_size(tmp_path):
    """A member at twice the size sees the crop linearly interpolated (its pixel 2i is the
    ensemble's pixel i), and its heatmap cell 2i lands on the ensemble's cell i."""
    a_cfg, a_w, a = member(tmp_path, "a", 0)
    b_cfg, b_w, b = member(tmp_path, "b", 1, "MODEL.TOPDOWN.INPUT_SIZE", "(128, 192)",
                           "MODEL.TOPDOWN.HEATMAP_SIZE", "(32, 48)")  # fmt: skip
    ens = ensemble([a_cfg, b_cfg], [a_w, b_w], "MODEL.ENSEMBLE.MEMBER_WEIGHTS", "[3.0, 1.0]")
    crops = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        ha = a.pose_net(crops)["heatmap"]
        hb = b.pose_net(_upsample_2x_by_hand(crops))["heatmap"][..., ::2, ::2]
        got = ens.pose_net(crops)["heatmap"]
    assert got.shape == hb.shape == (2, 17, 24, 16)
    torch.testing.assert_close(got, 0.75 * ha + 0.25 * hb)
    # Decoded once: the ensemble's keypoints are the decoding of the mean, which differs from
    # the mean of the two decodings.
    mean_xy = ens.codec.decode(got)[0]
    per_model = 0.75 * ens.codec.decode(ha)[0] + 0.25 * ens.codec.decode(hb)[0]
    assert not torch.allclose(mean_xy, per_model)


class _KnownHeatmaps(TopDownPoseNet):
    """A member that records the crops it is given and returns fixed heatmaps."""

    def __init__(self, heatmaps):
        super().__init__()
        self.heatmaps, self.seen = heatmaps, []
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images, cues=None):
        self.seen.append(images)
        return {"heatmap": self.heatmaps.expand(len(images), -1, -1, -1)}


def _centroids(maps, stride=1.0):
    """(N, C, h, w) -> (N, C, 2) intensity centroids in pixel-index coordinates x stride."""
    ys, xs = torch.meshgrid(*(torch.arange(n, dtype=maps.dtype) for n in maps.shape[-2:]),
                            indexing="ij")  # fmt: skip
    mass = maps.sum((-2, -1))
    xy = torch.stack([(maps * xs).sum((-2, -1)), (maps * ys).sum((-2, -1))], -1)
    return xy / mass[..., None] * stride


ENSEMBLE_SIZE = (192, 256)
BOX = np.array([[40.0, 30.0, 160.0, 330.0]])
IMAGE_KEYPOINTS = np.array([[[101.3, 187.9, 1], [70.6, 60.2, 1], [150.2, 300.7, 1]]])


def _in_crop(size):
    """The image keypoints in the crop of BOX at ``size`` (W, H): pose_topdown/affine.py's warp."""
    center, scale = box_to_center_size(BOX, size[0] / size[1])
    return apply_affine(IMAGE_KEYPOINTS, crop_affine(center, scale, 0.0, size))[..., :2]


@pytest.mark.parametrize("member_size", [(288, 384), (384, 512), (96, 128)])
def test_member_of_another_size_keeps_the_keypoints_where_they_are(member_size):
    """A member that outputs the codec's encoding of known keypoints in its own crop frame gives,
    through the ensemble, heatmaps whose peaks are those keypoints in the ensemble's crop frame
    (both frames from the crop affine of one box); and the crop the member is given shows a blob
    drawn at the ensemble-frame keypoint where the member's frame puts it. Ratios 1.5, 2, 0.5."""
    w, h = ENSEMBLE_SIZE
    codec = GaussianHeatmapCodec(member_size, (member_size[0] // 4, member_size[1] // 4), 2.0)
    want = torch.as_tensor(_in_crop(ENSEMBLE_SIZE))
    in_member = torch.as_tensor(_in_crop(member_size))
    labelled = np.concatenate([in_member, np.ones((1, 3, 1))], -1)
    net = _KnownHeatmaps(codec.encode(labelled)["heatmaps"].double())
    ens = HeatmapEnsemble(members=[net], member_input_sizes=[member_size],
                          input_size=ENSEMBLE_SIZE, heatmap_size=(w // 4, h // 4))  # fmt: skip
    ens.eval()
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")  # fmt: skip
    blobs = torch.exp(-((xs - want[0, :, 0, None, None]) ** 2
                        + (ys - want[0, :, 1, None, None]) ** 2) / (2 * 8.0**2))  # fmt: skip
    with torch.no_grad():
        heat = ens(blobs[None])["heatmap"]
    # The peaks: centroids (a linear interpolation keeps them), and the codec's own decoding
    # (DARK, exact for a Gaussian; the interpolated peak is nearly one where cells meet samples).
    torch.testing.assert_close(_centroids(heat, 4.0), want, atol=0.15, rtol=0)
    if member_size[0] > w:
        decoder = GaussianHeatmapCodec(ENSEMBLE_SIZE, (w // 4, h // 4), 2.0, decode="dark",
                                       blur_kernel=0)  # fmt: skip
        torch.testing.assert_close(decoder.decode(heat)[0].double(), want, atol=0.25, rtol=0)
    (seen,) = net.seen
    assert seen.shape == (1, 3, member_size[1], member_size[0])
    torch.testing.assert_close(_centroids(seen), in_member, atol=0.1, rtol=0)


def test_bad_members_are_refused_at_build_time(tmp_path):
    a_cfg, a_w, _ = member(tmp_path, "a", 0)
    from pose_topdown import get_topdown_cfg
    from pose_topdown.modeling import build_pose_net

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


def test_cue_and_no_cue_members_mix(tmp_path):
    """As the HintPose report's 6-model ensemble (report 004, footnote 2): members with the
    instance cue and recurrent refinement, with the cue only, with refinement only, and a plain
    HRNet, in an ensemble whose MODEL.TOPDOWN.CUE is the members' cue. The cue members are given
    the cue, the others nothing; the ensemble is the weighted mean of each member's own output.
    A member with another cue is refused."""
    hint = ["MODEL.TOPDOWN.POSE_NET", "HintPoseHRNet", "MODEL.TOPDOWN.CUE", "JointHintCue"]
    both = member(tmp_path, "both", 0, *hint, "MODEL.HINTPOSE.HOPS", "2")
    cue_only = member(tmp_path, "cue", 1, *hint, "MODEL.HINTPOSE.HOPS", "1")
    refine_only = member(tmp_path, "refine", 2, "MODEL.TOPDOWN.POSE_NET", "HintPoseHRNet",
                         "MODEL.HINTPOSE.HOPS", "2", "MODEL.HINTPOSE.CUE_ON", "False")  # fmt: skip
    plain = member(tmp_path, "plain", 3)
    members = [both, cue_only, refine_only, plain]
    ens = ensemble([m[0] for m in members], [m[1] for m in members],
                   "MODEL.TOPDOWN.CUE", "JointHintCue",
                   "MODEL.ENSEMBLE.MEMBER_WEIGHTS", "[1.0, 2.0, 3.0, 4.0]")  # fmt: skip
    assert ens.pose_net.cue_channels == 1 and ens.cue is not None
    crops, cues = torch.randn(2, 3, 96, 64), torch.rand(2, 1, 96, 64)
    with torch.no_grad():
        own = [m[2].pose_net(crops, cues if m[2].pose_net.cue_channels else None)
               for m in members]  # fmt: skip
        want = sum(w * o[m[2].pose_net.prediction] for w, o, m in zip((1, 2, 3, 4), own, members))
        got = ens.pose_net(crops, cues)["heatmap"]
    torch.testing.assert_close(got, want / 10)
    given = []
    for net in ens.pose_net.members:
        net.register_forward_pre_hook(lambda _, args: given.append(args[1]))
    with torch.no_grad():
        ens.pose_net(crops, cues)
    assert [c is cues for c in given] == [True, True, False, False]
    assert given[2] is None and given[3] is None
    box = member(tmp_path, "box", 4, "MODEL.TOPDOWN.POSE_NET", "HintPoseHRNet",
                 "MODEL.TOPDOWN.CUE", "BoxCue", "MODEL.HINTPOSE.HOPS", "1")  # fmt: skip
    with pytest.raises(ValueError, match="MODEL.TOPDOWN.CUE 'BoxCue'.*same input"):
        ensemble([both[0], box[0]], [both[1], box[1]], "MODEL.TOPDOWN.CUE", "JointHintCue")
    with pytest.raises(ValueError, match="MODEL.TOPDOWN.CUE 'JointHintCue'.*same input"):
        ensemble([plain[0], both[0]], [plain[1], both[1]])  # the ensemble renders no cue
