"""TEST.AIC_EVAL: AI Challenger's own keypoint score next to the COCO-style AP, on the real AI
Challenger sample (3 images, 9 persons, its 14-keypoint layout), equal to an independent
transcription of the official rule that reads the raw release format.

Source: github AIChallenger/AI_Challenger_2017 @52014e0, Evaluation/keypoint_eval/
keypoint_eval.py: delta = 2 x its 14 sigmas (:50-52); only points with the raw flag 1 (visible)
are scored (:117); scale = box area (:119); a person without visible points has OKS 0 (:120-122);
OKS = mean of exp(-d^2 / 2 / delta^2 / (scale + 1)) (:130); per person its best OKS over the
image's predictions (:151), per image max(persons, predictions) counted (:153), an image absent
from the predictions counts its persons as zeros (:155-162); score = mean over thresholds
0.5:0.05:0.95 of #(OKS > t) / count (:165-168).
"""

import contextlib
import io

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

import multitask_pose  # noqa: F401
from multitask_pose.config import get_multitask_cfg
from multitask_pose.data.keypoints import AIC_PERSON
from multitask_pose.evaluation import PoseCOCOEvaluator

DATASET = "aic_person_sample"
# keypoint_eval.py:50-52 (delta = 2 x these)
OFFICIAL_SIGMAS = (0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144,
                   0.03909642, 0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081,
                   0.01291456, 0.01236173)  # fmt: skip


def official_aic_score(raw_annotations, raw_predictions):
    """The official rule on raw-format files (module docstring), written from its text."""
    delta = 2 * np.array(OFFICIAL_SIGMAS)
    preds = {p["image_id"]: p["keypoint_annotations"] for p in raw_predictions}
    oks_all, num = [], 0
    for anno in raw_annotations:
        humans = anno["keypoint_annotations"]
        if anno["image_id"] not in preds:
            oks_all += [0.0] * len(humans)
            num += len(humans)
            continue
        predicted = list(preds[anno["image_id"]].values())
        oks = np.zeros((len(humans), len(predicted)))
        for i, (name, values) in enumerate(humans.items()):
            kp = np.reshape(values, (14, 3)).astype(float)
            visible = kp[:, 2] == 1
            x1, y1, x2, y2 = anno["human_annotations"][name]
            scale = np.float32((y2 - y1) * (x2 - x1))
            if not visible.any():
                continue
            for j, p in enumerate(predicted):
                p = np.reshape(p, (14, 3)).astype(float)
                dis = np.sum((kp[visible, :2] - p[visible, :2]) ** 2, axis=1)
                oks[i, j] = np.mean(np.exp(-dis / 2 / delta[visible] ** 2 / (scale + 1)))
        if predicted:
            oks_all += oks.max(1).tolist()
        num += max(len(humans), len(predicted))
    oks_all = np.array(oks_all)
    return float(np.mean([np.sum(oks_all > t) / num for t in np.linspace(0.5, 0.95, 10)]))


@pytest.fixture(scope="module")
def sample():
    dicts = DatasetCatalog.get(DATASET)  # also sets the category mapping the evaluator reads
    import json

    from detectron2.data import MetadataCatalog

    with open(MetadataCatalog.get(DATASET).json_file) as f:
        coco = json.load(f)
    return dicts, coco


def _predictions(coco, seed, occluded_offset=0.0, drop=(), extra=True):
    """Per image: (K, 3) poses in COCO's frame and scores. Visible points jittered by about
    their OKS tolerance, occluded ones moved by ``occluded_offset`` pixels, persons in ``drop``
    (annotation ids) left out, and (``extra``) a false positive on image 2 with score 0.2."""
    rng = np.random.default_rng(seed)
    delta = 2 * np.array(AIC_PERSON.oks_sigmas)
    per_image = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        if a["id"] in drop:
            continue
        kp = np.array(a["keypoints"], float).reshape(14, 3)
        tol = delta * np.sqrt(a["bbox"][2] * a["bbox"][3])
        pose = kp.copy()
        pose[:, :2] += rng.normal(size=(14, 2)) * tol[:, None] * rng.uniform(0, 1.5)
        pose[kp[:, 2] == 1, 0] += occluded_offset
        pose[:, 2] = 1
        per_image[a["image_id"]].append((np.round(pose * 64) / 64, rng.uniform(0.5, 1.0)))
    if extra:
        first = np.array(coco["annotations"][3]["keypoints"], float).reshape(14, 3)
        per_image[2].append((first + [40, 0, 0], 0.2))
    return per_image


def _evaluate(cfg, per_image, dicts, dataset=DATASET, build=None):
    ev = (build or PoseCOCOEvaluator.from_cfg)(cfg, dataset, distributed=False)
    ev.reset()
    sizes = {d["image_id"]: (d["height"], d["width"]) for d in dicts}
    for image_id, preds in per_image.items():
        inst = Instances(sizes[image_id])
        kp = torch.tensor(np.stack([p for p, _ in preds]), dtype=torch.float32)
        kp[..., :2] += 0.5  # detectron2's frame
        inst.pred_keypoints = kp
        inst.pred_boxes = Boxes(torch.cat([kp[..., :2].min(1)[0], kp[..., :2].max(1)[0]], 1))
        inst.scores = torch.tensor([s for _, s in preds], dtype=torch.float32)
        inst.pred_classes = torch.zeros(len(preds), dtype=torch.long)
        ev.process([{"image_id": image_id}], [{"instances": inst}])
    with contextlib.redirect_stdout(io.StringIO()):
        return ev.evaluate()["keypoints"]


def _cfg(on=True, thresh=0.0):
    cfg = get_multitask_cfg()
    cfg.MODEL.KEYPOINT_ON = True
    cfg.TEST.AIC_EVAL = on
    cfg.TEST.AIC_EVAL_SCORE_THRESH = thresh
    return cfg


def _raw_annotations(coco):
    """The sample in the raw release's format: flags 1 visible / 2 occluded / 3 none, boxes
    x1, y1, x2, y2 (the sample's numbers are integers, as the release's)."""
    flag = {2: 1, 1: 2, 0: 3}
    raw = []
    for im in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        kps, boxes = {}, {}
        for k, a in enumerate(anns, 1):
            kp = np.array(a["keypoints"], float).reshape(14, 3)
            kp[:, 2] = [flag[int(v)] for v in kp[:, 2]]
            kps[f"human{k}"] = kp.reshape(-1).tolist()
            x, y, w, h = a["bbox"]
            boxes[f"human{k}"] = [x, y, x + w, y + h]
        raw.append({"image_id": im["file_name"][: -len(".jpg")], "keypoint_annotations": kps,
                    "human_annotations": boxes})  # fmt: skip
    return raw


def _raw_predictions(coco, per_image, thresh=0.0):
    stems = {im["id"]: im["file_name"][: -len(".jpg")] for im in coco["images"]}
    return [{"image_id": stems[i], "keypoint_annotations": {
        f"human{k}": p.reshape(-1).tolist() for k, (p, s) in enumerate(preds, 1) if s >= thresh}}
        for i, preds in per_image.items()]  # fmt: skip


def test_layout_sigmas_are_the_official_ones():
    assert AIC_PERSON.oks_sigmas == OFFICIAL_SIGMAS


def test_small_cases_by_hand():
    """A 3 x 2 px person with one visible point 0.0767 px off (OKS exp(-d^2 / (2 delta^2 (6 + 1)))
    = 0.58: above 0.50 and 0.55 only; without the +1 it would be 0.53), an occluded point far
    off (not scored); an image with two persons and no prediction; an image with no person and
    one prediction: count 1 + 2 + 1, score (1/4 + 1/4) / 10."""
    from multitask_pose.evaluation.aic_evaluation import aic_keypoint_score

    delta = 2 * OFFICIAL_SIGMAS[0]
    d = np.sqrt(-np.log(0.58) * 2 * delta**2 * 7)
    kp = np.zeros((14, 3))
    kp[0] = [10, 10, 2]
    kp[1] = [11, 11, 1]  # occluded
    person = {"id": 1, "image_id": 1, "bbox": [9, 9, 3, 2], "keypoints": kp.ravel().tolist()}
    others = [{"id": i, "image_id": 2, "bbox": [0, 0, 50, 90], "keypoints": kp.ravel().tolist()}
              for i in (2, 3)]  # fmt: skip
    gt = {"images": [{"id": i} for i in (1, 2, 3)], "annotations": [person] + others}
    pred = kp.copy()
    pred[0, 0] += d
    pred[1, 0] += 50
    results = [{"image_id": 1, "keypoints": pred.ravel().tolist(), "score": 0.9},
               {"image_id": 3, "keypoints": pred.ravel().tolist(), "score": 0.9}]  # fmt: skip
    assert aic_keypoint_score(gt, results, OFFICIAL_SIGMAS) == pytest.approx(0.05)


@pytest.mark.parametrize("thresh", [0.0, 0.3])
def test_score_equals_the_official_rule(sample, thresh):
    """Jittered poses, one person missing, a false positive at score 0.2 (counted without a
    threshold, not with 0.3): the evaluator's AIC_mAP is the official rule's on the raw files."""
    dicts, coco = sample
    per_image = _predictions(coco, seed=3, drop={coco["annotations"][7]["id"]})
    got = _evaluate(_cfg(thresh=thresh), per_image, dicts)
    raw = _raw_annotations(coco)
    ref = 100 * official_aic_score(raw, _raw_predictions(coco, per_image, thresh))
    assert 5 < ref < 95
    assert got["AIC_mAP"] == pytest.approx(ref, abs=1e-9)
    if thresh:
        no_thresh = official_aic_score(raw, _raw_predictions(coco, per_image))
        assert 100 * no_thresh < ref - 1


def test_only_visible_points_count(sample):
    """Exact visible points, occluded points 30 px off: AI Challenger's score is 100 (it scores
    visible points only), the COCO-style AP, which scores occluded points too, is far below."""
    dicts, coco = sample
    per_image = _predictions(coco, seed=0, extra=False)
    for image_id, preds in per_image.items():
        exact = [np.array(a["keypoints"], float).reshape(14, 3) for a in coco["annotations"]
                 if a["image_id"] == image_id]  # fmt: skip
        for (pose, _), kp in zip(preds, exact):
            pose[:, :2] = kp[:, :2] + np.where(kp[:, 2:] == 1, [30.0, 0.0], 0.0)
    got = _evaluate(_cfg(), per_image, dicts)
    assert got["AIC_mAP"] == pytest.approx(100.0)
    assert got["AP"] < 60


def test_the_top_down_trainer_evaluates_by_the_same_keys(sample, tmp_path):
    """The top-down stage's evaluator reads TEST.AIC_EVAL / _SCORE_THRESH as the R-CNN's does."""
    from pose_topdown.config import get_topdown_cfg
    from pose_topdown.engine import TopDownTrainer

    dicts, coco = sample
    per_image = _predictions(coco, seed=3)
    cfg = get_topdown_cfg()
    cfg.TEST.AIC_EVAL, cfg.TEST.AIC_EVAL_SCORE_THRESH = True, 0.3
    cfg.OUTPUT_DIR = str(tmp_path)

    def build(cfg, name, distributed):
        return TopDownTrainer.build_evaluator(cfg, name)

    got = _evaluate(cfg, per_image, dicts, build=build)
    assert got["AIC_mAP"] == pytest.approx(_evaluate(_cfg(thresh=0.3), per_image, dicts)["AIC_mAP"])
    ref = official_aic_score(_raw_annotations(coco), _raw_predictions(coco, per_image, 0.3))
    assert got["AIC_mAP"] == pytest.approx(100 * ref, abs=1e-9)


def test_off_by_default_and_only_for_the_aic_layout(sample, caplog):
    dicts, coco = sample
    per_image = _predictions(coco, seed=1)
    assert "AIC_mAP" not in _evaluate(_cfg(on=False), per_image, dicts)
    assert get_multitask_cfg().TEST.AIC_EVAL is False
    from coco_testing import gt_as_predictions

    cfg = _cfg()
    ev = PoseCOCOEvaluator.from_cfg(cfg, "coco_person_sample", distributed=False)
    ev.reset()
    for inp, out in gt_as_predictions(DatasetCatalog.get("coco_person_sample")):
        ev.process([inp], [out])
    assert "AIC_mAP" not in ev.evaluate()["keypoints"]
    assert "not in AI Challenger's 14-keypoint layout" in caplog.text
