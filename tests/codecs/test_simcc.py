"""SimCCCodec and its loss against MMPose 1.x (open-mmlab/mmpose @759b39c): the settings in a table
with their file:line, and encode / decode / KLDiscretLoss equal to a per-keypoint reference that
follows MMPose's loops literally (written here in numpy, independently of the vectorised code)."""

import math

import numpy as np
import pytest
import torch

from multitask_pose.codecs import SimCCCodec

# setting -> (ours, MMPose's value, where)
SETTINGS = {
    "split ratio": (lambda c: c.split_ratio, 2.0, "mmpose/codecs/simcc_label.py:72"),
    "sigma (bins)": (lambda c: c.sigma, 6.0, "mmpose/codecs/simcc_label.py:71"),
    "x bins at 192x256": (lambda c: c.bins[0], 384, "mmpose/codecs/simcc_label.py:270"),
    "y bins at 192x256": (lambda c: c.bins[1], 512, "mmpose/codecs/simcc_label.py:271"),
    "label peak (normalised)": (
        lambda c: float(c.encode(torch.tensor([[[50.0, 60.0, 2.0]]]))["x_labels"].max()),
        1 / (6.0 * math.sqrt(2 * math.pi)),
        "mmpose/codecs/simcc_label.py:307-309",
    ),
}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_settings_are_mmpose_defaults(name):
    get, expected, where = SETTINGS[name]
    codec = SimCCCodec((192, 256), (48, 64))
    assert get(codec) == pytest.approx(expected, rel=1e-6), (name, where)


def reference_encode(kp, input_size, ratio, sigma):
    """MMPose's _generate_gaussian, one keypoint at a time (simcc_label.py:260-311)."""
    n_inst, k_num, _ = kp.shape
    W = int(np.around(input_size[0] * ratio))
    H = int(np.around(input_size[1] * ratio))
    tx = np.zeros((n_inst, k_num, W), np.float32)
    ty = np.zeros((n_inst, k_num, H), np.float32)
    weight = (kp[..., 2] > 0).astype(np.float32)
    split = np.around(kp[..., :2] * ratio).astype(np.int64)
    radius = sigma * 3
    x, y = np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32)
    for n in range(n_inst):
        for k in range(k_num):
            if weight[n, k] < 0.5:
                continue
            mu = split[n, k]
            left, top = mu - radius
            right, bottom = mu + radius + 1
            if left >= W or top >= H or right < 0 or bottom < 0:
                weight[n, k] = 0
                continue
            tx[n, k] = np.exp(-((x - mu[0]) ** 2) / (2 * sigma**2))
            ty[n, k] = np.exp(-((y - mu[1]) ** 2) / (2 * sigma**2))
    norm = sigma * np.sqrt(np.pi * 2)
    return tx / norm, ty / norm, weight


def reference_decode(x, y, ratio):
    """MMPose's get_simcc_maximum then the division by the ratio (post_processing.py:41-110,
    simcc_label.py:156-200)."""
    n, k, _ = x.shape
    x2, y2 = x.reshape(n * k, -1), y.reshape(n * k, -1)
    locs = np.stack([x2.argmax(1), y2.argmax(1)], -1).astype(np.float32)
    vx, vy = x2.max(1), y2.max(1)
    mask = vx > vy
    vx[mask] = vy[mask]
    locs[vx <= 0] = -1
    return locs.reshape(n, k, 2) / ratio, vx.reshape(n, k)


def keypoints(seed=0, n=6, k=17, w=64, h=96):
    rng = np.random.default_rng(seed)
    kp = np.zeros((n, k, 3), np.float32)
    kp[..., 0] = rng.uniform(-30, w + 30, (n, k))  # some outside, some beyond 3 sigma
    kp[..., 1] = rng.uniform(-30, h + 30, (n, k))
    kp[..., 2] = rng.integers(0, 3, (n, k))
    kp[0, 0, :] = (-3.1, 40.0, 2)  # outside, window still inside: kept
    kp[0, 1, :] = (-20.0, 40.0, 2)  # window wholly outside: weight 0
    kp[0, 2, :] = (10.25, 20.75, 2)  # halfway bins: rounding (numpy rounds half to even)
    return kp


@pytest.mark.parametrize("ratio,sigma", [(2.0, 6.0), (2.0, 2.25), (3.0, 4.0), (1.5, 3.0)])
def test_encode_equals_the_reference(ratio, sigma):
    kp = keypoints()
    codec = SimCCCodec((64, 96), (16, 24), ratio, sigma)
    got = codec.encode(kp)
    tx, ty, weight = reference_encode(kp, (64, 96), ratio, sigma)
    assert 0 < weight.sum() < (kp[..., 2] > 0).sum()  # the bounds rule takes some out
    np.testing.assert_array_equal(got["target_weight"].numpy(), weight)
    np.testing.assert_allclose(got["x_labels"].numpy(), tx, atol=1e-7)
    np.testing.assert_allclose(got["y_labels"].numpy(), ty, atol=1e-7)


def test_decode_equals_the_reference_and_inverts_encode():
    codec = SimCCCodec((64, 96), (16, 24))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 17, 128, generator=g)
    y = torch.randn(5, 17, 192, generator=g)
    x[0, 3] = -1.0 - torch.rand(128, generator=g)  # maxima <= 0: placed at bin -1
    y[1, 4] = -torch.rand(192, generator=g)
    xy, scores = codec.decode((x, y))
    ref_xy, ref_scores = reference_decode(x.numpy().copy(), y.numpy().copy(), 2.0)
    np.testing.assert_array_equal(xy.numpy(), ref_xy)
    np.testing.assert_array_equal(scores.numpy(), ref_scores)
    assert (xy[0, 3] == -0.5).all() and (xy[1, 4] == -0.5).all()
    # labels decode to the rounded bin of each kept keypoint
    kp = keypoints(1)
    t = codec.encode(kp)
    back, _ = codec.decode((t["x_labels"], t["y_labels"]))
    kept = t["target_weight"].bool()
    inside = kept & torch.as_tensor((kp[..., 0] >= 0) & (kp[..., 0] < 64)
                                    & (kp[..., 1] >= 0) & (kp[..., 1] < 96))  # fmt: skip
    want = np.around(kp[..., :2] * 2.0) / 2.0
    np.testing.assert_array_equal(back[inside].numpy(), want[inside.numpy()])


def test_malformed_inputs_are_refused():
    codec = SimCCCodec((64, 96), (16, 24))
    with pytest.raises(ValueError, match=r"\(N, K, 3\)"):
        codec.encode(np.zeros((17, 3)))
    with pytest.raises(ValueError, match="SimCC head"):
        codec.decode(torch.zeros(1, 17, 24, 16))
    with pytest.raises(ValueError, match=r"\(N, K, 128\)"):
        codec.decode((torch.zeros(1, 17, 100), torch.zeros(1, 17, 192)))
    with pytest.raises(ValueError, match="positive"):
        SimCCCodec((64, 96), (16, 24), sigma=0)
