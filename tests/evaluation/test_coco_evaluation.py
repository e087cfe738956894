"""The evaluator gives AP 1.0 on ground truth fed back as predictions, less on perturbed ones,
and the two COCO API backends agree exactly."""
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.structures.masks import polygons_to_bitmask

import multitask_pose  # noqa: F401
from multitask_pose.evaluation import PoseCOCOEvaluator

DATASET = "coco_person_sample"
TASKS = ("bbox", "segm", "keypoints")


def gt_as_predictions(dicts, box_noise=0.0, kp_noise=0.0, seed=0):
    """Instances that reproduce each image's annotations (optionally perturbed)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for d in dicts:
        anns = d["annotations"]
        h, w = d["height"], d["width"]
        inst = Instances((h, w))
        boxes = np.array([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns], np.float32)
        inst.pred_boxes = Boxes(torch.tensor(boxes + box_noise * rng.normal(size=boxes.shape), dtype=torch.float32))
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(len(anns), -1, 3)
        kp[..., :2] += kp_noise * rng.normal(size=kp[..., :2].shape)
        inst.pred_keypoints = torch.tensor(kp)
        # A person without labelled keypoints is, for keypoint AP, a false positive whatever its
        # keypoints; rank those last so they cannot lower the precision of the labelled ones.
        inst.scores = torch.tensor([1.0 if (k[:, 2] > 0).any() else 0.5 for k in kp])
        inst.pred_classes = torch.zeros(len(anns), dtype=torch.long)
        inst.pred_masks = torch.from_numpy(
            np.stack([polygons_to_bitmask(a["segmentation"], h, w) for a in anns])
        )
        pairs.append(({"image_id": d["image_id"]}, {"instances": inst}))
    return pairs


def evaluate(pairs, backend):
    ev = PoseCOCOEvaluator(DATASET, tasks=TASKS, distributed=False, backend=backend)
    ev.reset()
    for inp, out in pairs:
        ev.process([inp], [out])
    return ev.evaluate()


@pytest.fixture(scope="module")
def dicts():
    return DatasetCatalog.get(DATASET)


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_ground_truth_scores_one(dicts, backend):
    results = evaluate(gt_as_predictions(dicts), backend)
    for task in TASKS:
        assert results[task]["AP"] == pytest.approx(100.0), (task, results[task])


def test_perturbed_scores_below_one_and_backends_agree(dicts):
    pairs = gt_as_predictions(dicts, box_noise=4.0, kp_noise=4.0)
    fast = evaluate(pairs, "faster_coco_eval")
    ref = evaluate(pairs, "pycocotools")
    assert fast["bbox"]["AP"] < 90 and fast["keypoints"]["AP"] < 90
    for task in TASKS:
        for metric, value in ref[task].items():
            assert fast[task][metric] == pytest.approx(value, abs=1e-9, nan_ok=True), (task, metric)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="COCO_EVAL_BACKEND"):
        PoseCOCOEvaluator(DATASET, backend="fast")
