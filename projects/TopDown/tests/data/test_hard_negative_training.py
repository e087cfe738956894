"""Hard-negative detection mining in top-down training (INPUT.HARD_NEGATIVES.FILE): the
COCO sample's detections that cover no person (by default the PCR report's rule, no
intersection; or below an IoU threshold) become crops with all-zero heatmaps at full weight."""

import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.data.hard_negatives import (
    mine_dataset_dicts,
    mine_hard_negatives,
    negative_person_dicts,
)
from multitask_pose.data.paths import samples_root
from pose_topdown.data.build import hard_negative_samples
from pose_topdown.data.mapper import TopDownTrainMapper, person_dicts
from pose_topdown.engine import TopDownTrainer
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
    mined, report = mine_dataset_dicts(dicts, dets, 0.5, 0.3)
    negatives = negative_person_dicts(dicts, mined, 17)
    gt = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
    assert report["mined"] == mine_hard_negatives(gt, dets, 0.5, 0.3)[1]["mined"] == len(free)
    assert [n["bbox"].tolist() for n in negatives] == [
        [x, y, x + w, y + h] for x, y, w, h in (f["bbox"] for f in free)
    ]  # the report's rule: only the boxes overlapping no person
    mined, report = mine_dataset_dicts(dicts, dets, 0.5, 0.3, rule="iou")
    by_iou = negative_person_dicts(dicts, mined, 17)
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
    """INPUT.HARD_NEGATIVES.MAX_KEYPOINTS 0 with the IoU rule on the sample's real
    detections plus a whole-image box per image (below the IoU threshold with small persons, yet
    showing them): every crop kept holds no labelled keypoint of any person (recounted here), the
    rest are dropped. The report's rule (the default) mines no whole-image box."""
    dicts = DatasetCatalog.get(SAMPLE)
    whole = [{"image_id": d["image_id"], "bbox": [0, 0, d["width"], d["height"]], "score": 0.99}
             for d in dicts]  # fmt: skip
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(json.loads(DETECTIONS.read_text()) + whole))
    cfg = sample_cfg("INPUT.HARD_NEGATIVES.FILE", str(path),
                     "INPUT.HARD_NEGATIVES.RULE", "iou")  # fmt: skip
    every = hard_negative_samples(cfg, dicts)
    cfg.INPUT.HARD_NEGATIVES.MAX_KEYPOINTS = 0
    clean = hard_negative_samples(cfg, dicts)
    kps = {d["image_id"]: [np.asarray(a["keypoints"]).reshape(-1, 3) for a in d["annotations"]]
           for d in dicts}  # fmt: skip

    def holds(n):
        x0, y0, x1, y1 = n["bbox"]
        return any(((k[:, 0] >= x0) & (k[:, 0] <= x1) & (k[:, 1] >= y0) & (k[:, 1] <= y1)
                    & (k[:, 2] > 0)).any() for k in kps[n["image_id"]])  # fmt: skip

    boxes = lambda ns: [(n["image_id"], n["bbox"].tolist()) for n in ns]  # noqa: E731
    assert boxes(clean) == boxes([n for n in every if not holds(n)])
    assert 0 < len(clean) < len(every) and any(n["bbox"][2] == n["width"] for n in every)
    cfg.INPUT.HARD_NEGATIVES.MAX_KEYPOINTS = -1
    cfg.INPUT.HARD_NEGATIVES.RULE = "no_intersection"
    assert not hard_negative_samples(cfg, dicts)  # every box there overlaps a person
    cfg.INPUT.HARD_NEGATIVES.MAX_KEYPOINTS = -2
    with pytest.raises(ValueError, match="INPUT.HARD_NEGATIVES.MAX_KEYPOINTS must be -1"):
        hard_negative_samples(cfg, dicts)
    cfg.INPUT.HARD_NEGATIVES.MAX_KEYPOINTS = -1
    cfg.INPUT.HARD_NEGATIVES.RULE = "overlap"
    with pytest.raises(ValueError, match="INPUT.HARD_NEGATIVES.RULE must be one of"):
        hard_negative_samples(cfg, dicts)


def test_training_loader_mixes_negatives_in_and_refuses_bad_settings(tmp_path):
    path, free = with_free_boxes(tmp_path, DatasetCatalog.get(SAMPLE))
    default = sample_cfg("INPUT.HARD_NEGATIVES.FILE", str(path))
    assert len(hard_negative_samples(default, DatasetCatalog.get(SAMPLE))) == len(free)
    cfg = sample_cfg("INPUT.HARD_NEGATIVES.FILE", str(path),
                     "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "8")  # fmt: skip
    it = iter(TopDownTrainer.build_train_loader(cfg))
    crops = [c for _ in range(4) for c in next(it)]
    negative = [
        c for c in crops
        if not c["targets"]["heatmaps"].any() and bool((c["targets"]["target_weight"] == 1).all())
    ]  # fmt: skip
    assert 0 < len(negative) < len(crops)
    missing = sample_cfg("INPUT.HARD_NEGATIVES.FILE", str(tmp_path / "none.json"))
    with pytest.raises(FileNotFoundError, match=r"none.json \(INPUT.HARD_NEGATIVES.FILE\)"):
        TopDownTrainer.build_train_loader(missing)
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"image_id": 424242, "bbox": [0, 0, 9, 9], "score": 1.0}]))
    with pytest.raises(ValueError, match=r"other.json: detection 0: image 424242 is not in"):
        TopDownTrainer.build_train_loader(
            sample_cfg("INPUT.HARD_NEGATIVES.FILE", str(other))
        )
    assert torch.is_tensor(crops[0]["image"])


def test_hard_negatives_of_other_images_are_refused(tmp_path):
    """INPUT.HARD_NEGATIVES.FILE made for other images is refused naming the key: its
    record names another registered dataset or a folder, or its boxes reach beyond the training
    set's images; the sample's own file, with its record, mines."""
    from multitask_pose.evaluation.results_record import (
        ResultsDatasetError,
        describe_images,
        write_results_record,
    )

    dicts = DatasetCatalog.get(SAMPLE)
    path = tmp_path / "dets.json"
    path.write_text(DETECTIONS.read_text())
    cfg = sample_cfg("INPUT.HARD_NEGATIVES.FILE", str(path),
                     "INPUT.HARD_NEGATIVES.RULE", "iou")  # fmt: skip
    key = "INPUT.HARD_NEGATIVES.FILE"
    for named, shown in (("synth_people_val", "dataset 'synth_people_val'"),
                         (describe_images([tmp_path]), f"images in {tmp_path}")):  # fmt: skip
        write_results_record(path, dataset=named, producer="x", score_scale=None)
        with pytest.raises(ResultsDatasetError, match=f"^{key}: {path} holds results on {shown} "):
            hard_negative_samples(cfg, dicts)
    write_results_record(path, dataset=SAMPLE, producer="x", score_scale=None)
    assert hard_negative_samples(cfg, dicts)
    far = [{**d, "bbox": [d["bbox"][0] + 5000, *d["bbox"][1:]]}
           for d in json.loads(path.read_text())]  # fmt: skip
    path.write_text(json.dumps(far))
    with pytest.raises(ResultsDatasetError, match=f"^{key}: .* boxes reach beyond their image"):
        hard_negative_samples(cfg, dicts)


def test_both_stages_mine_the_same_boxes_from_the_one_key_set(tmp_path):
    """One INPUT.HARD_NEGATIVES set, one mining: the R-CNN's proposals-to-be and the top-down
    stage's negative crops are the same boxes of the same images."""
    from multitask_pose.config import get_multitask_cfg
    from multitask_pose.data.hard_negatives import mine_from_config, with_hard_negatives

    dicts = DatasetCatalog.get(SAMPLE)
    path, _ = with_free_boxes(tmp_path, dicts)
    opts = ["DATASETS.TRAIN", f"('{SAMPLE}',)", "INPUT.HARD_NEGATIVES.FILE", str(path),
            "INPUT.HARD_NEGATIVES.RULE", "iou"]  # fmt: skip
    rcnn = get_multitask_cfg()
    rcnn.merge_from_list(opts)
    boxes = sorted((d["image_id"], b.tolist()) for d in
                   with_hard_negatives(dicts, mine_from_config(rcnn, dicts)[0])
                   for b in d.get("hard_negatives", ()))  # fmt: skip
    crops = sorted((n["image_id"], n["bbox"].astype(np.float32).tolist())
                   for n in hard_negative_samples(sample_cfg(*opts), dicts))  # fmt: skip
    assert boxes and boxes == crops
