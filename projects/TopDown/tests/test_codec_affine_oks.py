"""Top-down building blocks: the heatmap codec, the affine helper, flips, OKS and OKS-NMS."""

import numpy as np
import pytest
import torch

from multitask_pose.codecs import GaussianHeatmapCodec
from multitask_pose.data.keypoints import COCO_PERSON
from multitask_pose.evaluation.oks import keypoint_oks, oks_nms
from multitask_pose.shared import flip_heatmaps, flip_keypoints
from pose_topdown.affine import (
    apply_affine,
    box_to_center_size,
    crop_affine,
    invert_affine,
    warp_crops,
)

SIGMAS = np.array(COCO_PERSON.oks_sigmas)


def _random_crop_keypoints(rng, n, k, size=(192, 256), margin=24):
    kp = np.zeros((n, k, 3))
    kp[..., 0] = rng.uniform(margin, size[0] - margin, (n, k))
    kp[..., 1] = rng.uniform(margin, size[1] - margin, (n, k))
    kp[..., 2] = 2
    return kp


@pytest.mark.parametrize("decode,bound", [("dark", 0.1), ("quarter", 1.0)])
def test_codec_round_trip_subpixel(decode, bound):
    rng = np.random.default_rng(0)
    kp = _random_crop_keypoints(rng, 64, 17)
    codec = GaussianHeatmapCodec(
        (192, 256), (48, 64), sigma=2, subpixel_center=True, decode=decode, blur_kernel=0
    )
    enc = codec.encode(kp)
    heatmaps, weights = enc["heatmaps"], enc["target_weight"]
    assert heatmaps.shape == (64, 17, 64, 48) and weights.min() == 1
    coords, scores = codec.decode(heatmaps)
    err = np.abs(coords.numpy() - kp[..., :2])
    # DARK: within 0.1 crop px at stride 4. Quarter shift: the argmax is within half a cell and the
    # shift a quarter cell toward the true side, so within a quarter cell = 1 crop px per axis.
    assert err.max() <= bound, err.max()
    if decode == "quarter":
        # ... and the bound is nearly reached: it is the shift's real error, not a loose one.
        assert err.max() > 0.8
    assert torch.all(scores > 0.5)


def test_codec_dark_with_blur_on_a_noisy_map_beats_quarter():
    rng = np.random.default_rng(1)
    kp = _random_crop_keypoints(rng, 64, 17)
    hm = (
        GaussianHeatmapCodec((192, 256), (48, 64), subpixel_center=True)
        .encode(kp)["heatmaps"]
        .numpy()
    )
    hm = hm + rng.normal(0, 0.02, hm.shape).astype(np.float32)
    errs = {}
    for mode in ("quarter", "dark"):
        c, _ = GaussianHeatmapCodec((192, 256), (48, 64), decode=mode, blur_kernel=11).decode(hm)
        errs[mode] = np.linalg.norm(c.numpy() - kp[..., :2], axis=-1).mean()
    assert errs["dark"] < 0.6 * errs["quarter"], errs


def test_codec_integer_centres_match_the_official_target():
    """subpixel_center=False: the official generate_target (rounded centre, 3-sigma square
    window)."""
    codec = GaussianHeatmapCodec((192, 256), (48, 64), sigma=2, subpixel_center=False)
    kp = np.array([[[50.3, 70.9, 2], [0, 0, 0], [-40.0, 30.0, 2], [191.0, 255.0, 1]]])
    enc = codec.encode(kp)
    hm, w = enc["heatmaps"].numpy(), enc["target_weight"]
    assert w.tolist() == [[1, 0, 0, 1]]
    # Reference written out as the official loop does it, for the first keypoint.
    mu_x, mu_y = int(50.3 / 4 + 0.5), int(70.9 / 4 + 0.5)
    ref = np.zeros((64, 48))
    for y in range(mu_y - 6, mu_y + 7):
        for x in range(mu_x - 6, mu_x + 7):
            if 0 <= x < 48 and 0 <= y < 64:
                ref[y, x] = np.exp(-((x - mu_x) ** 2 + (y - mu_y) ** 2) / (2 * 2.0**2))
    np.testing.assert_allclose(hm[0, 0], ref, atol=1e-6)
    assert hm[0, 1].max() == 0 and hm[0, 2].max() == 0
    # A keypoint whose window still touches the map keeps its weight (official rule).
    enc2 = codec.encode(np.array([[[-20.0, 10.0, 2]]]))
    hm2, w2 = enc2["heatmaps"], enc2["target_weight"]
    assert w2[0, 0] == 1 and hm2[0, 0].max() > 0


def test_codec_rejects_bad_input():
    with pytest.raises(ValueError, match="different strides"):
        GaussianHeatmapCodec((192, 256), (48, 32))
    with pytest.raises(ValueError, match="decode"):
        GaussianHeatmapCodec((192, 256), (48, 64), decode="argmax")
    with pytest.raises(ValueError, match=r"\(N, K, 3\)"):
        GaussianHeatmapCodec((192, 256), (48, 64)).encode(np.zeros((17, 3)))


def test_affine_round_trip_and_centre():
    rng = np.random.default_rng(2)
    boxes = (
        np.sort(rng.uniform(0, 640, (20, 2, 2)), axis=1)
        .transpose(0, 2, 1)
        .reshape(20, 4)[:, [0, 2, 1, 3]]
    )
    boxes = np.concatenate(
        [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:]) + 1], 1
    )
    center, size = box_to_center_size(boxes, 192 / 256, padding=1.25)
    np.testing.assert_allclose(size[:, 0] / size[:, 1], 0.75)
    assert np.all(size[:, 0] >= 1.25 * (boxes[:, 2] - boxes[:, 0]) - 1e-9)
    assert np.all(size[:, 1] >= 1.25 * (boxes[:, 3] - boxes[:, 1]) - 1e-9)
    rot = rng.uniform(-90, 90, 20)
    m = crop_affine(center, size, rot, (192, 256))
    pts = np.concatenate([rng.uniform(-100, 700, (20, 17, 2)), rng.uniform(0, 1, (20, 17, 1))], -1)
    back = apply_affine(apply_affine(pts, m), invert_affine(m))
    np.testing.assert_allclose(back, pts, atol=1e-4)
    np.testing.assert_allclose(
        apply_affine(center[:, None], m)[:, 0], np.tile([96.0, 128.0], (20, 1)), atol=1e-9
    )
    # Box corners of an unrotated crop land inside the crop; a 90-degree rotation swaps the axes.
    m0 = crop_affine(center, size, 0, (192, 256))
    corners = apply_affine(boxes.reshape(20, 2, 2), m0)
    assert (
        corners[..., 0].min() >= 0 and corners[..., 0].max() <= 192 and corners[..., 1].max() <= 256
    )
    m90 = crop_affine(center[:1], size[:1], 90, (192, 256))
    up = apply_affine(np.array([[[center[0, 0], center[0, 1] - 10]]]), m90)[0, 0] - [96, 128]
    assert abs(up[1]) < 1e-9 and up[0] < 0  # "up" in the image points left in the crop


def test_affine_equals_the_three_point_construction():
    """The closed form equals cv2.getAffineTransform on the official three point pairs."""
    import cv2

    c, s, r, out = np.array([300.0, 200.0]), np.array([150.0, 200.0]), 30.0, (192, 256)
    rad = np.deg2rad(r)

    def rotate(p):
        return np.array(
            [p[0] * np.cos(rad) - p[1] * np.sin(rad), p[0] * np.sin(rad) + p[1] * np.cos(rad)]
        )

    src_dir, dst_dir = rotate([0, -0.5 * s[0]]), np.array([0, -0.5 * out[0]])
    third = lambda a, b: b + np.array([-(a - b)[1], (a - b)[0]])  # noqa: E731
    src = np.array([c, c + src_dir, third(c, c + src_dir)], np.float32)
    dst0 = np.array([out[0] * 0.5, out[1] * 0.5])
    dst = np.array([dst0, dst0 + dst_dir, third(dst0, dst0 + dst_dir)], np.float32)
    np.testing.assert_allclose(
        crop_affine(c[None], s[None], r, out)[0], cv2.getAffineTransform(src, dst), atol=1e-4
    )


def test_box_to_center_size_rejects_degenerate_boxes():
    with pytest.raises(ValueError, match="without area"):
        box_to_center_size(np.array([[10, 10, 10, 50]]), 0.75)
    with pytest.raises(ValueError, match="without area"):
        box_to_center_size(np.array([[10, 10, np.nan, 50]]), 0.75)


def test_warp_crops_puts_the_box_in_the_crop():
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 50:80] = 255
    center, size = box_to_center_size(np.array([[50, 20, 80, 60]]), 0.75, padding=2.0)
    crop = warp_crops(img, crop_affine(center, size, 0, (48, 64)), (48, 64))
    assert crop.shape == (1, 64, 48, 3)
    assert crop[0, 32, 24].min() == 255 and crop[0, 2, 2].max() == 0


def test_flip_of_a_flip_is_identity():
    rng = np.random.default_rng(3)
    kp = rng.uniform(0, 100, (5, 17, 3))
    fi = COCO_PERSON.flip_indices
    np.testing.assert_allclose(flip_keypoints(flip_keypoints(kp, 192, fi), 192, fi), kp, atol=1e-12)
    # A flip moves a left keypoint to the right slot, mirrored.
    f = flip_keypoints(kp, 192, fi)
    np.testing.assert_allclose(f[:, 2, 0], 191 - kp[:, 1, 0])  # left_eye (1) -> right_eye slot (2)
    hm = rng.uniform(0, 1, (2, 17, 8, 6)).astype(np.float32)
    np.testing.assert_array_equal(flip_heatmaps(flip_heatmaps(hm, fi), fi), hm)
    t = torch.from_numpy(hm)
    np.testing.assert_array_equal(flip_heatmaps(t, fi).numpy(), flip_heatmaps(hm, fi))
    np.testing.assert_array_equal(
        flip_heatmaps(t, fi, shift=True).numpy(), flip_heatmaps(hm, fi, shift=True)
    )
    np.testing.assert_array_equal(
        flip_heatmaps(hm, fi, shift=True)[..., 1:], flip_heatmaps(hm, fi)[..., :-1]
    )


def _oks_reference(g, d, a_g, a_d, sigmas, vis_thresh):
    """The official HRNet oks_iou for one pose against several, written as a loop."""
    var = (sigmas * 2) ** 2
    out = []
    for n in range(len(d)):
        num, cnt = 0.0, 0
        for k in range(len(sigmas)):
            if vis_thresh is not None and not (g[k, 2] > vis_thresh and d[n, k, 2] > vis_thresh):
                continue
            dist2 = (d[n, k, 0] - g[k, 0]) ** 2 + (d[n, k, 1] - g[k, 1]) ** 2
            num += np.exp(-dist2 / var[k] / ((a_g + a_d[n]) / 2 + np.spacing(1)) / 2)
            cnt += 1
        out.append(num / cnt if cnt else 0.0)
    return np.array(out)


def _oks_nms_reference(kpts, scores, areas, sigmas, thresh, vis_thresh):
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order[0]
        keep.append(i)
        ovr = _oks_reference(
            kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thresh
        )
        order = [j for j, o in zip(order[1:], ovr) if o <= thresh]
    return keep


@pytest.mark.parametrize("vis_thresh", [None, 0.2])
def test_oks_and_oks_nms_equal_the_loop_reference(vis_thresh):
    rng = np.random.default_rng(4)
    base = rng.uniform(0, 300, (6, 1, 17, 2))
    kpts = (base + rng.normal(0, 8, (6, 8, 17, 2))).reshape(48, 17, 2)
    kpts = np.concatenate([kpts, rng.uniform(0, 1, (48, 17, 1))], -1)
    areas = rng.uniform(500, 20000, 48)
    scores = rng.uniform(0, 1, 48)
    ours = keypoint_oks(
        torch.from_numpy(kpts),
        torch.from_numpy(kpts),
        torch.from_numpy(areas),
        torch.from_numpy(areas),
        SIGMAS,
        vis_thresh,
    ).numpy()
    ref = np.stack(
        [_oks_reference(kpts[i], kpts, areas[i], areas, SIGMAS, vis_thresh) for i in range(48)]
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    assert 0.05 < ours[ours < 0.999].mean() < 0.95  # the inputs exercise the whole range
    for thresh in (0.5, 0.9):
        keep = oks_nms(
            torch.from_numpy(kpts),
            torch.from_numpy(scores),
            torch.from_numpy(areas),
            SIGMAS,
            thresh,
            vis_thresh,
        )
        assert keep.tolist() == _oks_nms_reference(kpts, scores, areas, SIGMAS, thresh, vis_thresh)
    assert 6 <= len(oks_nms(kpts, scores, areas, SIGMAS, 0.5, vis_thresh)) < 48


def _greedy_per_kept(kpts, scores, areas, thresh, vis_thresh):
    """The greedy algorithm with numpy over the remaining candidates per kept pose: no pruning,
    no all-pairs pass (an independent reference for larger sets than the loop one)."""
    var = (2 * SIGMAS) ** 2
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        e = ((kpts[rest, :, :2] - kpts[i, :, :2]) ** 2).sum(-1) / var
        e = e / ((areas[i] + areas[rest]) / 2 + np.spacing(1))[:, None] / 2
        if vis_thresh is None:
            oks = np.exp(-e).mean(-1)
        else:
            both = (kpts[rest, :, 2] > vis_thresh) & (kpts[i, :, 2] > vis_thresh)
            n = both.sum(-1)
            oks = np.where(n > 0, (np.exp(-e) * both).sum(-1) / np.maximum(n, 1), 0.0)
        order = rest[oks <= thresh]
    return keep


def _persons_with_duplicates(rng, persons, dup):
    """Poses of a random 17-point template scaled to 50-300 px, each ``dup`` times jittered by 3%
    of its height, a quarter of them without any keypoint above 0.2."""
    template = rng.uniform(-0.5, 0.5, (17, 2)) * np.array([0.5, 1.0])
    centre = rng.uniform(0, 800, (persons, 1, 1, 2))
    height = rng.uniform(50, 300, (persons, 1, 1, 1))
    xy = centre + height * template + rng.normal(0, 1, (persons, dup, 17, 2)) * height * 0.03
    kpts = np.concatenate([xy.reshape(-1, 17, 2), rng.uniform(0, 1, (persons * dup, 17, 1))], -1)
    kpts[rng.uniform(0, 1, len(kpts)) < 0.25, :, 2] = 0.1
    areas = np.repeat(height.reshape(-1), dup) ** 2 / 2
    scores = rng.integers(0, 40, len(kpts)) / 40.0  # many ties
    return kpts, scores, areas


@pytest.mark.parametrize("path", ["adaptive", "one_by_one", "all_pairs"])
def test_oks_nms_both_paths_equal_the_greedy_reference(monkeypatch, path):
    """oks_nms compares one kept pose at a time or all remaining pairs at once (and prunes pairs
    by a distance bound in both): each path, with several blocks, keeps exactly what the plain
    greedy algorithm keeps, on sets of few and of many duplicates, with ties, at thresholds
    below 0 to 1, with and without a visibility threshold."""
    from multitask_pose.shared import oks as oks_module

    if path != "adaptive":
        monkeypatch.setattr(oks_module, "_cheaper_all_pairs", lambda *a: path == "all_pairs")
    monkeypatch.setattr(oks_module, "_BLOCK", 7)
    rng = np.random.default_rng(5)
    for persons, dup in ((15, 4), (3, 30), (40, 1)):
        kpts, scores, areas = _persons_with_duplicates(rng, persons, dup)
        for thresh in (-0.1, 0.0, 0.3, 0.5, 0.9, 1.0):
            for vis in (None, 0.2):
                keep = oks_nms(kpts, scores, areas, SIGMAS, thresh, vis).tolist()
                assert keep == _greedy_per_kept(kpts, scores, areas, thresh, vis), (
                    persons, dup, thresh, vis,
                )  # fmt: skip
    assert keep == np.argsort(-scores, kind="stable").tolist()  # thresh 1: everything kept


def test_oks_nms_edge_cases():
    empty = oks_nms(torch.zeros(0, 17, 3), torch.zeros(0), torch.zeros(0), SIGMAS, 0.5)
    assert empty.numel() == 0
    # Poses with no keypoint above the visibility threshold have OKS 0 with everything: all kept.
    kp = torch.zeros(3, 17, 3)
    keep = oks_nms(kp, torch.tensor([0.1, 0.3, 0.2]), torch.ones(3), SIGMAS, 0.5, 0.2)
    assert keep.tolist() == [1, 2, 0]  # best score first


def test_oks_nms_ties_and_the_threshold():
    """Equal scores keep the input order (stable sort); a pose whose OKS with a kept one equals
    the threshold is kept (the official rule drops only OKS > thresh)."""
    pose = torch.rand(1, 17, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pose = pose * 100
    pose[..., 2] = 1
    far = pose + torch.tensor([500.0, 0, 0])
    keep = oks_nms(torch.cat([far, pose, pose]), torch.tensor([0.5, 0.5, 0.5]), torch.ones(3) * 1e4,
                   SIGMAS, 0.5)  # fmt: skip
    assert keep.tolist() == [0, 1]  # ties: input order; the copy of pose 1 (OKS 1) is dropped
    # Pose 1 moved so that every keypoint similarity with pose 0 is exp(-0.5).
    shifted = pose.clone()
    area = torch.tensor([1e4, 1e4], dtype=torch.float64)
    d = torch.sqrt(2 * area[0] * (2 * torch.as_tensor(SIGMAS, dtype=torch.float64)) ** 2 * 0.5)
    shifted[0, :, 0] += d
    oks = keypoint_oks(pose, shifted, area[:1], area[1:], SIGMAS)[0, 0].item()
    assert abs(oks - np.exp(-0.5)) < 1e-9
    both = torch.cat([pose, shifted])
    assert oks_nms(both, torch.tensor([0.9, 0.8]), area, SIGMAS, oks).tolist() == [0, 1]
    assert oks_nms(both, torch.tensor([0.9, 0.8]), area, SIGMAS, oks - 1e-6).tolist() == [0]
    with pytest.raises(ValueError, match="sigmas"):
        keypoint_oks(
            torch.zeros(2, 14, 3), torch.zeros(2, 14, 3), torch.ones(2), torch.ones(2), SIGMAS
        )


def _greedy_box_nms(boxes, scores, thresh):
    """Greedy IoU-NMS with numpy over the remaining boxes per kept box (IoU without +1)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.clip(hi - lo, 0, None).prod(1)
        order = rest[inter / (area[i] + area[rest] - inter) <= thresh]
    return keep


@pytest.mark.parametrize("per_box", [1, 3])
def test_pipeline_nms_is_box_nms_then_greedy_oks_nms(per_box):
    """The top-down stage's duplicate removal (nms_poses) equals, on random sets with one or
    several poses per box: boxes scored by their best pose through greedy IoU-NMS, every pose of
    a kept box, then greedy OKS-NMS of those, best score first; 1.0 disables either stage."""
    from pose_topdown.modeling.meta_arch import nms_poses

    rng = np.random.default_rng(3)
    removed = []
    for persons, dup in ((10, 4), (3, 12), (30, 1)):
        kpts, _, areas = _persons_with_duplicates(rng, persons, dup)
        kpts, areas = kpts.astype(np.float32), areas.astype(np.float32)
        scores = rng.uniform(0, 1, len(kpts)).astype(np.float32)  # no ties between boxes
        box_of = np.arange(len(kpts)) // per_box
        lo = np.stack([kpts[box_of == b, :, :2].min((0, 1)) for b in range(box_of.max() + 1)])
        hi = np.stack([kpts[box_of == b, :, :2].max((0, 1)) for b in range(box_of.max() + 1)])
        boxes = np.concatenate([lo - 5, hi + 5], 1).astype(np.float32)
        t = [torch.from_numpy(x) for x in (boxes, box_of, scores, kpts, areas)]
        for iou, oks in ((0.6, 0.5), (0.3, 0.9), (1.0, 0.5), (0.6, 1.0), (1.0, 1.0)):
            keep = nms_poses(*t, SIGMAS, iou, oks).tolist()
            ref = np.arange(len(kpts))
            if iou < 1.0:
                best = np.full(len(boxes), -np.inf)
                np.maximum.at(best, box_of, scores.astype(np.float64))
                kept_boxes = _greedy_box_nms(boxes.astype(np.float64), best, iou)
                ref = np.flatnonzero(np.isin(box_of, kept_boxes))
                ref = ref[np.argsort(-scores[ref], kind="stable")]
            if oks < 1.0:
                sub = (x[ref].astype(np.float64) for x in (kpts, scores, areas))
                ref = ref[_greedy_per_kept(*sub, oks, None)]
            assert keep == ref.tolist(), (persons, dup, iou, oks)
            removed.append(len(keep) < len(kpts))
    assert any(removed) and not all(removed)  # the sets exercise both outcomes
