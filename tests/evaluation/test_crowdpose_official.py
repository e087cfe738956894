"""CrowdPose keypoint AP on the real validation file (``datasets/samples/crowdpose``, as
released: 2,000 images, 8,527 persons) equals its official evaluation's figures, computed here by
an independent reference written from the official rules.

Source of the rules: github Jeff-sjtu/CrowdPose @86fe5e1, crowdpose-api/PythonAPI/crowdposetools/
cocoeval.py (read there, no code copied):
- ignored persons: ``iscrowd`` or ``num_keypoints == 0`` as the file counts it (:124-126); the
  release counts the 12 limb joints only, so 954 persons labelled only at head and neck are
  ignored (888 of them not crowd regions);
- OKS: 14 sigmas .79 .79 .72 .72 .62 .62 1.07 1.07 .87 .87 .89 .89 .79 .79 / 10 (:223-224), over
  the person's labelled points, scale box width x height x 0.53 (:258), whatever ``area`` holds;
  a person without labelled points is matched by the distance to its doubled box (:236-256);
- area ranges by box area x 0.53 (:282); maxDets 20; ranges all / medium / large (:624-627);
- greedy matching by score as COCO's (:305-329), 101 recall points (:419-452);
- reported: AP, AP50, AP75, AR, AR50, AR75 at maxDets 20, all areas (:535-540), and AP per
  crowding level (:541-547): images with crowdIndex < 0.2 easy, else < 0.8 medium, else hard
  (:588-593), each the mean of the precision of an evaluation on that level's images (:569-575).

``xtcocotools`` (which carries a CrowdPose mode) does not import with NumPy 2, so the reference
(:func:`official_reference`) is this module's own numpy re-implementation of the rules above. It
was checked against pycocotools: with CrowdPose's rules switched off (the file's ``area`` as OKS
scale, COCO's 17 sigmas) it gives pycocotools' AP, AP50, AP75, AR on the real COCO sample with
noisy predictions and false positives to 1e-12
(``test_reference_equals_pycocotools_with_crowdpose_rules_off``).

Measured figures (seeded predictions of :func:`noisy_predictions`: 8% of persons missing, false
positives, jitter of random size per person, scores tied to it) are in
``test_full_val_file_official_figures``.
"""

import contextlib
import gzip
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

import multitask_pose  # noqa: F401
from multitask_pose.data.converters import register_crowdpose
from multitask_pose.data.datasets import register_config_datasets
from multitask_pose.data.keypoints import CROWDPOSE_PERSON
from multitask_pose.evaluation import PoseCOCOEvaluator

# The released file, gzipped unchanged (datasets/samples/crowdpose/PROVENANCE.md).
VAL = Path(__file__).resolve().parents[2] / "datasets/samples/crowdpose/crowdpose_val.json.gz"

# The official constants (cocoeval.py file:line), as a table.
OFFICIAL_SIGMAS = np.array([.79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89, .79,
                            .79]) / 10.0  # :223-224  # fmt: skip
OFFICIAL_BOX_AREA_FACTOR = 0.53  # :258, :282
OFFICIAL_MAX_DETS = 20  # :624
OFFICIAL_LEVEL_BOUNDS = (0.2, 0.8)  # :541 get_type_result(first=0.2, second=0.8)
IOU_THRS = np.linspace(0.5, 0.95, 10)  # :620
REC_THRS = np.linspace(0.0, 1.0, 101)  # :622


def official_level(crowd_index):
    """cocoeval.py:588-593: ``< first`` easy, else ``< second`` medium, else hard."""
    first, second = OFFICIAL_LEVEL_BOUNDS
    return "easy" if crowd_index < first else "medium" if crowd_index < second else "hard"


# ------------------------------------------------------------------- the independent reference
def _oks(gts, dts, areas, sigmas):
    """(D, G) OKS of COCO's form: labelled points, or the doubled-box distance when none."""
    var = (2 * sigmas) ** 2
    out = np.zeros((len(dts), len(gts)))
    for j, g in enumerate(gts):
        kp = np.asarray(g["keypoints"], float).reshape(-1, 3)
        labelled = kp[:, 2] > 0
        x, y, w, h = g["bbox"]
        for i, d in enumerate(dts):
            p = np.asarray(d["keypoints"], float).reshape(-1, 3)
            if labelled.any():
                dx, dy = p[:, 0] - kp[:, 0], p[:, 1] - kp[:, 1]
            else:  # outside the box grown by its size on every side
                dx = np.maximum(0, x - w - p[:, 0]) + np.maximum(0, p[:, 0] - (x + 2 * w))
                dy = np.maximum(0, y - h - p[:, 1]) + np.maximum(0, p[:, 1] - (y + 2 * h))
            e = (dx**2 + dy**2) / var / (areas[j] + np.spacing(1)) / 2
            if labelled.any():
                e = e[labelled]
            out[i, j] = np.exp(-e).sum() / e.shape[0]
    return out


def _match_image(gts, dts, crowdpose, sigmas):
    """One image: its detections' scores, matched / ignored flags per IoU threshold, and the
    ground truth's ignore flags (all areas, maxDets 20)."""
    if crowdpose:
        areas = [g["bbox"][2] * g["bbox"][3] * OFFICIAL_BOX_AREA_FACTOR for g in gts]
    else:
        areas = [g["area"] for g in gts]
    ignore = np.array([bool(g.get("iscrowd", 0)) or g["num_keypoints"] == 0 for g in gts], bool)
    crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], bool)
    order = np.argsort(-np.array([d["score"] for d in dts]), kind="stable")[:OFFICIAL_MAX_DETS]
    dts = [dts[i] for i in order]
    gorder = np.argsort(ignore, kind="stable")  # persons that count first
    gts = [gts[i] for i in gorder]
    areas = np.asarray(areas, float)[gorder]
    ignore, crowd = ignore[gorder], crowd[gorder]
    ious = _oks(gts, dts, areas, sigmas) if gts and dts else np.zeros((len(dts), len(gts)))
    t_n, d_n, g_n = len(IOU_THRS), len(dts), len(gts)
    dt_matched = np.zeros((t_n, d_n), bool)
    dt_ignored = np.zeros((t_n, d_n), bool)
    for t, thr in enumerate(IOU_THRS):
        taken = np.zeros(g_n, bool)
        for i in range(d_n):
            best, m = min(thr, 1 - 1e-10), -1
            for j in range(g_n):
                if taken[j] and not crowd[j]:
                    continue
                if m > -1 and not ignore[m] and ignore[j]:
                    break  # matched a person that counts; the rest are ignored ones
                if ious[i, j] < best:
                    continue
                best, m = ious[i, j], j
            if m > -1:
                dt_matched[t, i], dt_ignored[t, i], taken[m] = True, ignore[m], True
    scores = np.array([d["score"] for d in dts], float)
    return scores, dt_matched, dt_ignored, ignore


def official_reference(data, dets, image_ids=None, crowdpose=True, sigmas=OFFICIAL_SIGMAS):
    """AP, AP50, AP75, AR, AR50, AR75 (x 100) and the precision array [T, R] by the rules in the
    module docstring; ``crowdpose=False`` uses the file's ``area`` (COCO's rule)."""
    ids = sorted({im["id"] for im in data["images"]} if image_ids is None else set(image_ids))
    gts, dts = {i: [] for i in ids}, {i: [] for i in ids}
    for a in data["annotations"]:
        if a["image_id"] in gts:
            gts[a["image_id"]].append(a)
    for d in dets:
        if d["image_id"] in dts:
            dts[d["image_id"]].append(d)
    per = [_match_image(gts[i], dts[i], crowdpose, sigmas) for i in ids if gts[i] or dts[i]]
    scores = np.concatenate([p[0] for p in per])
    order = np.argsort(-scores, kind="stable")
    matched = np.concatenate([p[1] for p in per], 1)[:, order]
    ignored = np.concatenate([p[2] for p in per], 1)[:, order]
    n_pos = int(sum((~p[3]).sum() for p in per))
    tp = np.cumsum(matched & ~ignored, 1).astype(float)
    fp = np.cumsum(~matched & ~ignored, 1).astype(float)
    precision = np.zeros((len(IOU_THRS), len(REC_THRS)))
    recall = np.zeros(len(IOU_THRS))
    for t in range(len(IOU_THRS)):
        if n_pos == 0:
            precision[t], recall[t] = -1, -1
            continue
        rc = tp[t] / n_pos
        pr = tp[t] / (tp[t] + fp[t] + np.spacing(1))
        recall[t] = rc[-1] if len(rc) else 0
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # the precision envelope
        at = np.searchsorted(rc, REC_THRS, side="left")
        precision[t] = np.where(at < len(pr), pr[np.minimum(at, len(pr) - 1)], 0.0)
    out = {"AP": 100 * precision.mean(), "AP50": 100 * precision[0].mean(),
           "AP75": 100 * precision[5].mean(), "AR": 100 * recall.mean(),
           "AR50": 100 * recall[0], "AR75": 100 * recall[5]}  # fmt: skip
    return out, precision


def official_levels(data, dets):
    """APeasy / APmedium / APhard (x 100, unrounded; the official prints round(x, 4) of the
    fraction): each the mean of the precision of the evaluation on its images."""
    out = {}
    for level in ("easy", "medium", "hard"):
        ids = [im["id"] for im in data["images"] if official_level(im["crowdIndex"]) == level]
        out[f"AP{level}"] = 100 * official_reference(data, dets, ids)[1].mean()
    return out


# -------------------------------------------------------------------------- the predictions
def noisy_predictions(data, seed=0):
    """Predictions made from the annotations with seeded noise: 8% of persons missing; each
    other person's labelled points moved by normal noise of a random size per person in units of
    that joint's OKS tolerance (so OKS spreads over the thresholds), unlabelled points anywhere
    in its box; persons without labelled points (ignored) predicted inside their box half the
    time; a false positive beside 6% of persons and on 10% of images; scores tied to the noise
    size. Coordinates on a 1/64-pixel grid and scores in float32, so the evaluator's float32
    keypoints (+0.5 into detectron2's frame and back) are exactly these."""
    rng = np.random.default_rng(seed)
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    dets = []

    def det(image_id, kp, score):
        kp = np.round(np.asarray(kp, float) * 64) / 64
        dets.append({"image_id": image_id, "keypoints": kp.reshape(-1).tolist(),
                     "score": float(np.float32(score))})  # fmt: skip

    for a in data["annotations"]:
        g = np.asarray(a["keypoints"], float).reshape(14, 3)
        x, y, w, h = a["bbox"]
        labelled = g[:, 2] > 0
        inside = np.column_stack([x + rng.uniform(0, w, 14), y + rng.uniform(0, h, 14)])
        if not labelled.any():
            if rng.random() < 0.5:
                det(a["image_id"], np.column_stack([inside, np.ones(14)]), rng.uniform(0.05, 0.9))
            continue
        if rng.random() < 0.08:
            continue
        k = rng.uniform(0.0, 0.9)  # noise size: OKS per point about exp(-k^2 z^2 / 2)
        tol = 2 * OFFICIAL_SIGMAS * math.sqrt(w * h * OFFICIAL_BOX_AREA_FACTOR)
        xy = np.where(labelled[:, None], g[:, :2] + k * tol[:, None] * rng.normal(size=(14, 2)),
                      inside)  # fmt: skip
        score = float(np.clip(1.0 - k / 1.5 + rng.normal(0, 0.15), 0.01, 1.0))
        det(a["image_id"], np.column_stack([xy, np.ones(14)]), score)
        if rng.random() < 0.06:
            fp = xy + [w * rng.choice([-1.2, 1.2]), 0]
            det(a["image_id"], np.column_stack([fp, np.ones(14)]), rng.uniform(0.05, 0.8))
    for im in data["images"]:
        if rng.random() < 0.1:
            width, height = sizes[im["id"]]
            xy = np.column_stack([rng.uniform(0, width, 14), rng.uniform(0, height, 14)])
            det(im["id"], np.column_stack([xy, np.ones(14)]), rng.uniform(0.05, 0.6))
    return dets


def evaluate(name, dets, sizes, backend="faster_coco_eval"):
    """The predictions through PoseCOCOEvaluator as a model's Instances (detectron2's frame)."""
    ev = PoseCOCOEvaluator(name, tasks=("keypoints",), distributed=False, backend=backend)
    ev.reset()
    per_image = {}
    for d in dets:
        per_image.setdefault(d["image_id"], []).append(d)
    for image_id, ds in per_image.items():
        kp = torch.tensor([d["keypoints"] for d in ds], dtype=torch.float32).reshape(len(ds), 14, 3)
        kp[..., :2] += 0.5
        inst = Instances(sizes[image_id][::-1])
        inst.pred_keypoints = kp
        inst.pred_boxes = Boxes(torch.cat([kp[..., :2].min(1)[0], kp[..., :2].max(1)[0]], 1))
        inst.scores = torch.tensor([d["score"] for d in ds], dtype=torch.float32)
        inst.pred_classes = torch.zeros(len(ds), dtype=torch.long)
        ev.process([{"image_id": image_id}], [{"instances": inst}])
    with contextlib.redirect_stdout(io.StringIO()):
        return ev.evaluate()["keypoints"]


def _write_with_images(tmp_path, data):
    """The json and an (empty) file per image, which the loader checks exists."""
    images = tmp_path / "images"
    images.mkdir()
    for im in data["images"]:
        (images / im["file_name"]).touch()
    path = tmp_path / "crowdpose.json"
    path.write_text(json.dumps(data))
    return path, images


def _register_both_paths(tmp_path, monkeypatch, data, tag):
    """The raw file through DATASETS.REGISTER_COCO (layout crowdpose) and the converter
    (register_crowdpose); plus the raw file with a wrong ``area`` (box area x 1) in every
    annotation, which CrowdPose's rule overrides. Returns the names."""
    monkeypatch.setenv("MTP_DATASETS_CACHE", str(tmp_path / "cache"))
    path, images = _write_with_images(tmp_path, data)
    with_area = tmp_path / "with_area.json"
    with_area.write_text(json.dumps({**data, "annotations": [
        {**a, "area": a["bbox"][2] * a["bbox"][3]} for a in data["annotations"]]}))  # fmt: skip
    raw, converted, area = f"cp_raw_{tag}", f"cp_converted_{tag}", f"cp_area_{tag}"
    register_config_datasets([(raw, str(path), str(images), "crowdpose"),
                              (area, str(with_area), str(images), "crowdpose")])  # fmt: skip
    register_crowdpose(converted, str(path), str(images))
    for name in (raw, converted, area):
        DatasetCatalog.get(name)  # loading sets the category mapping the evaluator reads
    return raw, converted, area


def _unregister(*names):
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


@pytest.fixture(scope="module")
def val():
    with gzip.open(VAL, "rt") as f:
        return json.load(f)


def _subset(val, n_images, seed):
    """``n_images`` images of the file (those at exactly 0.2 and 0.8 among them) with their
    persons; eight more have their crowdIndex set at and around the boundaries."""
    rng = np.random.default_rng(seed)
    at_bounds = [im for im in val["images"] if im["crowdIndex"] in OFFICIAL_LEVEL_BOUNDS]
    others = [im for im in val["images"] if im["crowdIndex"] not in OFFICIAL_LEVEL_BOUNDS]
    picked = at_bounds + [others[i] for i in rng.choice(len(others), n_images - len(at_bounds),
                                                        replace=False)]  # fmt: skip
    images = [dict(im) for im in picked]
    for im, ci in zip(images[len(at_bounds):], (0.2, 0.8, 0.19999, 0.20001, 0.79999, 0.80001,
                                                0.2, 0.8)):  # fmt: skip
        im["crowdIndex"] = ci
    ids = {im["id"] for im in images}
    anns = [a for a in val["annotations"] if a["image_id"] in ids]
    return {**val, "images": images, "annotations": anns}


# ---------------------------------------------------------------------------------- the tests
def test_official_constants_table():
    """The evaluator's CrowdPose settings against the official file's (file:line above)."""
    from multitask_pose.evaluation.coco_evaluation import CROWD_LEVELS
    from multitask_pose.evaluation.ground_truth import CROWDPOSE_AREA_FACTOR

    assert np.allclose(CROWDPOSE_PERSON.oks_sigmas, OFFICIAL_SIGMAS, rtol=0, atol=1e-12)
    assert CROWDPOSE_AREA_FACTOR == OFFICIAL_BOX_AREA_FACTOR
    for ci in (-0.1, 0.0, 0.1, 0.19999, 0.2, 0.20001, 0.5, 0.79999, 0.8, 0.80001, 3.02):
        ours = [name for name, lo, hi in CROWD_LEVELS if lo <= ci < hi]
        assert ours == [f"AP{official_level(ci)}"], ci


def test_ground_truth_completion_follows_the_release(val):
    """A CrowdPose-layout file without counts gets the release's (labelled limb joints: equal
    to the released counts of every val person) and every area is box w x h x 0.53, whatever
    the file held and whatever TEST.MISSING_AREA_FACTOR says."""
    from multitask_pose.evaluation.ground_truth import complete_ground_truth

    stripped = {**val, "annotations": [
        {k: v for k, v in a.items() if k != "num_keypoints"} | {"area": 1.0}
        for a in val["annotations"]]}  # fmt: skip
    done = complete_ground_truth(stripped, source="t", num_keypoints=14, area_factor=2.0,
                                 crowdpose=True)  # fmt: skip
    for a, b in zip(val["annotations"], done["annotations"]):
        assert b["num_keypoints"] == a["num_keypoints"]
        assert b["area"] == a["bbox"][2] * a["bbox"][3] * OFFICIAL_BOX_AREA_FACTOR
    assert sum(a["num_keypoints"] == 0 for a in done["annotations"]) == 1453


def test_error_analysis_reads_the_ground_truth_by_the_same_rules(val, tmp_path, monkeypatch):
    """tools/analyze_keypoints.py's ground truth: CrowdPose's areas whatever the file holds."""
    from multitask_pose.evaluation.error_analysis import load_ground_truth

    data = _subset(val, 50, seed=4)
    names = _register_both_paths(tmp_path, monkeypatch, data, "analysis")
    try:
        for name in names:
            coco = load_ground_truth(name)[0]
            for a in data["annotations"]:
                b = coco.anns[a["id"]]
                assert b["area"] == a["bbox"][2] * a["bbox"][3] * OFFICIAL_BOX_AREA_FACTOR
                assert b["num_keypoints"] == a["num_keypoints"]
    finally:
        _unregister(*names)


def test_reference_equals_pycocotools_with_crowdpose_rules_off():
    """How the reference was checked: on the real COCO sample (17 keypoints, its own areas) with
    noisy predictions, false positives and a crowd region, it gives pycocotools' figures."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from multitask_pose.data.keypoints import COCO_PERSON
    from multitask_pose.data.paths import samples_root

    path = samples_root() / "coco" / "test_coco.json"
    data = json.loads(path.read_text())
    rng = np.random.default_rng(5)
    sig = np.array(COCO_PERSON.oks_sigmas)
    dets = []
    for rep in range(3):
        for a in data["annotations"]:
            g = np.asarray(a["keypoints"], float).reshape(17, 3)
            x, y, w, h = a["bbox"]
            k = rng.uniform(0, 0.8)
            xy = g[:, :2] + k * 2 * sig[:, None] * math.sqrt(a["area"]) * rng.normal(size=(17, 2))
            xy = np.where(g[:, 2:] > 0, xy, [x + w / 2, y + h / 2]) + np.array([rep * w * 0.7, 0])
            score = rng.uniform(0.5, 1) if rep == 0 else rng.uniform(0, 0.7)
            kp = np.column_stack([xy, np.ones(17)]).ravel().tolist()
            dets.append({"image_id": a["image_id"], "category_id": 1, "score": score,
                         "keypoints": kp})  # fmt: skip
    ours = official_reference(data, dets, crowdpose=False, sigmas=sig)[0]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        ev = COCOeval(gt, gt.loadRes(json.loads(json.dumps(dets))), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ref = dict(zip(("AP", "AP50", "AP75"), 100 * ev.stats[:3]))
    ref.update(zip(("AR", "AR50", "AR75"), 100 * ev.stats[5:8]))
    assert 10 < ref["AP"] < 90
    for m, v in ref.items():
        assert ours[m] == pytest.approx(v, abs=1e-10), m


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_subset_with_boundary_levels_equals_official(val, tmp_path, monkeypatch, backend):
    """300 real images (those at crowdIndex exactly 0.2 / 0.8 included, eight more set to 0.2,
    0.8, 0.19999, 0.20001, 0.79999, 0.80001): the raw file registered as is and its conversion
    give the same figures, equal to the official rules' (levels included), with the persons
    labelled only at head and neck ignored. Recounting num_keypoints over all 14 joints (what
    the converter did) gives other figures."""
    data = _subset(val, 300, seed=1)
    dets = noisy_predictions(data, seed=2)
    names = _register_both_paths(tmp_path, monkeypatch, data, f"sub_{backend}")
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    try:
        got = {n: evaluate(n, dets, sizes, backend) for n in names}
    finally:
        _unregister(*names)
    ref, _ = official_reference(data, dets)
    ref.update(official_levels(data, dets))
    assert 40 < ref["AP"] < 90 and all(0 < ref[f"AP{lv}"] < 100 for lv in ("easy", "medium",
                                                                          "hard"))  # fmt: skip
    for name, res in got.items():
        for metric, value in ref.items():
            assert res[metric] == pytest.approx(value, abs=1e-9), (name, metric)
    # The converter's former rule: persons labelled only at head/neck counted.
    recounted = {**data, "annotations": [
        {**a, "num_keypoints": int(sum(v > 0 for v in a["keypoints"][2::3]))}
        for a in data["annotations"]]}  # fmt: skip
    assert abs(official_reference(recounted, dets)[0]["AP"] - ref["AP"]) > 0.5


def test_full_val_file_official_figures(val, tmp_path, monkeypatch):
    """All 2,000 images (about 10 s): the raw file and its conversion score the official rules'
    figures. Measured with these predictions (seed 0, 8,228 of them): AP 56.88, AP50 86.78,
    AP75 55.25, AR 61.71, AR50 89.51, AR75 60.33, APeasy 54.34, APmedium 57.01, APhard 58.33;
    against the file with num_keypoints recounted over all 14 joints (the converter's former
    rule) the same predictions score AP 57.49."""
    dets = noisy_predictions(val, seed=0)
    names = _register_both_paths(tmp_path, monkeypatch, val, "full")
    sizes = {im["id"]: (im["width"], im["height"]) for im in val["images"]}
    try:
        got = {n: evaluate(n, dets, sizes) for n in names[:2]}
    finally:
        _unregister(*names)
    ref, _ = official_reference(val, dets)
    ref.update(official_levels(val, dets))
    for name, res in got.items():
        for metric, value in ref.items():
            assert res[metric] == pytest.approx(value, abs=1e-9), (name, metric)
