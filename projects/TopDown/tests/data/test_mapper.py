"""The training mapper: targets on the keypoints, half-body crops."""

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

import multitask_pose  # noqa: F401  (registers the datasets)
from conftest import flip_indices_by_name
from multitask_pose.codecs import GaussianHeatmapCodec
from pose_topdown.affine import apply_affine, box_to_center_size, crop_affine
from pose_topdown.data import (
    TopDownTrainMapper,
    person_dicts,
)
from topdown_testing import SAMPLE, OraclePoseNet, _oracle_model, sample_cfg  # noqa: F401


def test_train_mapper_targets_sit_on_the_keypoints():
    cfg = sample_cfg(
        "INPUT.TOPDOWN.FLIP_PROB",
        "1.0",
        "INPUT.TOPDOWN.ROTATION_PROB",
        "1.0",
        "INPUT.TOPDOWN.HALF_BODY_PROB",
        "0.0",
    )
    cfg.MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER = True
    mapper = TopDownTrainMapper(cfg, is_train=True)
    persons = person_dicts(DatasetCatalog.get(SAMPLE))
    assert len(persons) == 12  # the sample's persons with keypoints
    codec = GaussianHeatmapCodec((192, 256), (48, 64), decode="dark", blur_kernel=0)
    np.random.seed(0)
    for p in persons[:4]:
        out = mapper(p)
        assert out["image"].shape == (3, 256, 192) and out["image"].dtype == torch.uint8
        assert out["targets"]["heatmaps"].shape == (17, 64, 48)
        labelled = p["keypoints"][:, 2] > 0
        # flipped: each labelled type k appears in channel flip(k)
        fi = flip_indices_by_name(MetadataCatalog.get(SAMPLE).keypoint_names)
        w = out["targets"]["target_weight"].numpy() > 0
        assert (w <= labelled[fi]).all() and w.sum() >= 0.5 * labelled.sum()
        coords, _ = codec.decode(out["targets"]["heatmaps"][None])
        assert np.all(np.isfinite(coords.numpy()))
    # The crop shows the person: a crop without augmentation has the keypoints where the image
    # has them.
    cfg2 = sample_cfg(
        "INPUT.TOPDOWN.FLIP_PROB",
        "0.0",
        "INPUT.TOPDOWN.ROTATION_PROB",
        "0.0",
        "INPUT.TOPDOWN.SCALE_FACTOR",
        "0.0",
        "INPUT.TOPDOWN.HALF_BODY_PROB",
        "0.0",
    )
    cfg2.MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER = True
    p = persons[0]
    out = TopDownTrainMapper(cfg2, is_train=True)(p)
    coords, _ = codec.decode(out["targets"]["heatmaps"][None])
    center, size = box_to_center_size(p["bbox"][None], 0.75)
    back = apply_affine(
        np.concatenate([coords.numpy(), np.zeros((1, 17, 1))], -1),
        np.linalg.inv(np.vstack([crop_affine(center, size, 0, (192, 256))[0], [0, 0, 1]]))[
            None, :2
        ],
    )
    lab = p["keypoints"][:, 2] > 0
    np.testing.assert_allclose(back[0, lab, :2] + 0.5, p["keypoints"][lab, :2], atol=0.1)


def _official_half_body(joints, vis, upper_ids, lower_ids, aspect):
    """The official HRNet half_body_transform, written out from its code (JointsDataset.py
    L65-106, leoxiaobin/deep-high-resolution-net.pytorch), in pixels (its pixel_std cancels)."""
    upper = [j for j in range(len(joints)) if vis[j] > 0 and j in upper_ids]
    lower = [j for j in range(len(joints)) if vis[j] > 0 and j in lower_ids]
    if np.random.randn() < 0.5 and len(upper) > 2:
        selected = upper
    else:
        selected = lower if len(lower) > 2 else upper
    if len(selected) < 2:
        return None
    sel = np.array([joints[j] for j in selected], dtype=np.float32)
    center = sel.mean(axis=0)[:2]
    left_top, right_bottom = np.amin(sel, axis=0), np.amax(sel, axis=0)
    w, h = right_bottom[0] - left_top[0], right_bottom[1] - left_top[1]
    if w > aspect * h:
        h = w * 1.0 / aspect
    elif w < aspect * h:
        w = h * aspect
    return center, np.array([w, h]) * 1.5


def test_half_body_is_the_official_rule():
    """Centre, size and the upper/lower choice equal the official code's for the same random
    draws, and the upper body is chosen about 69% of the time (randn < 0.5), not half."""
    cfg = sample_cfg("INPUT.TOPDOWN.HALF_BODY_PROB", "1.0")
    mapper = TopDownTrainMapper(cfg, is_train=True)
    names = MetadataCatalog.get(SAMPLE).keypoint_names
    assert [names[i] for i in mapper.lower] == [
        n for n in names if n.split("_")[-1] in ("hip", "knee", "ankle")
    ]
    persons = [
        p for p in person_dicts(DatasetCatalog.get(SAMPLE)) if (p["keypoints"][:, 2] > 0).sum() > 8
    ]
    assert persons
    upper_ids, lower_ids = set(mapper.upper.tolist()), set(mapper.lower.tolist())
    uppers = 0
    for i in range(400):
        kp = persons[i % len(persons)]["keypoints"]
        np.random.seed(i)
        ours = mapper._half_body(kp)
        np.random.seed(i)
        ref = _official_half_body(kp[:, :2], kp[:, 2], upper_ids, lower_ids, 0.75)
        assert (ours is None) == (ref is None)
        if ref is not None:
            np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
            np.testing.assert_allclose(ours[1], ref[1], rtol=1e-5)
            uppers += ref[0][1] < kp[kp[:, 2] > 0, 1].mean()
    assert 0.6 < uppers / 400 < 0.78  # Phi(0.5) = 0.69


def test_augmented_targets_map_back_to_the_annotation():
    """With every augmentation on (scale, rotation, flip, half body), the targets decode to the
    annotated keypoints: decoded, they equal the annotation carried into the crop by the mapper's
    crop affine within 0.1 crop pixel, with channels of flipped crops holding the mirror joint
    named by the flip map written from the keypoint names."""
    cfg = sample_cfg("INPUT.TOPDOWN.FLIP_PROB", "0.5", "INPUT.TOPDOWN.ROTATION_PROB", "1.0",
                     "INPUT.TOPDOWN.HALF_BODY_PROB", "0.3")  # fmt: skip
    cfg.MODEL.TOPDOWN.CODEC.SUBPIXEL_CENTER = True
    mapper = TopDownTrainMapper(cfg, is_train=True)
    codec = GaussianHeatmapCodec((192, 256), (48, 64), decode="dark", blur_kernel=0)
    by_name = np.asarray(flip_indices_by_name(MetadataCatalog.get(SAMPLE).keypoint_names))
    persons = person_dicts(DatasetCatalog.get(SAMPLE))
    np.random.seed(3)
    flips = checked = 0
    for i in range(40):
        p = persons[i % len(persons)]
        out = mapper(p)
        a = out["crop_affine"].numpy()
        flipped = np.linalg.det(a[:, :2]) < 0
        flips += flipped
        source = by_name if flipped else np.arange(len(by_name))
        ann = p["keypoints"][source].copy()
        ann[:, :2] -= 0.5  # detectron2 -> the official pixel-index frame the crops use
        expected = ann[:, :2] @ a[:, :2].T + a[:, 2]
        coords, _ = codec.decode(out["targets"]["heatmaps"][None])
        inside = (expected > 8).all(1) & (expected < np.array([192, 256]) - 8).all(1)
        use = (out["targets"]["target_weight"].numpy() > 0) & inside
        assert (ann[use, 2] > 0).all()  # a weighted channel is a labelled joint
        err = np.abs(coords[0].numpy()[use] - expected[use])
        assert err.max() < 0.1, (i, flipped, err.max())
        checked += use.sum()
    assert 8 <= flips <= 32 and checked > 200
