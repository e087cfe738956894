"""AI Challenger's own keypoint score, by the rules of its 2017 challenge's evaluation script
(github AIChallenger/AI_Challenger_2017 @52014e0, Evaluation/keypoint_eval/keypoint_eval.py),
on COCO-format ground truth in AI Challenger's 14-keypoint layout (``data/converters.py``):

- only visible points are scored: the raw flag 1 (``visible = anno_keypoints[:, 2] == 1``, :117),
  COCO's flag 2 after conversion; occluded (raw 2, COCO 1) and unlabelled points are not;
- OKS = mean over those points of exp(-d^2 / 2 / delta^2 / (scale + 1)) with delta = 2 x the
  layout's sigmas (:50-52, :130) and scale the box area (x2 - x1)(y2 - y1) as float32 (:119);
  a person without visible points has OKS 0 with every prediction (:120-122);
- no one-to-one matching and no scores: each person takes its best OKS over the image's
  predictions (:151), and each image adds max(persons, predictions) to the count (:153); an
  image without predictions adds zeros for its persons (:158-162);
- the score is the mean over the thresholds 0.50, 0.55, ..., 0.95 of #(OKS > threshold) / count
  (:165-168).

COCO's crowd regions (``iscrowd`` 1), which AI Challenger does not have, are left out.
"""

import collections

import numpy as np

__all__ = ["aic_keypoint_score"]

AIC_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # keypoint_eval.py:166


def aic_keypoint_score(gt_dataset, results, sigmas, score_thresh=0.0) -> float:
    """AI Challenger's score (module docstring) in [0, 1]; NaN when there is nothing to count.

    Args:
        gt_dataset: a COCO-format dict ("images", "annotations") in AI Challenger's layout.
        results: COCO keypoint results (``image_id``, ``keypoints``, ``score``), in COCO's pixel
            frame (as ``instances_to_coco_json`` writes them).
        sigmas: the layout's K OKS sigmas (delta = 2 x sigma).
        score_thresh: results scoring below this are not submitted.
    """
    k = len(sigmas)
    var2 = 2.0 * (2.0 * np.asarray(sigmas, np.float64)) ** 2  # 2 delta^2
    persons = collections.defaultdict(list)
    for a in gt_dataset.get("annotations", []):
        if not a.get("iscrowd", 0):
            persons[a["image_id"]].append(a)
    predicted = collections.defaultdict(list)
    for r in results:
        if r["score"] >= score_thresh:
            predicted[r["image_id"]].append(np.asarray(r["keypoints"], np.float64).reshape(k, 3))
    best, count = [], 0
    for image in gt_dataset.get("images", []):
        gts, preds = persons.get(image["id"], []), predicted.get(image["id"], [])
        if not preds:
            best.append(np.zeros(len(gts)))
            count += len(gts)
            continue
        count += max(len(gts), len(preds))
        if not gts:
            continue
        g = np.array([a["keypoints"] for a in gts], np.float64).reshape(len(gts), k, 3)
        visible = g[:, :, 2] == 2  # COCO's "visible": AI Challenger's flag 1
        scale = np.array([np.float32(a["bbox"][2] * a["bbox"][3]) for a in gts], np.float64)
        p = np.stack(preds)[:, :, :2]
        d2 = ((g[:, None, :, :2] - p[None]) ** 2).sum(-1)  # (G, P, K)
        e = np.exp(-d2 / var2 / (scale[:, None, None] + 1))
        # the mean over visible points; 0 for a person without any (sum 0 over at least 1)
        oks = (e * visible[:, None, :]).sum(-1) / np.maximum(visible.sum(1), 1)[:, None]
        best.append(oks.max(1))
    if count == 0:
        return float("nan")
    best = np.concatenate(best) if best else np.zeros(0)
    return float(np.mean([(best > t).sum() / count for t in AIC_THRESHOLDS]))
