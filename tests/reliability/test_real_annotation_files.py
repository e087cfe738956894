"""COCO-style keypoint files from other datasets: no ``area`` (CrowdPose-style), annotation id 0,
repeated ids, crowd regions without keypoints. Each breaks or silently skews plain pycocotools
(asserted first, so the case is real); the evaluator, with both COCO API backends, scores them as
pycocotools scores the same file completed by the documented rule."""

import json
import logging

import numpy as np
import pytest
from coco_testing import person_annotation, predict_keypoints, pycocotools_keypoint_ap
from coco_testing import write_dataset as _write_dataset

import multitask_pose  # noqa: F401
from multitask_pose.data.keypoints import COCO_PERSON
from multitask_pose.evaluation import PoseCOCOEvaluator
from multitask_pose.evaluation.error_analysis import AnalysisInputError, load_ground_truth

BACKENDS = ("faster_coco_eval", "pycocotools")
SIGMAS = COCO_PERSON.oks_sigmas


def write_dataset(tmp_path, name, annotations, load=True):
    return _write_dataset(tmp_path, name, annotations, 17, COCO_PERSON, load=load)


def people(n, seed=0):
    rng = np.random.default_rng(seed)
    return [person_annotation(i + 1, 10 + 70 * i, 17, rng) for i in range(n)]


def poses_of(anns, noise, seed=1):
    rng = np.random.default_rng(seed)
    poses = [np.asarray(a["keypoints"], float).reshape(17, 3) for a in anns]
    for p in poses:
        p[:, :2] += rng.normal(0, noise, (17, 2))
    return poses


def evaluate(name, poses, scores, backend):
    ev = PoseCOCOEvaluator(name, tasks=("keypoints",), distributed=False, backend=backend)
    return predict_keypoints(ev, poses, scores)["keypoints"]["AP"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_area_uses_box_area_times_0_53(tmp_path, caplog, backend):
    anns = people(3)
    for a in anns:
        del a["area"]
    name = f"no_area_{backend}"
    path = write_dataset(tmp_path, name, anns)
    poses, scores = poses_of(anns, 4.0), [0.9, 0.8, 0.7]
    with pytest.raises(KeyError, match="area"):  # what plain pycocotools does with such a file
        pycocotools_keypoint_ap(path, poses, scores, SIGMAS)
    completed = tmp_path / "completed.json"
    data = json.loads(path.read_text())
    for a in data["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3] * 0.53
    completed.write_text(json.dumps(data))
    reference = pycocotools_keypoint_ap(completed, poses, scores, SIGMAS)
    with caplog.at_level(logging.WARNING):
        ap = evaluate(name, poses, scores, backend)
    assert ap == pytest.approx(reference, abs=1e-9) and 10 < ap < 95
    # The rule matters: the plain box area gives another AP on the same predictions.
    for a in data["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    completed.write_text(json.dumps(data))
    assert abs(pycocotools_keypoint_ap(completed, poses, scores, SIGMAS) - ap) > 1
    said = [r.getMessage() for r in caplog.records if "no 'area'" in r.getMessage()]
    assert len(said) == 1 and "x 0.53" in said[0] and str(path) in said[0], said


def test_missing_area_factor_is_configurable(tmp_path):
    anns = people(3)
    for a in anns:
        del a["area"]
    write_dataset(tmp_path, "no_area_factor", anns)
    poses, scores = poses_of(anns, 4.0), [0.9, 0.8, 0.7]
    ev = PoseCOCOEvaluator("no_area_factor", tasks=("keypoints",), distributed=False,
                           missing_area_factor=1.0)  # fmt: skip
    ap = predict_keypoints(ev, poses, scores)["keypoints"]["AP"]
    for a in anns:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    reference = write_dataset(tmp_path, "no_area_factor_ref", anns)
    assert ap == pytest.approx(pycocotools_keypoint_ap(reference, poses, scores, SIGMAS), abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_annotation_id_zero_scores_as_any_other_id(tmp_path, backend):
    anns = people(3)
    for i, a in enumerate(anns):
        a["id"] = i  # 0, 1, 2
    name = f"id_zero_{backend}"
    path = write_dataset(tmp_path, name, anns)
    exact, scores = poses_of(anns, 0.0), [0.9, 0.8, 0.7]
    assert pycocotools_keypoint_ap(path, exact, scores, SIGMAS) < 90  # the silent loss
    assert evaluate(name, exact, scores, backend) == pytest.approx(100.0)
    noisy = poses_of(anns, 4.0)
    for a in anns:
        a["id"] += 1
    reference = write_dataset(tmp_path, f"id_zero_ref_{backend}", anns)
    assert evaluate(name, noisy, scores, backend) == pytest.approx(
        pycocotools_keypoint_ap(reference, noisy, scores, SIGMAS), abs=1e-9
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeated_ids_are_reported_and_kept_apart(tmp_path, caplog, backend):
    anns = people(3)
    anns[1]["id"] = anns[2]["id"] = 7
    name = f"repeated_ids_{backend}"
    path = write_dataset(tmp_path, name, anns, load=False)
    exact, scores = poses_of(anns, 0.0), [0.9, 0.8, 0.7]
    assert pycocotools_keypoint_ap(path, exact, scores, SIGMAS) < 90  # two people become one
    with caplog.at_level(logging.WARNING):
        assert evaluate(name, exact, scores, backend) == pytest.approx(100.0)
    said = [r.getMessage() for r in caplog.records if "renumbered" in r.getMessage()]
    assert said and "repeated ids" in said[0] and "[7]" in said[0] and str(path) in said[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_crowd_region_without_keypoints_is_ignored_as_coco_does(tmp_path, backend):
    """A crowd region written without keypoint fields: plain pycocotools fails on it; the
    evaluator scores it as pycocotools scores COCO's own crowd regions (all-zero keypoints)."""
    person = people(1)[0]
    crowd = {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 1, "bbox": [150, 0, 150, 300],
             "area": 150 * 300.0}  # fmt: skip
    name = f"crowd_no_kp_{backend}"
    path = write_dataset(tmp_path, name, [person, crowd])
    exact = np.asarray(person["keypoints"], float).reshape(17, 3)
    in_crowd = exact.copy()
    in_crowd[:, 0] += 170
    poses, scores = [in_crowd, exact], [0.9, 0.8]
    with pytest.raises(KeyError):
        pycocotools_keypoint_ap(path, poses, scores, SIGMAS)
    coco_style = dict(crowd, keypoints=[0] * 51, num_keypoints=0)
    reference = write_dataset(tmp_path, f"crowd_ref_{backend}", [person, coco_style])
    ap = evaluate(name, poses, scores, backend)
    assert ap == pytest.approx(pycocotools_keypoint_ap(reference, poses, scores, SIGMAS))
    assert ap == pytest.approx(100.0)


def test_complete_files_are_scored_unchanged(tmp_path):
    """Nothing to complete: the evaluator keeps the loaded ground truth object itself."""
    write_dataset(tmp_path, "complete_file", people(2))
    ev = PoseCOCOEvaluator("complete_file", tasks=("keypoints",), distributed=False,
                           backend="pycocotools")  # fmt: skip
    assert [a["id"] for a in ev._coco_api.dataset["annotations"]] == [1, 2]
    assert ev._coco_api.dataset["annotations"][0]["area"] == 60 * 180.0


def test_error_analysis_completes_the_same_way(tmp_path):
    anns = people(2)
    anns[0]["id"] = 0
    del anns[1]["area"]
    write_dataset(tmp_path, "analysis_completion", anns)
    coco, _, _ = load_ground_truth("analysis_completion")
    assert sorted(coco.anns) == [1, 2]
    assert coco.anns[2]["area"] == pytest.approx(60 * 180 * 0.53)
    bad = people(1)
    bad[0]["keypoints"] = bad[0]["keypoints"][:-3]
    bad[0]["num_keypoints"] = 16
    path = write_dataset(tmp_path, "analysis_bad_length", bad, load=False)
    with pytest.raises(AnalysisInputError, match=f"{path}.*48 keypoint values.*17 keypoints"):
        load_ground_truth("analysis_bad_length")
