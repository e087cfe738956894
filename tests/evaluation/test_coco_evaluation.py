"""The evaluator gives AP 1.0 on ground truth fed back as predictions, less on perturbed ones,
and the two COCO API backends agree exactly."""

import numpy as np
import pytest
import torch
from coco_testing import (  # tests/coco_testing.py (pytest.ini puts tests/ on the path)
    gt_as_predictions,
    person_annotation,
    predict_keypoints,
    pycocotools_keypoint_ap,
    write_dataset,
)
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

import multitask_pose  # noqa: F401
from multitask_pose.evaluation import PoseCOCOEvaluator

DATASET = "coco_person_sample"
TASKS = ("bbox", "segm", "keypoints")


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
    """Both backends read the same outputs one after the other, as two evaluators of one run
    would: the first leaves their keypoints as they were (detectron2's instances_to_coco_json
    shifts them by -0.5 in place), so the second scores what a fresh copy scores."""
    pairs = gt_as_predictions(dicts, box_noise=4.0, kp_noise=4.0)
    before = [out["instances"].pred_keypoints.clone() for _, out in pairs]
    fast = evaluate(pairs, "faster_coco_eval")
    for (_, out), kp in zip(pairs, before):
        assert torch.equal(out["instances"].pred_keypoints, kp)
    ref = evaluate(pairs, "pycocotools")
    fresh = evaluate(gt_as_predictions(dicts, box_noise=4.0, kp_noise=4.0), "pycocotools")
    assert ref["keypoints"] == fresh["keypoints"]
    assert fast["bbox"]["AP"] < 90 and fast["keypoints"]["AP"] < 90
    for task in TASKS:
        for metric, value in ref[task].items():
            assert fast[task][metric] == pytest.approx(value, abs=1e-9, nan_ok=True), (task, metric)


def test_a_second_reader_sees_the_original_keypoints(tmp_path):
    """One person of area 100, predicted exactly, read by two evaluators in turn: both score AP
    100. Shifted by detectron2's -0.5 a second time, the same pose has OKS 0.78 with this small
    a person (AP 60), so a shift left in the caller's keypoints could not go unnoticed."""
    from multitask_pose.data.keypoints import COCO_PERSON

    person = person_annotation(1, 20, 17, np.random.default_rng(2))
    person["area"] = 100.0
    path = write_dataset(tmp_path, "eval_second_reader", [person], 17, COCO_PERSON)
    pose = np.asarray(person["keypoints"], np.float32).reshape(1, 17, 3)
    inst = Instances((300, 300))
    inst.pred_keypoints = torch.tensor(pose.copy())
    inst.pred_keypoints[..., :2] += 0.5  # detectron2's frame
    original = inst.pred_keypoints.clone()
    inst.pred_boxes = Boxes(torch.tensor([[20.0, 10.0, 80.0, 190.0]]))
    inst.scores = torch.tensor([0.9])
    inst.pred_classes = torch.zeros(1, dtype=torch.long)
    outputs = [{"instances": inst}]
    for _ in range(2):
        ev = PoseCOCOEvaluator("eval_second_reader", tasks=("keypoints",), distributed=False)
        ev.reset()
        ev.process([{"image_id": 1}], outputs)
        assert ev.evaluate()["keypoints"]["AP"] == pytest.approx(100.0)
        assert torch.equal(outputs[0]["instances"].pred_keypoints, original)
    shifted = pose.copy()
    shifted[..., :2] -= 0.5
    assert pycocotools_keypoint_ap(path, shifted, [0.9], COCO_PERSON.oks_sigmas) == pytest.approx(
        60.0
    )


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="COCO_EVAL_BACKEND"):
        PoseCOCOEvaluator(DATASET, backend="fast")


# ---------------------------------------------------------------- crowd regions, own sigmas, none
def test_detections_in_a_crowd_region_are_ignored(tmp_path):
    """A pose inside an iscrowd region matches the region and is ignored, as pycocotools does:
    the best-scored detection sitting in the crowd does not cost AP."""
    from multitask_pose.data.keypoints import COCO_PERSON

    rng = np.random.default_rng(0)
    person = person_annotation(1, 20, 17, rng)
    crowd = {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [150, 0, 150, 300],
             "area": 150 * 300.0, "num_keypoints": 0, "keypoints": [0] * 51}  # fmt: skip
    path = write_dataset(tmp_path, "eval_crowd_case", [person, crowd], 17, COCO_PERSON)
    exact = np.asarray(person["keypoints"]).reshape(17, 3)
    in_crowd = exact.copy()
    in_crowd[:, 0] += 170  # inside the crowd box
    poses, scores = [in_crowd, exact], [0.9, 0.8]
    ev = PoseCOCOEvaluator("eval_crowd_case", tasks=("keypoints",), distributed=False)
    ap = predict_keypoints(ev, poses, scores)["keypoints"]["AP"]
    assert ap == pytest.approx(100.0)
    assert ap == pytest.approx(pycocotools_keypoint_ap(path, poses, scores, COCO_PERSON.oks_sigmas))
    # Without the region the same detection is a false positive ranked first: precision 1/2 at
    # the only recall, AP 50.
    no_crowd = write_dataset(tmp_path, "eval_crowd_case_dropped", [person], 17, COCO_PERSON)
    ap_no_crowd = pycocotools_keypoint_ap(no_crowd, poses, scores, COCO_PERSON.oks_sigmas)
    assert ap_no_crowd == pytest.approx(50.0)


def test_a_fourteen_keypoint_layout_is_scored_with_its_own_sigmas(tmp_path):
    """The evaluator scores OKS with the dataset's sigmas: equal to pycocotools given them, and
    different from what other sigmas give (so dropping them could not go unnoticed)."""
    from multitask_pose.data.keypoints import KeypointSpec

    parts = ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
    names = tuple(f"{side}_{p}" for p in parts for side in ("left", "right")) + ("head", "neck")
    flips = tuple((f"left_{p}", f"right_{p}") for p in parts)
    sigmas = (0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
              0.079, 0.079)  # fmt: skip
    spec = KeypointSpec("fourteen", names, flips, (), sigmas)
    rng = np.random.default_rng(1)
    persons = [person_annotation(1, 20, 14, rng), person_annotation(2, 120, 14, rng)]
    path = write_dataset(tmp_path, "eval_fourteen", persons, 14, spec)
    poses = [np.asarray(p["keypoints"]).reshape(14, 3) for p in persons]
    for p in poses:
        p[:, :2] += rng.normal(0, 3, (14, 2))
    scores = [0.9, 0.7]
    ev = PoseCOCOEvaluator("eval_fourteen", tasks=("keypoints",), distributed=False)
    ap = predict_keypoints(ev, poses, scores)["keypoints"]["AP"]
    assert ap == pytest.approx(pycocotools_keypoint_ap(path, poses, scores, sigmas), abs=1e-9)
    assert abs(ap - pycocotools_keypoint_ap(path, poses, scores, [0.025] * 14)) > 5


def test_no_predictions_score_zero_with_a_warning(caplog):
    """detectron2 reports NaN for a model that predicts nothing; against a non-empty ground
    truth this evaluator reports zero recall, AP 0, and says so."""
    ev = PoseCOCOEvaluator(DATASET, tasks=("keypoints",), distributed=False)
    ev.reset()
    inst = Instances((10, 10))
    inst.pred_keypoints = torch.zeros(0, 17, 3)
    inst.pred_boxes = Boxes(torch.zeros(0, 4))
    inst.scores = torch.zeros(0)
    inst.pred_classes = torch.zeros(0, dtype=torch.long)
    ev.process([{"image_id": DatasetCatalog.get(DATASET)[0]["image_id"]}], [{"instances": inst}])
    results = ev.evaluate()
    assert results["keypoints"] == {m: 0.0 for m in ("AP", "AP50", "AP75", "APm", "APl")}
    assert "No keypoints predictions" in caplog.text
