"""The top-down extension points: a pose network registered here, with two supervised outputs and
one extra input channel (the box cue), trains and predicts through the unchanged meta-architecture
and mapper; the cue the mapper makes is the person's box seen through the crop."""

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from torch import nn

import multitask_pose  # noqa: F401  (registers the datasets)
from pose_topdown.affine import box_to_center_size, crop_affine
from pose_topdown.data import TopDownTestMapper, TopDownTrainMapper, person_dicts
from pose_topdown.modeling import POSE_NET_REGISTRY, TopDownPoseNet
from topdown_testing import SAMPLE, topdown_cfg


@POSE_NET_REGISTRY.register()
class ToyCuePoseNet(TopDownPoseNet):
    """Image + one cue channel -> "heatmap" (the prediction) and "aux", both supervised."""

    cue_channels = 1
    heatmap_stride = 4
    size_divisibility = 4

    def __init__(self, cfg):
        super().__init__()
        k = cfg.MODEL.TOPDOWN.NUM_KEYPOINTS
        self.body = nn.Sequential(
            nn.Conv2d(3 + self.cue_channels, 16, 3, 2, 1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(32, k, 1)
        self.aux = nn.Conv2d(32, k, 1)
        self.seen_cues = []

    def supervised_outputs(self):
        return {"heatmap": 1.0, "aux": 0.5}

    def forward(self, images, cues=None):
        self.seen_cues.append(cues)
        f = self.body(torch.cat([images, cues], dim=1))
        return {"heatmap": self.head(f), "aux": self.aux(f)}


def toy_cfg(*opts):
    # fmt: off
    return topdown_cfg("MODEL.TOPDOWN.POSE_NET", "ToyCuePoseNet", "MODEL.TOPDOWN.CUE", "BoxCue",
                       "MODEL.TOPDOWN.INPUT_SIZE", "(48, 64)",
                       "MODEL.TOPDOWN.HEATMAP_SIZE", "(12, 16)",
                       "MODEL.TOPDOWN.CODEC.SIGMA", "1.0", "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0",
                       "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0",
                       # eager: the test reads the cues the module itself received
                       "TEST.TOPDOWN.BACKEND", "eager", *opts)
    # fmt: on


def plain_crops_cfg(*opts):
    return toy_cfg(
        "INPUT.TOPDOWN.SCALE_FACTOR",
        "0.0",
        "INPUT.TOPDOWN.ROTATION_PROB",
        "0.0",
        "INPUT.TOPDOWN.HALF_BODY_PROB",
        "0.0",
        *opts,
    )


def test_toy_net_with_two_outputs_and_a_cue_trains_through_the_meta_arch():
    cfg = toy_cfg()
    torch.manual_seed(0)
    np.random.seed(0)
    model = build_model(cfg).train()
    mapper = TopDownTrainMapper(cfg, is_train=True, codec=model.codec)
    persons = person_dicts(DatasetCatalog.get(SAMPLE))
    batch = [mapper(p) for p in persons]
    assert all(x["cues"].shape == (1, 64, 48) for x in batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(60):
        losses = model(batch)
        assert set(losses) == {"loss_heatmap", "loss_aux"}
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    # Both outputs learn the targets: the summed loss falls well below its start.
    assert totals[-1] < 0.5 * totals[0], totals[::10]
    # The aux loss carries its declared weight: equal maps give half the prediction's loss.
    model.pose_net.aux.load_state_dict(model.pose_net.head.state_dict())
    losses = model(batch)
    torch.testing.assert_close(losses["loss_aux"], 0.5 * losses["loss_heatmap"])


def _box_mask_crop(image_shape, box, affine, input_size):
    """Independent reference of the box cue: a mask image of the box, warped by OpenCV."""
    h, w = image_shape
    ys, xs = np.mgrid[0:h, 0:w]
    mask = ((xs >= box[0]) & (xs <= box[2]) & (ys >= box[1]) & (ys <= box[3])).astype(np.uint8)
    return cv2.warpAffine(mask, affine, tuple(input_size), flags=cv2.INTER_NEAREST)


def test_the_mappers_cue_is_the_box_seen_through_the_crop():
    person = person_dicts(DatasetCatalog.get(SAMPLE))[0]
    x = TopDownTrainMapper(plain_crops_cfg("INPUT.TOPDOWN.FLIP_PROB", "0.0"), is_train=True)(person)
    center, size = box_to_center_size(person["bbox"][None], 48 / 64, 1.25)
    affine = crop_affine(center, size, 0.0, (48, 64))[0]
    ref = _box_mask_crop((person["height"], person["width"]), person["bbox"], affine, (48, 64))
    cue = x["cues"][0].numpy()
    assert 0.3 < cue.mean() < 0.95  # the box, not the whole crop nor nothing
    assert (cue != ref).mean() < 0.03  # equal up to the box's border pixels
    # Flipped crops carry the mirrored cue (the box is flipped with the image): crop column u of
    # the flipped crop shows what column W - u showed (the official x -> W - 1 - x image flip).
    flipped = TopDownTrainMapper(plain_crops_cfg("INPUT.TOPDOWN.FLIP_PROB", "1.0"), is_train=True)(
        person
    )
    assert (flipped["cues"][0].numpy()[:, 1:] != cue[:, :0:-1]).mean() < 0.005


def test_the_prediction_depends_on_the_cue_the_model_makes():
    cfg = plain_crops_cfg("TEST.TOPDOWN.FLIP_TEST", "False")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image_dict = DatasetCatalog.get(SAMPLE)[0]
    x = TopDownTestMapper(cfg, SAMPLE)(image_dict)
    with torch.no_grad():
        kp = model([x])[0]["instances"].pred_keypoints
    # Inference cues equal the training mapper's for the same box (one function, one affine).
    box = x["instances"].gt_boxes.tensor[0].numpy()
    person = {
        "file_name": image_dict["file_name"],
        "image_id": 0,
        "height": image_dict["height"],
        "width": image_dict["width"],
        "bbox": box,
        "keypoints": np.zeros((17, 3)),
    }
    train_cue = TopDownTrainMapper(
        plain_crops_cfg("INPUT.TOPDOWN.FLIP_PROB", "0.0"), is_train=True
    )(person)["cues"]
    assert torch.equal(model.pose_net.seen_cues[-1][0], train_cue)
    # A cue of zeros changes the prediction: the network sees the cue the model makes.
    real_cue = model.cue

    class ZeroCue:  # the cue contract (pose_topdown/data/cues.py) with an all-zero channel
        channels, uses_hints = 1, False

        def __call__(self, boxes, affine, size, hints=None):
            return torch.zeros_like(real_cue(boxes, affine, size))

    model.cue = ZeroCue()
    with torch.no_grad():
        kp_zero = model([x])[0]["instances"].pred_keypoints
    assert not torch.allclose(kp[..., 2], kp_zero[..., 2])


def test_cue_and_net_must_agree():
    with pytest.raises(ValueError, match="cue channels"):
        build_model(toy_cfg("MODEL.TOPDOWN.CUE", ""))
    with pytest.raises(KeyError):
        build_model(toy_cfg("MODEL.TOPDOWN.CUE", "NoSuchCue"))
    with pytest.raises(KeyError):
        build_model(toy_cfg("MODEL.TOPDOWN.CODEC.NAME", "NoSuchCodec"))
