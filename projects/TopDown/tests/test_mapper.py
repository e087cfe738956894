"""The training mapper: targets on the keypoints, half-body crops."""

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.codecs import GaussianHeatmapCodec
from topdown.affine import apply_affine, box_to_center_size, crop_affine
from topdown.data import (
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
        fi = mapper.flip_indices
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


def test_half_body_crops_the_upper_or_the_lower_body():
    cfg = sample_cfg("INPUT.TOPDOWN.HALF_BODY_PROB", "1.0")
    mapper = TopDownTrainMapper(cfg, is_train=True)
    names = MetadataCatalog.get(SAMPLE).keypoint_names
    assert [names[i] for i in mapper.lower] == [
        n for n in names if n.split("_")[-1] in ("hip", "knee", "ankle")
    ]
    p = max(
        person_dicts(DatasetCatalog.get(SAMPLE)), key=lambda q: (q["keypoints"][:, 2] > 0).sum()
    )
    kp = p["keypoints"]
    _, full = box_to_center_size(p["bbox"][None], 0.75)
    seen = set()
    np.random.seed(0)
    for _ in range(20):
        center, size = mapper._half_body(kp)
        part = mapper.upper if center[1] < kp[kp[:, 2] > 0, 1].mean() else mapper.lower
        pts = kp[part][kp[part, 2] > 0, :2]
        seen.add(part is mapper.upper)
        assert size[1] < full[0, 1]  # a smaller crop than the whole person's
        np.testing.assert_allclose(
            center, (pts.min(0) + pts.max(0)) / 2, atol=1e-6
        )  # centred on the part
    assert seen == {True, False}  # both halves get picked
