"""Hard-negative detection mining in top-down training (INPUT.TOPDOWN.HARD_NEGATIVES_FILE): the
COCO sample's detections that cover no person (by default the PCR report's rule, no
intersection; or below an IoU threshold) become crops with all-zero heatmaps at full weight."""

import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.data.hard_negatives import mine_hard_negatives
from multitask_pose.data.paths import samples_root
from topdown.data.mapper import TopDownTrainMapper, negative_person_dicts, person_dicts
from topdown.engine import TopDownTrainer
from topdown_testing import SAMPLE, sample_cfg

DETECTIONS = samples_root() / "coco" / "test_coco_det_AP_H_56.json"


def with_free_boxes(tmp_path, dicts, size=16.0):
    """The sample's detections (each overlaps a person) plus one confident size x size box per
    image in the first corner that overlaps none of its annotations, as a file."""
    from detectron2.structures import BoxMode

    free = []
    for d in dicts:
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                 for a in d["annotations"]]  # fmt: skip
        for x, y in ((0, 0), (d["width"] - size, 0), (0, d["height"] - size)):
            if all(min(x + size, q[2]) <= max(x, q[0]) or min(y + size, q[3]) <= max(y, q[1])
                   for q in boxes):  # fmt: skip
                free.append({"image_id": d["image_id"], "bbox": [x, y, size, size], "score": 0.9})
                break
    path = tmp_path / "dets_free.json"
    path.write_text(json.dumps(json.loads(DETECTIONS.read_text()) + free))
    return path, free


def test_negatives_are_the_mined_detections_and_train_to_nothing(tmp_path):
    dicts = DatasetCatalog.get(SAMPLE)
    path, free = with_free_boxes(tmp_path, dicts)
    dets = json.loads(path.read_text())
    negatives, report = negative_person_dicts(dicts, dets, 17, 0.5, 0.3)
    gt = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
    assert report["mined"] == mine_hard_negatives(gt, dets, 0.5, 0.3)[1]["mined"] == len(free)
    assert [n["bbox"].tolist() for n in negatives] == [
        [x, y, x + w, y + h] for x, y, w, h in (f["bbox"] for f in free)
    ]  # the report's rule: only the boxes overlapping no person
    by_iou, report = negative_person_dicts(dicts, dets, 17, 0.5, 0.3, rule="iou")
    assert report["rule"] == "iou"
    assert report["mined"] == mine_hard_negatives(gt, dets, 0.5, 0.3, rule="iou")[1]["mined"]
    assert len(by_iou) == report["mined"] > len(negatives)  # none clipped away on the sample
    assert all(n["negative"] and not n["keypoints"].any() for n in negatives)
    mapper = TopDownTrainMapper(sample_cfg(), is_train=True)
    np.random.seed(0)
    neg = mapper(negatives[0])["targets"]
    assert not neg["heatmaps"].any() and (neg["target_weight"] == 1).all()
    pos = mapper(person_dicts(dicts)[0])["targets"]
    assert pos["heatmaps"].max() > 0.5  # a person still has its Gaussians
    assert set(pos["target_weight"].unique().tolist()) <= {0.0, 1.0}


def test_max_keypoints_keeps_only_crops_showing_no_labelled_keypoint(tmp_path):
    """INPUT.TOPDOWN.HARD_NEGATIVE_MAX_KEYPOINTS 0 with the IoU rule on the sample's real
    detections plus a whole-image box per image (below the IoU threshold with small persons, yet
    showing them): every crop kept holds no labelled keypoint of any person (recounted here), the
    rest are dropped. The report's rule (the default) mines no whole-image box."""
    dicts = DatasetCatalog.get(SAMPLE)
    whole = [{"image_id": d["image_id"], "bbox": [0, 0, d["width"], d["height"]], "score": 0.99}
             for d in dicts]  # fmt: skip
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(json.loads(DETECTIONS.read_text()) + whole))
    cfg = sample_cfg("INPUT.TOPDOWN.HARD_NEGATIVES_FILE", str(path),
                     "INPUT.TOPDOWN.HARD_NEGATIVE_RULE", "iou")  # fmt: skip
    every = TopDownTrainer._hard_negatives(cfg, dicts)
    cfg.INPUT.TOPDOWN.HARD_NEGATIVE_MAX_KEYPOINTS = 0
    clean = TopDownTrainer._hard_negatives(cfg, dicts)
    kps = {d["image_id"]: [np.asarray(a["keypoints"]).reshape(-1, 3) for a in d["annotations"]]
           for d in dicts}  # fmt: skip

    def holds(n):
        x0, y0, x1, y1 = n["bbox"]
        return any(((k[:, 0] >= x0) & (k[:, 0] <= x1) & (k[:, 1] >= y0) & (k[:, 1] <= y1)
                    & (k[:, 2] > 0)).any() for k in kps[n["image_id"]])  # fmt: skip

    boxes = lambda ns: [(n["image_id"], n["bbox"].tolist()) for n in ns]  # noqa: E731
    assert boxes(clean) == boxes([n for n in every if not holds(n)])
    assert 0 < len(clean) < len(every) and any(n["bbox"][2] == n["width"] for n in every)
    cfg.INPUT.TOPDOWN.HARD_NEGATIVE_MAX_KEYPOINTS = -1
    cfg.INPUT.TOPDOWN.HARD_NEGATIVE_RULE = "no_intersection"
    assert not TopDownTrainer._hard_negatives(cfg, dicts)  # every box there overlaps a person
    cfg.INPUT.TOPDOWN.HARD_NEGATIVE_MAX_KEYPOINTS = -2
    with pytest.raises(ValueError, match="HARD_NEGATIVE_MAX_KEYPOINTS must be -1"):
        TopDownTrainer._hard_negatives(cfg, dicts)
    cfg.INPUT.TOPDOWN.HARD_NEGATIVE_MAX_KEYPOINTS = -1
    cfg.INPUT.TOPDOWN.HARD_NEGATIVE_RULE = "overlap"
    with pytest.raises(ValueError, match="INPUT.TOPDOWN.HARD_NEGATIVE_RULE must be one of"):
        TopDownTrainer._hard_negatives(cfg, dicts)


def test_training_loader_mixes_negatives_in_and_refuses_bad_settings(tmp_path):
    path, free = with_free_boxes(tmp_path, DatasetCatalog.get(SAMPLE))
    default = sample_cfg("INPUT.TOPDOWN.HARD_NEGATIVES_FILE", str(path))
    assert len(TopDownTrainer._hard_negatives(default, DatasetCatalog.get(SAMPLE))) == len(free)
    cfg = sample_cfg("INPUT.TOPDOWN.HARD_NEGATIVES_FILE", str(path),
                     "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "8")  # fmt: skip
    it = iter(TopDownTrainer.build_train_loader(cfg))
    crops = [c for _ in range(4) for c in next(it)]
    negative = [
        c for c in crops
        if not c["targets"]["heatmaps"].any() and bool((c["targets"]["target_weight"] == 1).all())
    ]  # fmt: skip
    assert 0 < len(negative) < len(crops)
    missing = sample_cfg("INPUT.TOPDOWN.HARD_NEGATIVES_FILE", str(tmp_path / "none.json"))
    with pytest.raises(FileNotFoundError, match="HARD_NEGATIVES_FILE not found"):
        TopDownTrainer.build_train_loader(missing)
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"image_id": 424242, "bbox": [0, 0, 9, 9], "score": 1.0}]))
    with pytest.raises(ValueError, match=r"other.json: detection 0: image 424242 is not in"):
        TopDownTrainer.build_train_loader(
            sample_cfg("INPUT.TOPDOWN.HARD_NEGATIVES_FILE", str(other))
        )
    assert torch.is_tensor(crops[0]["image"])
