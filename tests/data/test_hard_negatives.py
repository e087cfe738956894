"""Hard-negative detection mining: the PCR report's rule (no intersection with any person) and
the IoU option on hand-built cases and the real COCO sample's detections."""

import json

import numpy as np
import pytest
import torch

from multitask_pose.data.hard_negatives import HNDM_RULES, mine_hard_negatives
from multitask_pose.data.paths import samples_root

GT = {
    "images": [{"id": 1}, {"id": 2}],
    "annotations": [
        {"image_id": 1, "bbox": [0, 0, 100, 100]},
        {"image_id": 1, "bbox": [300, 0, 50, 100], "iscrowd": 1},  # a crowd region counts too
    ],
}


def test_the_reports_rule_is_no_intersection_with_any_person_crowd_regions_included():
    """PCR report (002), section 2.3, Hard-Negative Person Detection Mining: "we filter out
    those detections with high scores but no intersections with ground truth person instances".
    A box overlapping a person by one pixel, or overlapping only a crowd region, is not a hard
    negative; a box sharing only an edge (zero area) or far away is. The IoU rule mines the
    overlapping ones as well."""
    gt = {
        "images": [{"id": 1}],
        "annotations": [
            {"image_id": 1, "bbox": [100, 100, 50, 100]},  # x 100-150, y 100-200
            {"image_id": 1, "bbox": [300, 0, 100, 100], "iscrowd": 1},  # a crowd region
        ],
    }
    boxes = {
        "one pixel column": ([149, 100, 50, 100], False),  # 1 x 100 px overlap, IoU 0.01
        "one pixel corner": ([149, 199, 10, 10], False),  # 1 x 1 px overlap
        "inside the person": ([110, 110, 10, 10], False),  # IoU 0.02
        "crowd region only": ([390, 50, 40, 40], False),  # 10 x 40 px of the crowd region
        "edge only": ([150, 100, 50, 100], True),  # shares the person's right edge: area 0
        "far": ([500, 300, 50, 50], True),
    }
    dets = [{"image_id": 1, "bbox": b, "score": 0.9} for b, _ in boxes.values()]
    dets.append({"image_id": 1, "bbox": [600, 300, 50, 50], "score": 0.4})  # far, not confident
    mined = lambda out: [list(r[:4]) for r in out.get(1, [])]  # noqa: E731
    out, report = mine_hard_negatives(gt, dets, score_thresh=0.5)  # the default rule
    assert mined(out) == [b for b, negative in boxes.values() if negative]
    assert report["rule"] == "no_intersection" and report["confident"] == len(boxes)
    out_iou, report_iou = mine_hard_negatives(gt, dets, 0.5, 0.3, rule="iou")
    assert mined(out_iou) == [b for b, _ in boxes.values()]  # every one below IoU 0.3
    assert report_iou["rule"] == "iou"
    with pytest.raises(ValueError, match=r"rule must be one of \('no_intersection', 'iou'\)"):
        mine_hard_negatives(gt, dets, rule="overlap")


def test_hndm_settings_against_the_report():
    """The settings of HNDM, one key set for both stages, with their source (a table test)."""
    from multitask_pose.config import get_multitask_cfg
    from pose_topdown import get_topdown_cfg

    quote = ("we filter out those detections with high scores but no intersections with ground"
             " truth person instances")  # fmt: skip
    rcnn, topdown = get_multitask_cfg().INPUT.HARD_NEGATIVES, get_topdown_cfg().INPUT.HARD_NEGATIVES
    rows = [
        # (setting, expected, source)
        ("RULE", "no_intersection", f"report 002, section 2.3 (HNDM): {quote!r}"),
        ("SCORE", 0.5, "ours: the report says 'high scores' without a value"),
        ("MAX_KEYPOINTS", -1, "off: the report filters by boxes only"),
    ]  # fmt: skip
    for key, expected, source in rows:
        assert rcnn[key] == topdown[key] == expected, f"{key} (expected {expected}: {source})"
    assert rcnn == topdown  # one key set: the stages cannot drift apart
    assert HNDM_RULES[0] == "no_intersection"


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
    out, report = mine_hard_negatives(GT, dets, score_thresh=0.5, iou_thresh=0.3, rule="iou")
    assert sorted(out) == [1, 2]
    np.testing.assert_array_equal(out[1][:, :4], [[500, 500, 50, 50], [80, 0, 100, 100]])
    np.testing.assert_array_equal(out[2], [[10, 10, 20, 40, 0.7]])
    assert (report["detections"], report["confident"], report["mined"]) == (7, 6, 3)
    # A looser IoU threshold mines the half-overlapping box as well.
    assert mine_hard_negatives(GT, dets, 0.5, 0.5, rule="iou")[1]["mined"] == 4
    # The report's rule: only the boxes touching no person.
    out, report = mine_hard_negatives(GT, dets, 0.5)
    np.testing.assert_array_equal(out[1][:, :4], [[500, 500, 50, 50]])
    assert report["mined"] == 2


def test_max_keypoints_drops_boxes_holding_one_persons_labelled_keypoints():
    """A box below the IoU threshold that still shows a person's keypoints: mined by the IoU
    rule without the keypoint filter (-1), dropped when it holds more than ``max_keypoints`` of
    any one person."""
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
        out, report = mine_hard_negatives(gt, dets, 0.5, 0.3, max_kps, rule="iou")
        kept = [h for h in held if max_kps < 0 or h <= max_kps]
        assert report["mined"] == len(kept) and report["max_keypoints"] == max_kps
        assert report["holding_keypoints"] == len(held) - len(kept)
        assert out[1][:, 4].tolist() == [0.9] * len(kept)
    only = mine_hard_negatives(gt, dets, 0.5, 0.3, 0, rule="iou")[0][1][:, :4].tolist()
    assert only == [[500, 300, 50, 50]]
    with pytest.raises(ValueError, match="max_keypoints must be -1"):
        mine_hard_negatives(gt, dets, 0.5, 0.3, -2)


def test_bad_detection_files_are_named():
    with pytest.raises(ValueError, match="detection 0: image 7 is not in the dataset"):
        mine_hard_negatives(GT, [{"image_id": 7, "bbox": [0, 0, 1, 1], "score": 1}])
    with pytest.raises(ValueError, match=r"detection 0 \(image 1\): needs a 4-number bbox"):
        mine_hard_negatives(GT, [{"image_id": 1, "bbox": [0, 0, 1], "score": 1}])


def test_real_detections_on_the_coco_sample():
    """The sample's 118 real detections: every confident one overlaps an annotated person (the
    report's rule mines none of them), 3 of them below IoU 0.3. Both rules' mined sets equal
    the sets recomputed here box by box (overlap area 0 with all of the image's annotations,
    crowd regions included; or IoU below 0.3 with all of them)."""
    gt = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
    dets = json.loads((samples_root() / "coco" / "test_coco_det_AP_H_56.json").read_text())

    def overlaps(d):  # (intersection area, IoU) with each annotation of d's image
        x, y, w, h = d["bbox"]
        for a in gt["annotations"]:
            if a["image_id"] == d["image_id"]:
                px, py, pw, ph = a["bbox"]
                iw = max(0.0, min(x + w, px + pw) - max(x, px))
                ih = max(0.0, min(y + h, py + ph) - max(y, py))
                yield iw * ih, iw * ih / (w * h + pw * ph - iw * ih)

    confident = [d for d in dets if d["score"] >= 0.5]
    expected = {
        "no_intersection": [d for d in confident if all(a == 0 for a, _ in overlaps(d))],
        "iou": [d for d in confident if all(u < 0.3 for _, u in overlaps(d))],
    }
    for rule, want in expected.items():
        out, report = mine_hard_negatives(gt, dets, 0.5, 0.3, rule=rule)
        assert report["detections"] == 118 and report["confident"] == len(confident)
        got = sorted((i, *np.round(r[:4], 2)) for i, rows in out.items() for r in rows)
        assert got == sorted((d["image_id"], *np.round(d["bbox"], 2)) for d in want), rule
    assert (len(expected["no_intersection"]), len(expected["iou"])) == (0, MINED_BY_IOU)


# --------------------------------------------------------------------------- the R-CNN side

DETECTIONS = samples_root() / "coco" / "test_coco_det_AP_H_56.json"
MINED_BY_IOU = 3  # of the sample's confident detections, below IoU 0.3 with every person


def free_corner_detections(dicts, size=16.0):
    """One confident size x size box per image in the first image corner that overlaps none of
    its annotations (the sample's own detections all overlap a person)."""
    from detectron2.structures import BoxMode

    out = []
    for d in dicts:
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                 for a in d["annotations"]]  # fmt: skip
        for x, y in ((0, 0), (d["width"] - size, 0), (0, d["height"] - size),
                     (d["width"] - size, d["height"] - size)):  # fmt: skip
            if all(min(x + size, q[2]) <= max(x, q[0]) or min(y + size, q[3]) <= max(y, q[1])
                   for q in boxes):  # fmt: skip
                out.append({"image_id": d["image_id"], "bbox": [x, y, size, size], "score": 0.9})
                break
    return out


def detections_with_free_boxes(tmp_path, dicts):
    """The sample's detections plus :func:`free_corner_detections`, as a file."""
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(json.loads(DETECTIONS.read_text()) + free_corner_detections(dicts)))
    return path


def _rcnn_cfg(*opts):
    from multitask_pose.config import get_multitask_cfg

    cfg = get_multitask_cfg()
    cfg.merge_from_file("configs/Synthetic/multitask_rcnn_R_18_FPN_synth_basic.yaml")
    cfg.merge_from_list(["DATASETS.TRAIN", "('coco_person_sample',)", "DATALOADER.NUM_WORKERS",
                         "0", "OUTPUT_DIR", "", "MODEL.DEVICE", "cpu", *opts])  # fmt: skip
    return cfg


def _rcnn_dicts(cfg, dicts):
    """The R-CNN's training dicts of ``dicts`` with INPUT.HARD_NEGATIVES.* (data/build.py's)."""
    from multitask_pose.data.hard_negatives import mine_from_config, with_hard_negatives

    return with_hard_negatives(dicts, mine_from_config(cfg, dicts)[0])


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
    """An input's hard negatives join its image's proposals (MultiTaskRCNN's) and the ROI heads
    label them background; an input without them keeps its proposals."""
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from multitask_pose.modeling.meta_arch import with_hard_negative_proposals

    torch.manual_seed(0)
    model = build_model(_rcnn_cfg())
    heads = model.roi_heads
    heads.train()
    gt = Instances((240, 320), gt_boxes=Boxes(torch.tensor([[10.0, 10.0, 60.0, 110.0]])),
                   gt_classes=torch.tensor([0]))  # fmt: skip
    rpn = Instances((240, 320), proposal_boxes=Boxes(torch.tensor([[12.0, 8.0, 58.0, 112.0]])),
                    objectness_logits=torch.tensor([3.0]))  # fmt: skip
    far = torch.tensor([[200.0, 120.0, 260.0, 230.0]])
    extended = with_hard_negative_proposals([rpn, rpn], [{"hard_negatives": far}, {}])
    assert len(extended[0]) == 2 and extended[1] is rpn
    with EventStorage():  # detectron2 logs the sampling statistics
        plain = heads.label_and_sample_proposals([rpn], [gt])[0]
        mined = heads.label_and_sample_proposals(extended[:1], [gt])[0]
    is_far = (mined.proposal_boxes.tensor == far).all(1)
    assert is_far.sum() == 1 and mined.gt_classes[is_far].item() == heads.num_classes
    assert not (plain.proposal_boxes.tensor == far).all(1).any()


def test_rcnn_training_takes_the_mined_detections_as_background_proposals(tmp_path):
    """The R-CNN trainer's batches carry each image's mined boxes as the input field
    ``hard_negatives``, and its model hands exactly those to the ROI heads as the last proposals
    of their image: through the inputs, with no hook on the model."""
    from unittest import mock

    from detectron2.data import DatasetCatalog
    from detectron2.modeling import StandardROIHeads
    from detectron2.utils.events import EventStorage

    from multitask_pose.engine import MultiTaskTrainer

    path = detections_with_free_boxes(tmp_path, DatasetCatalog.get("coco_person_sample"))
    cfg = _rcnn_cfg("INPUT.HARD_NEGATIVES.FILE", str(path), "SOLVER.IMS_PER_BATCH", "4")
    batch = next(iter(MultiTaskTrainer.build_train_loader(cfg)))
    negatives = [x.get("hard_negatives") for x in batch]
    assert sum(len(n) for n in negatives if n is not None) > 0
    model = MultiTaskTrainer.build_model(cfg)
    model.train()
    assert not model._forward_pre_hooks and not model.roi_heads._forward_pre_hooks
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
    missing = _rcnn_cfg("INPUT.HARD_NEGATIVES.FILE", str(tmp_path / "none.json"))
    with pytest.raises(FileNotFoundError, match=r"none.json \(INPUT.HARD_NEGATIVES.FILE\)"):
        MultiTaskTrainer.build_train_loader(missing)
    bad = _rcnn_cfg("INPUT.HARD_NEGATIVES.FILE", str(DETECTIONS),
                    "INPUT.HARD_NEGATIVES.MAX_KEYPOINTS", "-2")  # fmt: skip
    with pytest.raises(ValueError, match="INPUT.HARD_NEGATIVES.MAX_KEYPOINTS must be -1"):
        MultiTaskTrainer.build_train_loader(bad)
    other = _rcnn_cfg("INPUT.HARD_NEGATIVES.FILE", str(DETECTIONS),
                      "MODEL.META_ARCHITECTURE", "ProposalNetwork")  # fmt: skip
    with pytest.raises(ValueError, match="needs MODEL.META_ARCHITECTURE MultiTaskRCNN"):
        MultiTaskTrainer.build_model(other)


def test_rcnn_max_keypoints_drops_boxes_showing_a_person(tmp_path):
    """INPUT.HARD_NEGATIVES.MAX_KEYPOINTS 0 on the R-CNN side with the IoU rule: a whole-image box
    per image (below IoU 0.3 with the sample's persons, yet showing them) is mined without the
    keypoint filter and dropped with it, the sample's far detections kept under both; the
    report's rule (the default) never mines a box that overlaps a person."""
    from detectron2.data import DatasetCatalog


    dicts = DatasetCatalog.get("coco_person_sample")
    whole = [{"image_id": d["image_id"], "bbox": [0, 0, d["width"], d["height"]], "score": 0.99}
             for d in dicts]  # fmt: skip
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(json.loads(DETECTIONS.read_text()) + whole))

    def mined(max_kps):
        cfg = _rcnn_cfg("INPUT.HARD_NEGATIVES.FILE", str(path), "INPUT.HARD_NEGATIVES.RULE",
                        "iou", "INPUT.HARD_NEGATIVES.MAX_KEYPOINTS", str(max_kps))  # fmt: skip
        out = _rcnn_dicts(cfg, dicts)
        return {d["image_id"]: d["hard_negatives"].tolist() for d in out if "hard_negatives" in d}

    every, clean = mined(-1), mined(0)
    full = lambda d: [0, 0, d["width"], d["height"]]  # noqa: E731
    shown = [d for d in dicts if full(d) in every.get(d["image_id"], [])]
    assert shown  # some whole-image boxes pass the IoU rule
    for d in dicts:
        assert full(d) not in clean.get(d["image_id"], [])
        rest = [b for b in every.get(d["image_id"], []) if b != full(d)]
        assert clean.get(d["image_id"], []) == rest


def test_rcnn_training_mines_by_the_reports_rule_by_default(tmp_path):
    """The R-CNN trainer's default mines exactly the boxes that overlap no annotation of their
    image (recomputed here); INPUT.HARD_NEGATIVES.RULE "iou" mines those and the sample's
    detections below IoU 0.3."""
    from detectron2.data import DatasetCatalog
    from detectron2.structures import BoxMode


    dicts = DatasetCatalog.get("coco_person_sample")
    path = detections_with_free_boxes(tmp_path, dicts)
    dets = json.loads(path.read_text())

    def mined(*opts):
        out = _rcnn_dicts(_rcnn_cfg("INPUT.HARD_NEGATIVES.FILE",
                                                         str(path), *opts), dicts)  # fmt: skip
        return sum(len(d["hard_negatives"]) for d in out if "hard_negatives" in d)

    persons = {d["image_id"]: [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                               for a in d["annotations"]] for d in dicts}  # fmt: skip

    def free(d):
        x, y, w, h = d["bbox"]
        return all(min(x + w, q[2]) <= max(x, q[0]) or min(y + h, q[3]) <= max(y, q[1])
                   for q in persons[d["image_id"]])  # fmt: skip

    expected = [d for d in dets if d["score"] >= 0.5 and free(d)]
    assert len(expected) == len(free_corner_detections(dicts)) > 0
    assert mined() == len(expected)
    assert mined("INPUT.HARD_NEGATIVES.RULE", "iou") == len(expected) + MINED_BY_IOU
    with pytest.raises(ValueError, match="INPUT.HARD_NEGATIVES.RULE must be one of"):
        mined("INPUT.HARD_NEGATIVES.RULE", "overlap")


def test_rcnn_hard_negatives_of_other_images_are_refused(tmp_path):
    """INPUT.HARD_NEGATIVES.FILE made for other images is refused naming the key: its record
    names another registered dataset or a folder, or (no record) its boxes reach beyond the
    training set's images; the sample's own file, with its record, mines."""
    from detectron2.data import DatasetCatalog

    from multitask_pose.evaluation.results_record import (
        ResultsDatasetError,
        describe_images,
        write_results_record,
    )

    dicts = DatasetCatalog.get("coco_person_sample")
    path = tmp_path / "dets.json"
    path.write_text(DETECTIONS.read_text())

    def mine():
        cfg = _rcnn_cfg("INPUT.HARD_NEGATIVES.FILE", str(path), "INPUT.HARD_NEGATIVES.RULE", "iou")
        return _rcnn_dicts(cfg, dicts)

    for named, shown in (("synth_people_val", "dataset 'synth_people_val'"),
                         (describe_images([tmp_path]), f"images in {tmp_path}")):  # fmt: skip
        write_results_record(path, dataset=named, producer="x", score_scale=None)
        with pytest.raises(ResultsDatasetError, match=f"^INPUT.HARD_NEGATIVES.FILE: {path} holds"
                           f" results on {shown} "):  # fmt: skip
            mine()
    write_results_record(path, dataset="coco_person_sample", producer="x", score_scale=None)
    assert any("hard_negatives" in d for d in mine())
    far = [{**d, "bbox": [d["bbox"][0] + 5000, *d["bbox"][1:]]}
           for d in json.loads(path.read_text())]  # fmt: skip
    path.write_text(json.dumps(far))  # the same record, boxes of larger images
    with pytest.raises(ResultsDatasetError, match="^INPUT.HARD_NEGATIVES.FILE: .* boxes reach"
                       " beyond their image of dataset 'coco_person_sample'"):  # fmt: skip
        mine()
