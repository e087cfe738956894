"""KeypointOffsetHead and its codec against detectron2's keypoint head, and decoding of known
sub-pixel keypoints."""

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.keypoint_head import (
    KRCNNConvDeconvUpsampleHead,
    keypoint_rcnn_loss,
)
from detectron2.structures import Boxes, Instances, Keypoints, heatmaps_to_keypoints
from detectron2.structures.keypoints import _keypoints_to_heatmap
from detectron2.utils.events import EventStorage
from torch.nn import functional as F

from multitask_pose.codecs import RoIHeatmapCodec
from multitask_pose.modeling import KeypointOffsetHead


def decoded(codec, *args):
    """The codec's (coordinates, scores) as detectron2's (R, K, 3) x, y, score."""
    xy, scores = codec.decode(*args)
    return torch.cat([xy, scores[..., None]], dim=-1)


K, S = 5, 56
SHAPE = ShapeSpec(channels=8, height=14, width=14)


def random_rois(n, gen):
    xy = torch.rand(n, 2, generator=gen) * 200
    wh = 20 + torch.rand(n, 2, generator=gen) * 180
    return torch.cat([xy, xy + wh], dim=1)


def random_keypoints(rois, gen, k=K):
    n = len(rois)
    # Some keypoints fall outside their RoI, some are unlabelled: both must be invalid.
    frac = torch.rand(n, k, 2, generator=gen) * 1.2 - 0.1
    wh = (rois[:, 2:] - rois[:, :2])[:, None]
    xy = rois[:, None, :2] + frac * wh
    vis = (torch.rand(n, k, 1, generator=gen) > 0.2).float() * 2
    return torch.cat([xy, vis], dim=2)


def make_head(offset_on, loss_normalizer="visible", **kw):
    torch.manual_seed(0)
    return KeypointOffsetHead(
        SHAPE,
        num_keypoints=K,
        conv_dims=(8, 8),
        offset_on=offset_on,
        loss_weight=1.0,
        loss_normalizer=loss_normalizer,
        **kw,
    )


def test_encode_matches_detectron2_labels():
    gen = torch.Generator().manual_seed(0)
    rois = random_rois(50, gen)
    kps = random_keypoints(rois, gen)
    kps[0, 0, 0] = rois[0, 2]  # on the right border: detectron2 puts it in the last cell
    ours = RoIHeatmapCodec(S).encode(kps, rois)
    index, valid = _keypoints_to_heatmap(kps, rois, S)
    assert torch.equal(ours["valid"], valid.bool())
    assert torch.equal(ours["index"], index)
    assert 0 < valid.float().mean() < 1


@pytest.mark.parametrize("heatmap_loss", ["softmax", "gaussian_mse"])
def test_decode_recovers_subpixel_keypoints(heatmap_loss):
    """Heatmaps and offsets made from known sub-cell locations decode back to them within 0.05
    heatmap cells; without offsets (detectron2's decoding) within 1 image pixel: half a pixel of
    its pixel grid plus the bias of PyTorch's bicubic kernel (A = -0.75) on a peaked map."""
    gen = torch.Generator().manual_seed(1)
    codec = RoIHeatmapCodec(S, heatmap_loss=heatmap_loss, gaussian_sigma=2.0)
    rois = random_rois(30, gen)
    coords = 2 + torch.rand(30 * K, 2, generator=gen) * (S - 4)  # heatmap coordinates
    gauss = codec.gaussian_targets(coords)
    maps = (gauss.clamp(min=1e-20).log() if heatmap_loss == "softmax" else gauss).view(30, K, S, S)
    offsets, _ = codec.offset_targets(coords)
    offsets = offsets.view(30, K * 2, S, S)
    wh = (rois[:, 2:] - rois[:, :2])[:, None]
    expected = rois[:, None, :2] + coords.view(30, K, 2) * wh / S
    cell = wh / S
    with_offsets = decoded(codec, maps, rois, offsets)
    err_cells = ((with_offsets[..., :2] - expected) / cell).abs()
    assert err_cells.max() < 0.05, err_cells.max()
    err_px = (decoded(codec, maps, rois)[..., :2] - expected).abs()
    assert err_px.max() < 1.0, err_px.max()
    # A constant half-cell offset moves the decoded point by half a cell.
    shifted = decoded(codec, maps, rois, offsets + 0.5)
    assert torch.allclose(
        (shifted[..., :2] - expected) / cell, torch.full_like(expected, 0.5), atol=0.05
    )


def _smooth_logits(codec, n, gen, centres=None, sigma=None):
    """(n, K, S, S) logits peaked at ``centres`` (n * K, 2) heatmap coordinates (default: random
    ones away from the border) with widths ``sigma`` (n * K, 1, 1), plus noise, smoothed as a
    trained head's."""
    if centres is None:
        centres = 3 + torch.rand(n * K, 2, generator=gen) * (S - 6)
    if sigma is None:
        sigma = 1.5 + 2 * torch.rand(n * K, 1, 1, generator=gen)
    maps = -((codec._cell_deltas(centres)) ** 2).sum(1) / (2 * sigma**2)
    logits = (8 * maps + 0.3 * torch.randn(n * K, S, S, generator=gen)).view(n, K, S, S)
    return F.avg_pool2d(logits, 3, 1, 1, count_include_pad=False)


def test_decode_without_offsets_equals_detectron2():
    """On smooth, noisy random logits our vectorised decode gives detectron2's per-RoI
    ``heatmaps_to_keypoints`` locations and scores (same bicubic resampling, evaluated only near
    each peak; float32 summation order is the only difference)."""
    gen = torch.Generator().manual_seed(2)
    rois = random_rois(40, gen)
    codec = RoIHeatmapCodec(S)
    sigma = 1.5 + 2 * torch.rand(40 * K, 1, 1, generator=gen)
    logits = _smooth_logits(codec, 40, gen, sigma=sigma)
    ours = decoded(codec, logits, rois)
    ref = heatmaps_to_keypoints(logits, rois)
    assert torch.allclose(ours[..., :2], ref[..., :2], atol=1e-3)
    assert torch.allclose(ours[..., 2], ref[..., 3], rtol=1e-4)
    # Peaks on the map's borders and corners, boxes from 6 px (many cells per pixel) to 400 px
    # (many pixels per cell): the window and the cells its taps read stay inside the map.
    xy = torch.rand(40, 2, generator=gen) * 200
    rois = torch.cat([xy, xy + 6 + torch.rand(40, 2, generator=gen) * 394], dim=1)
    centres = torch.randint(0, 4, (40 * K, 2), generator=gen).float() * (S - 1) / 3
    logits = _smooth_logits(codec, 40, gen, centres, sigma)
    ours = decoded(codec, logits, rois)
    ref = heatmaps_to_keypoints(logits, rois)
    assert torch.allclose(ours[..., :2], ref[..., :2], atol=1e-3)
    assert torch.allclose(ours[..., 2], ref[..., 3], rtol=1e-4)


class _Decode(torch.nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, heatmaps, rois, offsets):
        return self.codec.decode(heatmaps, rois, offsets)


def test_decode_traces_and_exports_with_the_window_sized_at_run_time():
    """The decode traced (TorchScript) and exported (ONNX, run in ONNX Runtime) on small boxes
    gives the eager decode's keypoints on boxes ten times larger (whose search window and tap
    span are wider: a trace that froze them would search too narrow a window) and on no box."""
    import io
    import warnings

    import onnxruntime as ort

    gen = torch.Generator().manual_seed(5)
    codec = RoIHeatmapCodec(S)
    small = torch.tensor([[10.0, 10.0, 40.0, 50.0], [0.0, 5.0, 25.0, 30.0]])
    args = (_smooth_logits(codec, 2, gen), small, torch.randn(2, 2 * K, S, S, generator=gen))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the tracer's and the legacy exporter's deprecations)
        traced = torch.jit.trace(_Decode(codec), args)
        buf = io.BytesIO()
        torch.onnx.export(
            _Decode(codec), args, buf, input_names=["heatmaps", "rois", "offsets"],
            dynamic_axes={n: {0: "r"} for n in ("heatmaps", "rois", "offsets")},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    xy = torch.rand(7, 2, generator=gen) * 100
    large = torch.cat([xy, xy + 250 + torch.rand(7, 2, generator=gen) * 300], dim=1)
    for rois in (large, large[:0]):
        R = len(rois)
        inputs = (_smooth_logits(codec, 7, gen)[:R], rois, torch.randn(7, 2 * K, S, S)[:R])
        ref = codec.decode(*inputs)
        feeds = dict(zip(["heatmaps", "rois", "offsets"], (t.numpy() for t in inputs)))
        for got in (traced(*inputs), [torch.from_numpy(o) for o in session.run(None, feeds)]):
            assert [tuple(t.shape) for t in got] == [(R, K, 2), (R, K)]
            assert torch.allclose(got[0], ref[0], atol=1e-3)
            assert torch.allclose(got[1], ref[1], rtol=1e-4, atol=1e-6)


def test_heatmaps_equal_detectron2_head_and_checkpoint_loads():
    torch.manual_seed(0)
    stock = KRCNNConvDeconvUpsampleHead(
        SHAPE, num_keypoints=K, conv_dims=(8, 8), loss_weight=1.0, loss_normalizer="visible"
    )
    for offset_on in (False, True):
        ours = make_head(offset_on)
        result = ours.load_state_dict(stock.state_dict(), strict=False)
        assert result.unexpected_keys == []
        assert sorted(result.missing_keys) == (
            ["offset_lowres.bias", "offset_lowres.weight"] if offset_on else []
        )
        x = torch.randn(6, 8, 14, 14)
        heatmaps, offsets = ours.layers(x)
        assert torch.equal(heatmaps, stock.layers(x))
        assert (offsets is None) == (not offset_on)
        if offset_on:  # zero-initialised: a fresh offset head decodes like the plain one
            assert offsets.abs().max() == 0


def proposals_with_gt(gen, n=6):
    rois = random_rois(n, gen)
    inst = Instances((400, 400))
    inst.proposal_boxes = Boxes(rois)
    inst.gt_keypoints = Keypoints(random_keypoints(rois, gen))
    return inst


def test_softmax_loss_equals_detectron2_and_offset_loss():
    gen = torch.Generator().manual_seed(3)
    instances = [proposals_with_gt(gen), proposals_with_gt(gen, 0), proposals_with_gt(gen, 4)]
    head = make_head(True, offset_loss_weight=1.0)
    heatmaps = torch.randn(10, K, S, S, generator=gen)
    with EventStorage():
        reference = keypoint_rcnn_loss(heatmaps, instances, normalizer=None)
    # Offsets equal to the true sub-cell location minus each cell's centre, written out here
    # (cell j of an S-cell RoI spans [j, j + 1) with its centre at j + 0.5): zero offset loss.
    rois = torch.cat([i.proposal_boxes.tensor for i in instances]).double()
    kps = torch.cat([i.gt_keypoints.tensor for i in instances]).double()
    cx = (kps[..., 0] - rois[:, None, 0]) * S / (rois[:, None, 2] - rois[:, None, 0])  # (R, K)
    cy = (kps[..., 1] - rois[:, None, 1]) * S / (rois[:, None, 3] - rois[:, None, 1])
    centres = torch.arange(S, dtype=torch.float64) + 0.5
    dx = (cx[..., None, None] - centres[None, None, None, :]).expand(-1, -1, S, S)
    dy = (cy[..., None, None] - centres[None, None, :, None]).expand(-1, -1, S, S)
    perfect = torch.stack([dx, dy], dim=2).reshape(10, K * 2, S, S).float()
    labelled_inside = (kps[..., 2] > 0) & (cx >= 0) & (cx <= S) & (cy >= 0) & (cy <= S)
    near = dx**2 + dy**2 <= 2.0**2  # OFFSET_RADIUS 2 cells (the key's default)
    losses = head.losses(heatmaps, perfect, instances)
    assert torch.allclose(losses["loss_keypoint"], reference)
    assert losses["loss_keypoint_offset"] < 1e-9  # float32 rounding of the written-out targets
    # detectron2's other normalisation: a constant per image, counting images without RoIs too.
    with EventStorage():
        per_image = keypoint_rcnn_loss(heatmaps, instances, normalizer=3 * 4.0)
    assert torch.allclose(
        make_head(False, loss_normalizer=4.0).losses(heatmaps, None, instances)["loss_keypoint"],
        per_image,
    )
    # Wrong offsets: a positive loss whose gradient reaches only cells near labelled keypoints.
    wrong = perfect.clone().requires_grad_(True)
    with torch.no_grad():
        wrong += 0.3
    head.losses(heatmaps, wrong, instances)["loss_keypoint_offset"].backward()
    grad_cells = wrong.grad.view(10, K, 2, S, S).abs().sum(2) > 0
    allowed = near & labelled_inside[..., None, None]
    assert grad_cells.any() and not (grad_cells & ~allowed).any()


def test_gaussian_loss_and_balanced_weights_reach_the_loss():
    gen = torch.Generator().manual_seed(4)
    instances = [proposals_with_gt(gen, 8)]
    heatmaps = torch.zeros(8, K, S, S)
    plain = make_head(False, heatmap_loss="gaussian_mse").losses(heatmaps, None, instances)
    enc = RoIHeatmapCodec(S).encode(
        instances[0].gt_keypoints.tensor, instances[0].proposal_boxes.tensor
    )
    valid = enc["valid"]
    # Zero heatmaps against unit-peak Gaussians: per keypoint the sum of squared targets.
    sq = (RoIHeatmapCodec(S).gaussian_targets(enc["coords"][valid]) ** 2).sum((1, 2))
    assert torch.allclose(plain["loss_keypoint"], sq.sum() / valid.sum())
    balanced = make_head(False, heatmap_loss="gaussian_mse", balanced_loss=True).losses(
        heatmaps, None, instances
    )
    counts = valid.sum(0).float()
    w = (counts.sum() / counts) / (counts.sum() / counts).mean()
    k_of = torch.arange(K).expand_as(valid)[valid]
    assert torch.allclose(balanced["loss_keypoint"], (sq * w[k_of]).sum() / valid.sum())


def test_inference_fields_inside_boxes():
    head = make_head(True).eval()
    inst = Instances((300, 300))
    inst.pred_boxes = Boxes(torch.tensor([[10.0, 20.0, 110.0, 220.0], [50.0, 50.0, 90.0, 70.0]]))
    empty = Instances((300, 300))
    empty.pred_boxes = Boxes(torch.zeros(0, 4))
    with torch.no_grad():
        out = head(torch.randn(2, 8, 14, 14), [inst, empty])
    kp = out[0].pred_keypoints
    assert kp.shape == (2, K, 3) and out[1].pred_keypoints.shape == (0, K, 3)
    boxes = inst.pred_boxes.tensor[:, None]
    assert ((kp[..., 0] >= boxes[..., 0]) & (kp[..., 0] <= boxes[..., 2])).all()
    assert ((kp[..., 1] >= boxes[..., 1]) & (kp[..., 1] <= boxes[..., 3])).all()
    assert ((kp[..., 2] > 0) & (kp[..., 2] <= 1)).all()
    assert out[0].pred_keypoint_offsets.shape == (2, 2 * K, S, S)


def test_bad_config_errors():
    with pytest.raises(ValueError, match="HEATMAP_SIZE=60.*multiple"):
        make_head(True, heatmap_size=60)
    with pytest.raises(ValueError, match="HEATMAP_LOSS"):
        make_head(True, heatmap_loss="l2")
    assert make_head(True, heatmap_size=84).codec.size == 84


CODEC_OPTS = ["MODEL.ROI_KEYPOINT_HEAD.HEATMAP_SIZE", "84",
              "MODEL.ROI_KEYPOINT_HEAD.HEATMAP_LOSS", "gaussian_mse",
              "MODEL.ROI_KEYPOINT_HEAD.GAUSSIAN_SIGMA", "1.5",
              "MODEL.ROI_KEYPOINT_HEAD.OFFSET_RADIUS", "3.0"]  # fmt: skip


@pytest.mark.parametrize("opts", [[], CODEC_OPTS])
def test_the_codec_built_by_name_is_the_heads(opts):
    """build_codec("RoIHeatmapCodec", cfg) gives the codec the config's head encodes and decodes
    with (registered codecs are all built from a config)."""
    from multitask_pose.codecs import build_codec
    from multitask_pose.config import get_multitask_cfg

    cfg = get_multitask_cfg()
    cfg.merge_from_list(["MODEL.ROI_KEYPOINT_HEAD.NAME", "KeypointOffsetHead", *opts])
    shape = ShapeSpec(channels=8, height=cfg.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION,
                      width=cfg.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION)  # fmt: skip
    head = KeypointOffsetHead(cfg, shape)
    built = build_codec("RoIHeatmapCodec", cfg)
    assert vars(built) == vars(head.codec)
