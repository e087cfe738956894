"""Keypoint error analysis (Ronchi & Perona taxonomy): ground truth fed back is all good; hand-built
inversions, swaps, jitter and misses get their labels; correcting every error and removing
background false positives and false negatives leaves AP 1.0; bad inputs fail naming the file."""

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import multitask_pose  # noqa: F401  (registers coco_person_sample)
from multitask_pose.data.keypoints import COCO_PERSON, KeypointSpec
from multitask_pose.evaluation.error_analysis import (
    ERROR_TYPES,
    GOOD_KS,
    NEAR_KS,
    AnalysisInputError,
    analyze,
    analyze_keypoint_errors,
    classify_keypoints,
    error_summary,
    load_ground_truth,
    load_results,
    write_report,
)
from multitask_pose.shared.oks import keypoint_similarity

DATASET = "coco_person_sample"
GOOD, JITTER, INVERSION, SWAP, MISS = range(len(ERROR_TYPES))


@pytest.fixture(scope="module")
def ground_truth():
    return load_ground_truth(DATASET)


def counted_persons(coco):
    """The annotations that count for keypoint AP (not crowd, with labelled keypoints)."""
    return [a for a in coco.dataset["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]


def results_from(anns, keypoints=None, scores=None):
    """COCO results reproducing ``anns`` (with their boxes), optionally with other keypoints."""
    out = []
    for i, a in enumerate(anns):
        kp = a["keypoints"] if keypoints is None else keypoints[i]
        out.append(
            {
                "image_id": a["image_id"],
                "category_id": a["category_id"],
                "bbox": list(a["bbox"]),
                "keypoints": np.asarray(kp, dtype=np.float64).ravel().tolist(),
                "score": 1.0 if scores is None else float(scores[i]),
            }
        )
    return out


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture(scope="module")
def sample_without_json():
    """The sample registered from its dataset dicts only (no json_file): the ground truth then
    comes from detectron2's convert_to_coco_dict."""
    name = "error_analysis_test_sample_without_json"
    DatasetCatalog.register(name, lambda: DatasetCatalog.get(DATASET))
    MetadataCatalog.get(name).set(thing_classes=["person"], **COCO_PERSON.metadata())
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.mark.parametrize("source", ["json_file", "dataset dicts"])
def test_ground_truth_fed_back_is_all_good(source, sample_without_json, tmp_path):
    """Predictions as detectron2 writes them (dataset dicts carry COCO + 0.5; COCOEvaluator
    subtracts it) land exactly on the annotations: every labelled keypoint good, AP 1.0."""
    name = DATASET if source == "json_file" else sample_without_json
    coco, _, _ = load_ground_truth(name)
    results = []
    for d in DatasetCatalog.get(DATASET):
        for a in d["annotations"]:
            kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
            if a.get("iscrowd", 0) or not (kp[:, 2] > 0).any():
                continue
            kp[:, :2] -= 0.5
            results.append(
                {
                    "image_id": d["image_id"],
                    "category_id": coco.getCatIds()[0],
                    "keypoints": kp.ravel().tolist(),
                    "score": 1.0,
                }
            )
    a = analyze_keypoint_errors(name, write_json(tmp_path / "gt.json", results))
    n_labelled = sum(p["num_keypoints"] for p in counted_persons(coco))
    assert a.counts[GOOD].sum() == n_labelled and a.counts.sum() == n_labelled
    assert np.nanmax(a.normalised_error) < 1e-9  # the 0.5 convention is undone exactly
    assert a.baseline.metrics["AP"] == pytest.approx(1.0)
    for stage in list(a.one_fixed.values()) + a.cumulative:
        assert stage.metrics["AP"] == pytest.approx(1.0), stage.label
    assert a.background["fp_count"] == 0 and a.background["fn_count"] == 0
    assert "good 100.0% jitter 0.0% inversion 0.0% swap 0.0% miss 0.0%" in error_summary(a)


# A hand-built layout: two persons of area 100^2, three keypoints (nose and a left/right pair)
# with sigma 0.1, so ks = exp(-d^2 / 800): ks 0.85 at d = 11.4 px, ks 0.5 at d = 23.5 px.
SPEC3 = KeypointSpec(
    "three",
    ("nose", "left_hand", "right_hand"),
    (("left_hand", "right_hand"),),
    (),
    (0.1, 0.1, 0.1),
)
PERSONS = np.array(
    [[[100, 100, 2], [80, 150, 2], [120, 150, 2]], [[400, 100, 2], [380, 150, 2], [420, 150, 2]]],
    dtype=np.float64,
)
AREAS = np.array([100.0**2, 100.0**2])


def classify(pred, matched=(0,), persons=PERSONS):
    return classify_keypoints(
        np.asarray(pred, dtype=np.float64),
        persons,
        AREAS,
        np.asarray(matched),
        SPEC3.oks_sigmas,
        SPEC3.flip_indices,
    )


def own_ks(xy, person=0):
    """ks of each keypoint of one pose (K, 2) against ``person``'s own joints."""
    return keypoint_similarity(
        np.asarray(xy)[None], PERSONS[person : person + 1], AREAS[:1], SPEC3.oks_sigmas
    )[0, 0]


def test_hand_built_taxonomy():
    nose, left, right = PERSONS[0, :, :2]
    cases = {
        # detection keypoints (nose, left, right) -> expected labels
        "good": ([nose + [5, 0], left, right], [GOOD, GOOD, GOOD]),
        "jitter": ([nose + [15, 0], left + [0, -15], right], [JITTER, JITTER, GOOD]),
        "inversion": ([nose, right, left], [GOOD, INVERSION, INVERSION]),
        "swap, same joint of the other person": (
            [nose, PERSONS[1, 1, :2], right],
            [GOOD, SWAP, GOOD],
        ),
        "swap, other person's mirror joint": (
            [nose, PERSONS[1, 2, :2] + [3, 0], right],
            [GOOD, SWAP, GOOD],
        ),
        "miss": ([nose, [250, 400], right - [0, 40]], [GOOD, MISS, MISS]),
    }
    preds = np.array([c[0] for c in cases.values()], dtype=np.float64)
    found = classify(preds, matched=np.zeros(len(cases), dtype=int))
    for (name, (_, want)), got in zip(cases.items(), found.labels):
        assert list(got) == want, name

    # Corrections: jitter to ks 0.85 and miss to ks 0.5 of the own joint; inversion and swap
    # carry their offset from the wrong joint over to the own one.
    for pred, labels, fixed in zip(preds, found.labels, found.corrected_xy):
        ks = own_ks(fixed)
        for k, label in enumerate(labels):
            if label == GOOD:
                np.testing.assert_array_equal(fixed[k], pred[k])
            elif label == JITTER:
                assert GOOD_KS <= ks[k] < GOOD_KS + 1e-5
            elif label == MISS:
                assert NEAR_KS <= ks[k] < NEAR_KS + 1e-5
    inv = list(cases).index("inversion")
    np.testing.assert_allclose(found.corrected_xy[inv], PERSONS[0, :, :2], atol=1e-3)
    mirror_swap = list(cases).index("swap, other person's mirror joint")
    np.testing.assert_allclose(found.corrected_xy[mirror_swap, 1], left + [3, 0], atol=1e-3)


def test_unlabelled_keypoints_and_ties():
    persons = PERSONS.copy()
    persons[0, 2, 2] = 0  # the right hand of person 0 is not labelled
    nose, left, _ = persons[0, :, :2]
    found = classify([[nose, left, [0, 0]]], persons=persons)
    assert list(found.labels[0]) == [GOOD, GOOD, -1]
    assert np.isnan(found.normalised_error[0, 2])
    # Two persons 10 px apart and a nose midway between theirs: the own person wins the tie
    # (coco-analyze's row order), so it is good, not a swap.
    close = PERSONS.copy()
    close[1, :, 0] = PERSONS[0, :, 0] + 10
    midway = (close[0, 0, :2] + close[1, 0, :2]) / 2
    assert (
        list(classify([[midway, close[0, 1, :2], close[0, 2, :2]]], persons=close).labels[0])
        == [GOOD] * 3
    )
    # A keypoint without a mirror (the nose) on its joint is good, not an inversion.
    assert classify([PERSONS[0, :, :2]]).labels[0, 0] == GOOD


def plant_errors(coco):
    """Every person of the sample as annotated, with one error of each kind planted among the
    persons of its most crowded image.

    Returns the persons, their keypoints (P, K, 3) and {(person, keypoint): expected label}."""
    anns = counted_persons(coco)
    kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), -1, 3)
    image = max({a["image_id"] for a in anns}, key=lambda i: sum(a["image_id"] == i for a in anns))
    vis = (kp[..., 2] > 0) & np.array([a["image_id"] == image for a in anns])[:, None]
    sig = np.array(MetadataCatalog.get(DATASET).keypoint_oks_sigmas)
    names = MetadataCatalog.get(DATASET).keypoint_names
    l_wrist, r_wrist = names.index("left_wrist"), names.index("right_wrist")
    expect = {}
    # One person's wrists exchanged (both labelled, over 20 px apart) -> two inversions.
    p = next(
        i
        for i in range(len(anns))
        if vis[i, [l_wrist, r_wrist]].all()
        and np.linalg.norm(kp[i, l_wrist, :2] - kp[i, r_wrist, :2]) > 20
    )
    kp[p, [l_wrist, r_wrist], :2] = kp[p, [r_wrist, l_wrist], :2]
    expect[p, l_wrist] = expect[p, r_wrist] = INVERSION
    # A second person's knee put on a third person's knee -> swap.
    knee = names.index("left_knee")
    q, r = [i for i in range(len(anns)) if i != p and vis[i, knee]][:2]
    kp[q, knee, :2] = kp[r, knee, :2]
    expect[q, knee] = SWAP
    # Another person: the shoulder moved to ks 0.7 of its own joint -> jitter; the nose moved
    # thousands of pixels away from everyone -> miss.
    shoulder, nose = names.index("left_shoulder"), names.index("nose")
    s = next(i for i in range(len(anns)) if i not in (p, q) and vis[i, [shoulder, nose]].all())
    d = math.sqrt(-2 * math.log(0.7) * (2 * sig[shoulder]) ** 2 * anns[s]["area"])
    kp[s, shoulder, 0] += d
    kp[s, nose, 1] -= 2 * math.sqrt(anns[s]["area"]) + 2000
    expect[s, shoulder], expect[s, nose] = JITTER, MISS
    return anns, kp, expect


def test_planted_errors_on_real_annotations(ground_truth):
    coco, spec, _ = ground_truth
    anns, kp, expect = plant_errors(coco)
    a = analyze(coco, spec, results_from(anns, kp))
    assert (a.matched_gt == [x["id"] for x in anns]).all()
    for i, x in enumerate(anns):
        for k in np.flatnonzero(kp[i, :, 2] > 0):
            assert a.labels[i, k] == expect.get((i, k), GOOD), (i, spec.keypoint_names[k])
    assert a.counts[[INVERSION, SWAP, JITTER, MISS]].sum(1).tolist() == [2, 1, 1, 1]
    # Correcting only keypoint errors: every person found at OKS >= 0.5 again.
    plus_jitter = next(s for s in a.cumulative if s.name == "+jitter")
    assert plus_jitter.metrics["AP50"] == pytest.approx(1.0)
    assert plus_jitter.metrics["AP"] >= a.baseline.metrics["AP"]


def test_every_error_removed_gives_ap_one(ground_truth):
    """Jitter everywhere, planted keypoint errors, a background false positive with the top score,
    a missed person: correcting every error type and removing background false positives and
    false negatives leaves AP 1.0 (the end of the cumulative chain)."""
    coco, spec, _ = ground_truth
    anns, kp, planted = plant_errors(coco)
    rng = np.random.default_rng(0)
    scale = np.sqrt([x["area"] for x in anns])[:, None, None]
    kp[..., :2] += rng.normal(scale=0.02, size=kp[..., :2].shape) * scale
    dropped = max(set(range(len(anns))) - {i for i, _ in planted})  # a false negative
    keep = [i for i in range(len(anns)) if i != dropped]
    ghost = kp[:1].copy()
    ghost[..., :2] += [3000, 0]  # a background false positive, best scored
    results = results_from(
        [anns[i] for i in keep], kp[keep], rng.uniform(0.2, 0.9, len(keep))
    ) + results_from(anns[:1], ghost, [0.99])
    a = analyze(coco, spec, results)
    assert a.baseline.metrics["AP"] < 0.9
    final = a.cumulative[-1]
    assert final.name == "+false_negatives" and final.metrics["AP"] == pytest.approx(1.0)
    defined = final.ap_per_oks[np.isfinite(final.ap_per_oks)]
    assert len(defined) and np.allclose(defined, 1.0)
    # Ignoring false positives cannot lower precision, ignoring false negatives cannot lower
    # interpolated precision at any recall.
    ap = {s.name: s.metrics["AP"] for s in a.cumulative}
    assert ap["+score"] <= ap["+background_fp"] <= ap["+false_negatives"]
    assert len(results) - 1 in a.background["fp_ids"]
    assert a.background["fn_ids"] == [anns[dropped]["id"]]
    assert sum(a.background["fn_by_size"]) == sum(a.background["fn_by_keypoints"]) == 1


def test_baseline_ap_is_pycocotools_ap(ground_truth, tmp_path):
    """The baseline is COCO keypoint AP exactly as pycocotools computes it on the dataset's json."""
    coco, spec, source = ground_truth
    anns, kp, _ = plant_errors(coco)
    results = results_from(anns, kp, np.linspace(0.3, 0.9, len(anns)))
    a = analyze_keypoint_errors(DATASET, write_json(tmp_path / "r.json", results))
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = COCO(source)
        ev = COCOeval(ref_gt, ref_gt.loadRes(copy.deepcopy(results)), "keypoints")
        ev.params.kpt_oks_sigmas = np.array(spec.oks_sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert a.baseline.metrics["AP"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert a.baseline.metrics["AP50"] == pytest.approx(ev.stats[1], abs=1e-12)


@pytest.fixture
def dataset_without_keypoints():
    name = "error_analysis_test_boxes_only"
    DatasetCatalog.register(name, lambda: [])
    MetadataCatalog.get(name).set(thing_classes=["person"], json_file="/nowhere/boxes_only.json")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_bad_inputs_name_the_file_and_the_mismatch(
    ground_truth, tmp_path, dataset_without_keypoints
):
    coco, spec, _ = ground_truth
    good = results_from(counted_persons(coco)[:2])

    def fails(name, obj, *phrases):
        path = write_json(tmp_path / name, obj)
        with pytest.raises(AnalysisInputError) as e:
            load_results(path, coco, spec, DATASET)
        for phrase in (str(path),) + phrases:
            assert phrase in str(e.value), str(e.value)

    fails("empty.json", [], "empty")
    fails(
        "other_images.json",
        [dict(good[0], image_id=123456789)] + good,
        "image ids",
        "123456789",
        "another dataset",
    )
    fails(
        "thirteen.json",
        [dict(good[0], keypoints=good[0]["keypoints"][:39])] + good,
        "39 values",
        "13 keypoints",
        "17",
    )
    fails(
        "boxes.json",
        [{k: v for k, v in r.items() if k != "keypoints"} for r in good],
        "'keypoints'",
    )
    fails("annotations.json", {"annotations": []}, "annotation file")
    with pytest.raises(AnalysisInputError, match="results file not found: .*missing.json"):
        load_results(tmp_path / "missing.json", coco, spec, DATASET)
    with pytest.raises(AnalysisInputError) as e:
        load_ground_truth(dataset_without_keypoints)
    assert dataset_without_keypoints in str(e.value) and "boxes_only.json" in str(e.value)
    assert "has no keypoints" in str(e.value)
    with pytest.raises(AnalysisInputError, match="'no_such_dataset' is not registered"):
        load_ground_truth("no_such_dataset")


def load_tool():
    from multitask_pose.commands import analyze_keypoints

    return analyze_keypoints


def test_command_line_writes_report_and_summary(ground_truth, tmp_path, capsys):
    coco, _, _ = ground_truth
    anns, kp, _ = plant_errors(coco)
    results = write_json(tmp_path / "coco_instances_results.json", results_from(anns, kp))
    tool = load_tool()
    out = tmp_path / "analysis"
    assert (
        tool.main(
            ["--dataset", DATASET, "--results", str(results), "--output", str(out), "--quiet"]
        )
        == 0
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert (
        last.startswith("analyze_keypoints: AP ") and "inversion" in last and "jitter fixed" in last
    )
    report = (out / "report.md").read_text()
    assert last in report and "| **all** |" in report
    for png in (
        "keypoint_errors",
        "ap_after_corrections",
        "pr_curves",
        "background_errors",
        "joint_error_histograms",
    ):
        assert (out / f"{png}.png").stat().st_size > 1000, png
        assert f"({png}.png)" in report

    empty = write_json(tmp_path / "empty.json", [])
    assert (
        tool.main(["--dataset", DATASET, "--results", str(empty), "--output", str(out), "--quiet"])
        == 2
    )
    err = capsys.readouterr().err
    assert "analyze_keypoints: error:" in err and str(empty) in err


def test_write_report_on_an_analysis_without_matches(ground_truth, tmp_path):
    """Detections that localise nobody: no keypoint statistics, the report still renders."""
    coco, spec, _ = ground_truth
    anns = counted_persons(coco)[:2]
    far = np.array([x["keypoints"] for x in anns], dtype=np.float64).reshape(2, -1, 3)
    far[..., :2] += 5000
    a = analyze(coco, spec, results_from(anns, far))
    assert (a.labels == -1).all() and a.baseline.metrics["AP"] == 0.0
    assert "good n/a" in error_summary(a)
    assert (write_report(a, tmp_path)).read_text().count("n/a") > 10
