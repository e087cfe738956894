"""Hard-negative detection mining: hand-built cases and the real COCO sample's detections."""

import json

import numpy as np
import pytest
import torch

from multitask_pose.data.datasets import samples_root
from multitask_pose.data.hard_negatives import mine_hard_negatives

GT = {
    "images": [{"id": 1}, {"id": 2}],
    "annotations": [
        {"image_id": 1, "bbox": [0, 0, 100, 100]},
        {"image_id": 1, "bbox": [300, 0, 50, 100], "iscrowd": 1},  # a crowd region counts too
    ],
}


def test_far_confident_detections_are_mined_and_others_not():
    dets = [
        {"image_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},  # on the person
        {"image_id": 1, "bbox": [500, 500, 50, 50], "score": 0.9},  # far: mined
        {"image_id": 1, "bbox": [600, 500, 50, 50], "score": 0.2},  # far but not confident
        {"image_id": 1, "bbox": [80, 0, 100, 100], "score": 0.8},  # IoU 20/180 = 0.11: mined
        {"image_id": 1, "bbox": [40, 0, 100, 100], "score": 0.8},  # IoU 60/140 = 0.43: not
        {"image_id": 1, "bbox": [300, 0, 50, 100], "score": 0.95},  # on the crowd region
        {"image_id": 2, "bbox": [10, 10, 20, 40], "score": 0.7},  # an image without persons
    ]
    out, report = mine_hard_negatives(GT, dets, score_thresh=0.5, iou_thresh=0.3)
    assert sorted(out) == [1, 2]
    np.testing.assert_array_equal(out[1][:, :4], [[500, 500, 50, 50], [80, 0, 100, 100]])
    np.testing.assert_array_equal(out[2], [[10, 10, 20, 40, 0.7]])
    assert (report["detections"], report["confident"], report["mined"]) == (7, 6, 3)
    # A looser IoU threshold mines the half-overlapping box as well.
    assert mine_hard_negatives(GT, dets, 0.5, 0.5)[1]["mined"] == 4


def test_max_keypoints_drops_boxes_holding_one_persons_labelled_keypoints():
    """A box below the IoU threshold that still shows a person's keypoints: mined under the
    reports' rule (-1), dropped when it holds more than ``max_keypoints`` of any one person."""
    left = [[10, 10, 2], [90, 20, 2], [95, 30, 1], [80, 40, 2], [99, 50, 0], [20, 90, 2]]
    right = [[120, 20, 2], [130, 30, 2], [260, 10, 2], [125, 40, 0], [0, 0, 0], [0, 0, 0]]
    # (a second person: 2 labelled points in the box)
    gt = {
        "images": [{"id": 1}],
        "annotations": [
            # (x, y, v) -> COCO's flat list; x = 80, the mined box's edge, counts as inside,
            # v = 0 does not
            {"image_id": 1, "bbox": [0, 0, 100, 100], "keypoints": sum(left, [])},
            {"image_id": 1, "bbox": [110, 0, 160, 100], "keypoints": sum(right, [])},
            {"image_id": 1, "bbox": [400, 0, 50, 100]},  # a person without keypoints
        ],
    }
    dets = [
        {"image_id": 1, "bbox": [80, 0, 60, 100], "score": 0.9},  # 3 of left, 2 of right
        {"image_id": 1, "bbox": [500, 300, 50, 50], "score": 0.9},  # nothing inside
    ]
    held = [3, 0]  # the most labelled keypoints of one person in each box
    for max_kps in (-1, 0, 1, 2, 3, 4):
        out, report = mine_hard_negatives(gt, dets, 0.5, 0.3, max_kps)
        kept = [h for h in held if max_kps < 0 or h <= max_kps]
        assert report["mined"] == len(kept) and report["max_keypoints"] == max_kps
        assert report["holding_keypoints"] == len(held) - len(kept)
        assert out[1][:, 4].tolist() == [0.9] * len(kept)
    assert mine_hard_negatives(gt, dets, 0.5, 0.3, 0)[0][1][:, :4].tolist() == [[500, 300, 50, 50]]
    with pytest.raises(ValueError, match="max_keypoints must be -1"):
        mine_hard_negatives(gt, dets, 0.5, 0.3, -2)


def test_bad_detection_files_are_named():
    with pytest.raises(ValueError, match="detection 0: image 7 is not in the dataset"):
        mine_hard_negatives(GT, [{"image_id": 7, "bbox": [0, 0, 1, 1], "score": 1}])
    with pytest.raises(ValueError, match=r"detection 0 \(image 1\): needs a 4-number bbox"):
        mine_hard_negatives(GT, [{"image_id": 1, "bbox": [0, 0, 1], "score": 1}])


def test_real_detections_on_the_coco_sample():
    """The sample's 118 real detections: the confident ones mostly cover annotated persons; every
    mined one has IoU below the threshold with all of its image's persons, recomputed here."""
    gt = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
    dets = json.loads((samples_root() / "coco" / "test_coco_det_AP_H_56.json").read_text())
    out, report = mine_hard_negatives(gt, dets, 0.5, 0.3)
    assert report["detections"] == 118 and 0 < report["mined"] < report["confident"]
    for image_id, rows in out.items():
        people = [a["bbox"] for a in gt["annotations"] if a["image_id"] == image_id]
        for x, y, w, h, s in rows:
            assert s >= 0.5
            for px, py, pw, ph in people:
                iw = max(0.0, min(x + w, px + pw) - max(x, px))
                ih = max(0.0, min(y + h, py + ph) - max(y, py))
                assert iw * ih / (w * h + pw * ph - iw * ih) < 0.3


# --------------------------------------------------------------------------- the R-CNN side

DETECTIONS = samples_root() / "coco" / "test_coco_det_AP_H_56.json"


def _rcnn_cfg(*opts):
    from multitask_pose.config import get_multitask_cfg

    cfg = get_multitask_cfg()
    cfg.merge_from_file("configs/Synthetic/multitask_rcnn_R_18_FPN_synth_basic.yaml")
    cfg.merge_from_list(["DATASETS.TRAIN", "('coco_person_sample',)", "DATALOADER.NUM_WORKERS",
                         "0", "OUTPUT_DIR", "", "MODEL.DEVICE", "cpu", *opts])  # fmt: skip
    return cfg


def test_the_mapper_augments_hard_negatives_as_it_augments_the_annotations():
    from detectron2.data import DatasetCatalog

    from multitask_pose.data.hard_negatives import HardNegativeMapper

    d = DatasetCatalog.get("coco_person_sample")[0]
    person = np.array(d["annotations"][0]["bbox"], dtype=np.float32)  # XYWH
    # The person's own box as a "negative": after mapping it must equal the person's gt box,
    # whatever resize and flip were drawn (a test of the transform, not of the mining).
    d = {**d, "hard_negatives": np.array([[*person[:2], *(person[:2] + person[2:])]])}
    mapper = HardNegativeMapper(_rcnn_cfg(), True)
    flips = set()
    for seed in range(6):
        np.random.seed(seed)
        out = mapper(dict(d))
        gt = out["instances"].gt_boxes.tensor[0]
        neg = out["hard_negatives"]
        assert neg.shape == (1, 4) and torch.allclose(neg[0], gt, atol=1e-3)
        scale = out["image"].shape[2] / d["width"]
        x0, x1 = person[0] * scale, (person[0] + person[2]) * scale
        flipped = abs(float(gt[0]) - (out["image"].shape[2] - x1)) < 1e-2
        assert flipped or abs(float(gt[0]) - x0) < 1e-2
        flips.add(flipped)
    assert flips == {True, False}  # both flipped and unflipped draws were checked


def test_hard_negatives_join_the_proposals_as_background():
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = build_model(_rcnn_cfg())
    heads = model.roi_heads
    heads.train()
    gt = Instances((240, 320), gt_boxes=Boxes(torch.tensor([[10.0, 10.0, 60.0, 110.0]])),
                   gt_classes=torch.tensor([0]))  # fmt: skip
    rpn = Instances((240, 320), proposal_boxes=Boxes(torch.tensor([[12.0, 8.0, 58.0, 112.0]])),
                    objectness_logits=torch.tensor([3.0]))  # fmt: skip
    far = torch.tensor([[200.0, 120.0, 260.0, 230.0]])
    with EventStorage():  # detectron2 logs the sampling statistics
        plain = heads.label_and_sample_proposals([rpn], [gt])[0]
        heads.hard_negatives = [far]
        mined = heads.label_and_sample_proposals([rpn], [gt])[0]
    assert heads.hard_negatives is None  # used once
    is_far = (mined.proposal_boxes.tensor == far).all(1)
    assert is_far.sum() == 1 and mined.gt_classes[is_far].item() == heads.num_classes
    assert not (plain.proposal_boxes.tensor == far).all(1).any()


def test_rcnn_training_takes_the_sample_detections_as_background_proposals(tmp_path):
    from unittest import mock

    from detectron2.modeling import StandardROIHeads
    from detectron2.utils.events import EventStorage

    from multitask_pose.engine import MultiTaskTrainer

    cfg = _rcnn_cfg("INPUT.HARD_NEGATIVES_FILE", str(DETECTIONS), "SOLVER.IMS_PER_BATCH", "4")
    batch = next(iter(MultiTaskTrainer.build_train_loader(cfg)))
    negatives = [x.get("hard_negatives") for x in batch]
    assert sum(len(n) for n in negatives if n is not None) > 0
    model = MultiTaskTrainer.build_model(cfg)
    model.train()
    seen = []
    original = StandardROIHeads.label_and_sample_proposals

    def spy(self, proposals, targets):
        seen.extend(proposals)
        return original(self, proposals, targets)

    with mock.patch.object(StandardROIHeads, "label_and_sample_proposals", spy), EventStorage():
        model(batch)
    assert len(seen) == len(batch)
    for props, neg in zip(seen, negatives):
        if neg is not None:
            assert (props.proposal_boxes.tensor[-len(neg) :] == neg).all()
    # Bad settings are named.
    missing = _rcnn_cfg("INPUT.HARD_NEGATIVES_FILE", str(tmp_path / "none.json"))
    with pytest.raises(FileNotFoundError, match="INPUT.HARD_NEGATIVES_FILE not found"):
        MultiTaskTrainer.build_train_loader(missing)
    bad = _rcnn_cfg("INPUT.HARD_NEGATIVES_FILE", str(DETECTIONS),
                    "INPUT.HARD_NEGATIVE_MAX_KEYPOINTS", "-2")  # fmt: skip
    with pytest.raises(ValueError, match="INPUT.HARD_NEGATIVE_MAX_KEYPOINTS must be -1"):
        MultiTaskTrainer.build_train_loader(bad)
    stock = _rcnn_cfg("INPUT.HARD_NEGATIVES_FILE", str(DETECTIONS),
                      "MODEL.ROI_HEADS.NAME", "StandardROIHeads")  # fmt: skip
    with pytest.raises(ValueError, match="ROI heads that take extra proposals"):
        MultiTaskTrainer.build_model(stock)


def test_rcnn_max_keypoints_drops_boxes_showing_a_person(tmp_path):
    """INPUT.HARD_NEGATIVE_MAX_KEYPOINTS 0 on the R-CNN side: a whole-image box per image (below
    IoU 0.3 with the sample's persons, yet showing them) is mined under the reports' rule and
    dropped under this one, the sample's far detections kept under both."""
    from detectron2.data import DatasetCatalog

    from multitask_pose.engine import MultiTaskTrainer

    dicts = DatasetCatalog.get("coco_person_sample")
    whole = [{"image_id": d["image_id"], "bbox": [0, 0, d["width"], d["height"]], "score": 0.99}
             for d in dicts]  # fmt: skip
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(json.loads(DETECTIONS.read_text()) + whole))

    def mined(max_kps):
        cfg = _rcnn_cfg("INPUT.HARD_NEGATIVES_FILE", str(path),
                        "INPUT.HARD_NEGATIVE_MAX_KEYPOINTS", str(max_kps))  # fmt: skip
        out = MultiTaskTrainer._hard_negatives(cfg, dicts)
        return {d["image_id"]: d["hard_negatives"].tolist() for d in out if "hard_negatives" in d}

    every, clean = mined(-1), mined(0)
    full = lambda d: [0, 0, d["width"], d["height"]]  # noqa: E731
    shown = [d for d in dicts if full(d) in every.get(d["image_id"], [])]
    assert shown  # some whole-image boxes pass the IoU rule
    for d in dicts:
        assert full(d) not in clean.get(d["image_id"], [])
        rest = [b for b in every.get(d["image_id"], []) if b != full(d)]
        assert clean.get(d["image_id"], []) == rest
