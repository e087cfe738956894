"""The analysis: pycocotools COCOeval on the detections as given and with each error type
corrected, one at a time and cumulatively; the background false positives and negatives."""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tqdm
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ...data.keypoints import KeypointSpec
from ...shared.oks import coco_oks, keypoint_oks
from .loading import _quiet, load_ground_truth, load_results
from .taxonomy import (
    ERROR_TYPES,
    INVERSION,
    JITTER,
    LOCALIZATION_OKS,
    MISS,
    OKS_THRESHOLDS,
    SWAP,
    UNLABELLED,
    classify_keypoints,
)

# Evaluations run at OKS 0.1 (the localisation matching) and at COCO's ten thresholds.
_EVAL_THRESHOLDS = np.concatenate([[LOCALIZATION_OKS], OKS_THRESHOLDS])
# coco-analyze's size bins for background errors (backgroundFalsePosErrors.py l.94).
SIZE_BINS = ((0, 32**2), (32**2, 64**2), (64**2, 96**2), (96**2, 128**2), (128**2, math.inf))
KEYPOINT_ERRORS = ("miss", "swap", "inversion", "jitter")  # coco-analyze's correction order
_FIX = {"miss": MISS, "swap": SWAP, "inversion": INVERSION, "jitter": JITTER}


@dataclass
class StageResult:
    """AP of one version of the detections (as given, or with some errors corrected)."""

    name: str
    label: str
    metrics: Dict[str, float]  # AP, AP50, AP75, APm, APl in [0, 1]; NaN where undefined
    ap_per_oks: np.ndarray  # (10,) AP at OKS 0.5 ... 0.95 (all sizes)
    precision: np.ndarray  # (10, 101) precision at COCO's recall points (all sizes), -1 undefined


@dataclass
class ErrorAnalysis:
    """Everything :func:`write_report` draws and :func:`error_summary` prints."""

    dataset: str
    gt_source: str
    results_file: str
    keypoint_names: Tuple[str, ...]
    sigmas: np.ndarray
    num_images: int
    num_persons: int  # persons that count for AP: not crowd, with labelled keypoints
    num_detections: int
    num_evaluated: int  # detections within COCO's maxDets per image
    max_dets: int
    matched_gt: np.ndarray  # (N,) ground-truth id each detection localises at OKS 0.1, 0 if none
    labels: np.ndarray  # (N, K) ERROR_TYPES index, UNLABELLED for unmatched or unlabelled
    normalised_error: np.ndarray  # (N, K) distance to the own joint / sqrt(area), NaN elsewhere
    baseline: StageResult
    one_fixed: Dict[str, StageResult]  # each error type corrected alone
    cumulative: List[StageResult]  # corrections added in coco-analyze's order
    background: Dict = field(default_factory=dict)

    @property
    def counts(self) -> np.ndarray:
        """(5, K) number of keypoints of each error type (rows in ERROR_TYPES order) per joint."""
        return np.stack([(self.labels == i).sum(0) for i in range(len(ERROR_TYPES))])

    @property
    def fractions(self) -> Dict[str, float]:
        total = self.counts.sum()
        return {
            t: float(c) / total if total else math.nan
            for t, c in zip(ERROR_TYPES, self.counts.sum(1))
        }


class _Evaluator:
    """pycocotools COCOeval runs on versions of one set of detections (same order, so detection
    ``i`` has id ``i + 1`` in every run).

    When every detection has a box, it goes with them: pycocotools then takes a detection's area
    from its box, as in detectron2's COCOEvaluator, rather than from its keypoints' extent, and
    APm / APl match the evaluator's.
    """

    def __init__(self, coco_gt: COCO, results: Sequence[Dict], sigmas):
        self.coco_gt = coco_gt
        keep = (
            ("image_id", "category_id", "bbox")
            if all("bbox" in r for r in results)
            else ("image_id", "category_id")
        )
        self.fixed = [{key: r[key] for key in keep} for r in results]
        self.sigmas = np.asarray(sigmas, dtype=np.float64)

    def evaluate(self, keypoints, scores) -> COCOeval:
        dets = [
            dict(f, keypoints=kp.ravel().tolist(), score=float(s))
            for f, kp, s in zip(self.fixed, keypoints, scores)
        ]
        with _quiet():
            dt = self.coco_gt.loadRes(dets)
            ev = COCOeval(self.coco_gt, dt, iouType="keypoints")
            ev.params.kpt_oks_sigmas = self.sigmas
            ev.params.iouThrs = _EVAL_THRESHOLDS.copy()
            ev.evaluate()
        return ev

    @staticmethod
    def precision(ev: COCOeval, drop_fp=False, drop_fn=False) -> np.ndarray:
        """Accumulated precision (T, R, K, A, M); optionally ignoring, at each OKS threshold, the
        detections matched to nobody (background false positives) and/or the persons matched by
        nobody (false negatives)."""
        original = ev.evalImgs

        def patched(t_fn):
            out = []
            for e in original:
                if e is not None:
                    e = dict(e)
                    if drop_fp:
                        e["dtIgnore"] = np.logical_or(e["dtIgnore"], e["dtMatches"] == 0)
                    if t_fn is not None:
                        e["gtIgnore"] = np.logical_or(
                            e["gtIgnore"], e["gtMatches"][t_fn] == 0
                        ).astype(int)
                out.append(e)
            return out

        try:
            with _quiet():
                if not drop_fn:
                    ev.evalImgs = patched(None)
                    ev.accumulate()
                    return ev.eval["precision"].copy()
                # gtIgnore has no threshold axis: accumulate once per threshold.
                precision = None
                for t in range(len(ev.params.iouThrs)):
                    ev.evalImgs = patched(t)
                    ev.accumulate()
                    if precision is None:
                        precision = ev.eval["precision"].copy()
                    precision[t] = ev.eval["precision"][t]
                return precision
        finally:
            ev.evalImgs = original


def _mean_defined(x) -> float:
    x = np.asarray(x)
    x = x[x > -1]
    return float(x.mean()) if x.size else math.nan


def _stage(name: str, label: str, precision: np.ndarray) -> StageResult:
    p = precision[1:, :, 0, :, -1]  # drop OKS 0.1; one category; last maxDets -> (T, R, A)
    metrics = {
        "AP": _mean_defined(p[:, :, 0]),
        "AP50": _mean_defined(p[0, :, 0]),
        "AP75": _mean_defined(p[5, :, 0]),
        "APm": _mean_defined(p[:, :, 1]),
        "APl": _mean_defined(p[:, :, 2]),
    }
    return StageResult(
        name,
        label,
        metrics,
        np.array([_mean_defined(p[t, :, 0]) for t in range(len(p))]),
        p[:, :, 0].copy(),
    )


def _area_all_entries(ev: COCOeval) -> List[Dict]:
    """evalImgs of the one category at area range 'all' (COCOeval orders them by category, area
    range, image)."""
    return [e for e in ev.evalImgs[: len(ev.params.imgIds)] if e is not None]


def _group(values) -> Dict:
    groups: Dict = {}
    for i, v in enumerate(values):
        groups.setdefault(v, []).append(i)
    return {k: np.asarray(v) for k, v in groups.items()}


def _optimal_scores(keypoints, image_ids, persons, sigmas, progress=False) -> np.ndarray:
    """coco-analyze's optimal rescoring (cocoanalyze.py l.420-510): a detection's score becomes its
    best OKS with a person that counts for AP, then OKS soft-NMS among the image's detections."""
    scores = np.zeros(len(keypoints))
    for img, idx in tqdm.tqdm(
        _group(image_ids).items(), desc="optimal scores", disable=not progress, leave=False
    ):
        kp = keypoints[idx]
        gt_kp, gt_area, counts = persons[img]
        if counts.any():
            s = coco_oks(kp, gt_kp[counts], gt_area[counts], sigmas).max(1)
        else:
            s = np.zeros(len(idx))
        box = kp[..., :2].max(1) - kp[..., :2].min(1)
        area = box[:, 0] * box[:, 1]
        pair = keypoint_oks(kp, kp, area, area, sigmas).numpy()
        left = np.ones(len(idx), dtype=bool)
        for _ in range(len(idx)):
            best = int(np.argmax(np.where(left, s, -np.inf)))
            left[best] = False
            s[left] *= np.exp(-(pair[best, left] ** 2) / 0.5)
        scores[idx] = s
    return scores


def _bin_counts(values, edges) -> List[int]:
    return [int(((values >= lo) & (values < hi)).sum()) for lo, hi in edges]


def analyze_keypoint_errors(
    dataset_name: str,
    results_file,
    progress: bool = False,
    missing_area_factor: Optional[float] = None,
) -> ErrorAnalysis:
    """Run the whole analysis of ``results_file`` against the registered ``dataset_name``
    (``missing_area_factor``: see :func:`load_ground_truth`)."""
    coco_gt, spec, source = load_ground_truth(dataset_name, missing_area_factor)
    results = load_results(results_file, coco_gt, spec, dataset_name)
    return analyze(
        coco_gt,
        spec,
        results,
        dataset_name=dataset_name,
        gt_source=source,
        results_file=str(results_file),
        progress=progress,
    )


def analyze(
    coco_gt: COCO,
    spec: KeypointSpec,
    results: Sequence[Dict],
    dataset_name: str = "",
    gt_source: str = "",
    results_file: str = "",
    progress: bool = False,
) -> ErrorAnalysis:
    """The analysis on a loaded ground truth and results list (see :func:`load_results`)."""
    sigmas = np.asarray(spec.oks_sigmas, dtype=np.float64)
    k = spec.num_keypoints
    image_ids = [r["image_id"] for r in results]
    kp = np.stack([np.asarray(r["keypoints"], dtype=np.float64).reshape(k, 3) for r in results])
    scores = np.array([r["score"] for r in results], dtype=np.float64)
    ev = _Evaluator(coco_gt, results, sigmas)
    n = len(results)
    stages = tqdm.tqdm(total=10, desc="COCOeval runs", disable=not progress)

    # Every annotated person per image: keypoints, areas, ids, and whether it counts for AP
    # (pycocotools ignores crowds and persons without labelled keypoints).
    persons, person_ids = {}, {}
    for img in coco_gt.getImgIds():
        anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img))
        gk = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), k, 3)
        counts = np.array([not a["iscrowd"] and a["num_keypoints"] > 0 for a in anns], dtype=bool)
        persons[img] = (gk, np.array([a["area"] for a in anns], dtype=np.float64), counts)
        person_ids[img] = {a["id"]: j for j, a in enumerate(anns)}

    base_eval = ev.evaluate(kp, scores)
    baseline = _stage("baseline", "as given", ev.precision(base_eval))
    stages.update()

    # Localisation matches at OKS 0.1 to persons that count (not ignored).
    matched_gt = np.zeros(n, dtype=np.int64)
    evaluated = np.zeros(n, dtype=bool)
    for e in _area_all_entries(base_eval):
        ids = np.asarray(e["dtIds"], dtype=np.int64) - 1
        evaluated[ids] = True
        ok = (e["dtMatches"][0] > 0) & ~e["dtIgnore"][0]
        matched_gt[ids[ok]] = e["dtMatches"][0][ok].astype(np.int64)

    labels = np.full((n, k), UNLABELLED, dtype=np.int8)
    corrected = kp[..., :2].copy()
    norm_error = np.full((n, k), np.nan)
    for img, idx in tqdm.tqdm(
        _group(image_ids).items(), desc="keypoint errors", disable=not progress, leave=False
    ):
        idx = idx[matched_gt[idx] > 0]
        if not len(idx):
            continue
        gk, ga, _ = persons[img]
        match = np.array([person_ids[img][g] for g in matched_gt[idx]])
        found = classify_keypoints(kp[idx], gk, ga, match, sigmas, spec.flip_indices)
        labels[idx] = found.labels
        corrected[idx] = found.corrected_xy
        norm_error[idx] = found.normalised_error

    def fixed(error_types):
        out = kp.copy()
        mask = np.isin(labels, [_FIX[t] for t in error_types])
        out[..., :2][mask] = corrected[mask]
        return out

    one_fixed = {}
    for t in KEYPOINT_ERRORS:
        one_fixed[t] = _stage(t, f"{t} fixed", ev.precision(ev.evaluate(fixed([t]), scores)))
        stages.update()
    one_fixed["score"] = _stage(
        "score",
        "scores optimal",
        ev.precision(ev.evaluate(kp, _optimal_scores(kp, image_ids, persons, sigmas, progress))),
    )
    stages.update()
    one_fixed["background_fp"] = _stage(
        "background_fp", "background FP removed", ev.precision(base_eval, drop_fp=True)
    )
    one_fixed["false_negatives"] = _stage(
        "false_negatives", "FN removed", ev.precision(base_eval, drop_fn=True)
    )

    cumulative = [baseline, one_fixed["miss"]]
    for i, t in enumerate(KEYPOINT_ERRORS[1:], start=2):
        cumulative.append(
            _stage(
                f"+{t}",
                f"+ {t} fixed",
                ev.precision(ev.evaluate(fixed(KEYPOINT_ERRORS[:i]), scores)),
            )
        )
        stages.update()
    all_fixed = fixed(KEYPOINT_ERRORS)
    final_eval = ev.evaluate(
        all_fixed, _optimal_scores(all_fixed, image_ids, persons, sigmas, progress)
    )
    stages.update()
    cumulative.append(_stage("+score", "+ scores optimal", ev.precision(final_eval)))
    cumulative.append(
        _stage("+background_fp", "+ background FP removed", ev.precision(final_eval, drop_fp=True))
    )
    cumulative.append(
        _stage(
            "+false_negatives", "+ FN removed", ev.precision(final_eval, drop_fp=True, drop_fn=True)
        )
    )
    stages.close()

    det_area = np.array([base_eval.cocoDt.anns[i + 1]["area"] for i in range(n)], dtype=np.float64)
    background = _background_errors(base_eval, coco_gt, k, scores, det_area, evaluated)
    return ErrorAnalysis(
        dataset=dataset_name,
        gt_source=gt_source,
        results_file=results_file,
        keypoint_names=tuple(spec.keypoint_names),
        sigmas=sigmas,
        num_images=len(coco_gt.getImgIds()),
        num_persons=int(sum(p[2].sum() for p in persons.values())),
        num_detections=n,
        num_evaluated=int(evaluated.sum()),
        max_dets=int(base_eval.params.maxDets[-1]),
        matched_gt=matched_gt,
        labels=labels,
        normalised_error=norm_error,
        baseline=baseline,
        one_fixed=one_fixed,
        cumulative=cumulative,
        background=background,
    )


def _background_errors(ev: COCOeval, coco_gt: COCO, k: int, scores, det_area, evaluated) -> Dict:
    """Background false positives and false negatives of the detections as given (coco-analyze's
    backgroundFalsePosErrors.py / backgroundFalseNegErrors.py): per OKS threshold, and those
    unmatched at every threshold, by size, score and number of labelled keypoints."""
    entries = _area_all_entries(ev)
    t_std = slice(1, None)
    fp_every = np.zeros(len(scores), dtype=bool)
    matched_per_t = np.zeros(len(OKS_THRESHOLDS), dtype=np.int64)
    fp_per_t = np.zeros(len(OKS_THRESHOLDS), dtype=np.int64)
    fn_per_t = np.zeros(len(OKS_THRESHOLDS), dtype=np.int64)
    fn_ids = []
    for e in entries:
        ids = np.asarray(e["dtIds"], dtype=np.int64) - 1
        dm, di = e["dtMatches"][t_std], e["dtIgnore"][t_std]
        unmatched = (dm == 0) & ~di
        matched_per_t += ((dm > 0) & ~di).sum(1)
        fp_per_t += unmatched.sum(1)
        fp_every[ids[unmatched.all(0)]] = True
        gm, gi = e["gtMatches"][t_std], np.asarray(e["gtIgnore"], dtype=bool)
        missed = (gm == 0) & ~gi[None]
        fn_per_t += missed.sum(1)
        fn_ids += [g for g, m in zip(e["gtIds"], missed.all(0)) if m]
    fp_area = det_area[fp_every]
    fp_score = scores[fp_every]
    all_scores = scores[evaluated]
    quantiles = np.quantile(all_scores, [0.2, 0.4, 0.6, 0.8]) if all_scores.size else np.zeros(4)
    score_edges = list(
        zip(np.concatenate([[-np.inf], quantiles]), np.concatenate([quantiles, [np.inf]]))
    )
    fn_anns = coco_gt.loadAnns(fn_ids)
    fn_area = np.array([a["area"] for a in fn_anns], dtype=np.float64)
    fn_kps = np.array([a["num_keypoints"] for a in fn_anns], dtype=np.int64)
    kp_edges = np.unique(np.ceil(np.linspace(0, k, 5)).astype(int))
    kp_bins = [(lo + 1, hi + 1) for lo, hi in zip(kp_edges[:-1], kp_edges[1:])]
    return {
        "matched_per_oks": matched_per_t,
        "fp_per_oks": fp_per_t,
        "fn_per_oks": fn_per_t,
        "fp_count": int(fp_every.sum()),
        "fn_count": len(fn_ids),
        "fp_ids": np.flatnonzero(fp_every),
        "fn_ids": fn_ids,
        "fp_by_size": _bin_counts(fp_area, SIZE_BINS),
        "fp_by_score": _bin_counts(fp_score, score_edges),
        "score_quantiles": quantiles,
        "fn_by_size": _bin_counts(fn_area, SIZE_BINS),
        "fn_keypoint_bins": kp_bins,
        "fn_by_keypoints": _bin_counts(fn_kps, kp_bins),
        "fn_num_keypoints": fn_kps,
    }
