"""Keypoint error analysis after Ronchi & Perona, "Benchmarking and Error Diagnosis in
Multi-Instance Pose Estimation" (ICCV 2017) and their ``coco-analyze`` code.

Given a registered keypoint dataset and a COCO-format keypoint results file, the analysis

1. matches detections to ground-truth persons with COCO's own greedy matching at OKS 0.1 (the
   loosest OKS at which coco-analyze still calls a detection a localisation of a person);
2. labels every keypoint of a matched detection whose ground-truth keypoint is labelled, from its
   keypoint similarity ``ks = exp(-d^2 / (2 * area * (2 sigma)^2))`` (the per-keypoint term of
   OKS) to every candidate location in the image: the matched person's keypoints, the same
   person's mirrored keypoints (left and right exchanged through ``keypoint_flip_map``) and every
   other person's keypoints, plain and mirrored. With ``best`` the highest ks and ties going to,
   in order, the matched person, other persons, the mirrored matched person, mirrored others
   (coco-analyze ``cocoanalyze.py`` l.255-346):

   ========== =======================================================================
   good       best >= 0.85 and on the matched person's own keypoint
   jitter     0.5 <= best < 0.85, on the matched person's own keypoint
   inversion  best >= 0.5, on the matched person's mirror keypoint (left for right)
   swap       best >= 0.5, on a keypoint (plain or mirrored) of another person
   miss       best < 0.5: near no labelled keypoint of anyone
   ========== =======================================================================

3. measures COCO keypoint AP (pycocotools ``COCOeval``, the dataset's OKS sigmas) on the
   detections as given and after correcting errors, one type at a time and cumulatively in
   coco-analyze's order (miss, swap, inversion, jitter, then optimal scores, background false
   positives, false negatives; ``cocoanalyze.py`` l.576-805, ``errorsAPImpact.py`` for one type
   at a time). A corrected keypoint is moved to the ks its error type stops at (l.348-371):
   a jitter to ks 0.85 (just good), a miss to ks 0.5 (just jitter), both along their error
   direction from the ground truth; an inversion or swap keeps the displacement it had from the
   wrong joint, carried over to its own joint (so it keeps its ks, now with the right joint).
   Optimal scores: each detection scored by its best OKS with any ground-truth person, then
   OKS soft-NMS (Gaussian, ``exp(-oks^2 / 0.5)``) among the detections of an image. Removing
   background false positives ignores, at each OKS threshold, every detection matched to no
   person at that threshold; removing false negatives ignores every person no detection matches.
   With both removed nothing unmatched is left, so AP is 1 at every threshold at which anyone
   is matched: the last stage of the cumulative chain is 1.0 by construction and the gaps
   between stages are what each error type costs.
4. breaks down the background errors of the detections as given: false positives (detections
   matched at no OKS threshold 0.5:0.95) by size and score, false negatives (persons matched at no
   threshold) by size and number of labelled keypoints; and collects, per joint, the localisation
   error of matched detections divided by the person's scale ``sqrt(area)``.

Coordinates: both sides are compared in COCO's pixel convention. The ground truth is the
dataset's ``json_file`` as written (what detectron2's ``COCOEvaluator`` scores against), or, for a
dataset registered without one, detectron2's ``convert_to_coco_dict`` of its dataset dicts, which
subtracts again the 0.5 that ``load_coco_json`` adds to keypoint x, y. Results files written by
``COCOEvaluator`` (``coco_instances_results.json``) and ``tools/demo.py`` already subtract it
(``instances_to_coco_json``), so results are compared exactly as written.

Where this differs from coco-analyze (``pycocotools/cocoanalyze.py``), on purpose:

- Correction distances use pycocotools' OKS variance ``(2 sigma)^2``; coco-analyze's
  ``dist_to_oks_*`` use ``sigma^2`` (its l.350-357), which lands corrected keypoints at
  ``ks^(1/4)`` (0.96 for jitter, 0.84 for miss) rather than at the thresholds its comments name.
- A keypoint at exactly ks 0.85 on its own joint is good (coco-analyze: neither good nor jitter).
- Area ranges are COCOeval's keypoint defaults (all = any size), so the baseline AP equals the
  evaluator's; coco-analyze analyses persons from 32^2 pixels up only.
- Each error type fixed alone is AP with only that correction; false negatives alone means the
  unmatched persons ignored (coco-analyze reports them after removing false positives).
- False negatives are removed per OKS threshold exactly; coco-analyze (l.789-801) carries those
  of lower thresholds over to higher ones.
"""

import contextlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tqdm
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.keypoints import KeypointSpec, keypoint_spec_of
from ..shared.atomic_io import save_figure_atomic, write_text_atomic
from ..shared.oks import keypoint_oks
from .ground_truth import complete_ground_truth, is_crowdpose_layout
from .results_record import (
    ResultsDatasetError,
    check_boxes_in_images,
    check_record_dataset,
    read_results_record,
)

__all__ = [
    "ERROR_TYPES",
    "GOOD_KS",
    "NEAR_KS",
    "LOCALIZATION_OKS",
    "AnalysisInputError",
    "ErrorAnalysis",
    "StageResult",
    "keypoint_similarity",
    "classify_keypoints",
    "load_ground_truth",
    "load_results",
    "analyze_keypoint_errors",
    "summary_line",
    "write_report",
]

ERROR_TYPES = ("good", "jitter", "inversion", "swap", "miss")
GOOD, JITTER, INVERSION, SWAP, MISS = range(len(ERROR_TYPES))
UNLABELLED = -1
# coco-analyze's Params.jitterKsThrs (cocoanalyze.py l.945) and oksLocThrs (l.943).
GOOD_KS = 0.85
NEAR_KS = 0.5
LOCALIZATION_OKS = 0.1
OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
# Evaluations run at OKS 0.1 (the localisation matching) and at COCO's ten thresholds.
_EVAL_THRESHOLDS = np.concatenate([[LOCALIZATION_OKS], OKS_THRESHOLDS])
# Corrected keypoints sit this fraction inside their target ks, so rounding cannot push them out.
_INSIDE = 1e-6
# coco-analyze's size bins for background errors (backgroundFalsePosErrors.py l.94).
SIZE_BINS = ((0, 32**2), (32**2, 64**2), (64**2, 96**2), (96**2, 128**2), (128**2, math.inf))
KEYPOINT_ERRORS = ("miss", "swap", "inversion", "jitter")  # coco-analyze's correction order
_FIX = {"miss": MISS, "swap": SWAP, "inversion": INVERSION, "jitter": JITTER}
_COLORS = {
    "good": "#1ED88B",
    "jitter": "#8C4646",
    "inversion": "#D96459",
    "swap": "#F2AE72",
    "miss": "#F2E394",
    "score": "#4F82BD",
    "background FP": "#8063A3",
    "FN": "#2E8B57",
}


class AnalysisInputError(ValueError):
    """A dataset or results file the analysis cannot use; the message names it and the mismatch."""


# ---------------------------------------------------------------------------------------------
# Keypoint similarity and the error taxonomy


def keypoint_similarity(pred_xy, gt_keypoints, gt_areas, sigmas) -> np.ndarray:
    """Per-keypoint OKS terms of every prediction against every candidate person.

    Args:
        pred_xy: (D, K, 2) predicted keypoints.
        gt_keypoints: (C, K, 3) candidate keypoints (x, y, visibility).
        gt_areas: (C,) candidate areas (COCO ``area``), the scale ``s^2`` of OKS.
        sigmas: (K,) OKS sigmas.

    Returns:
        (D, C, K) ``exp(-d^2 / (2 * area * (2 sigma)^2))`` as pycocotools' ``computeOks``, and -1
        where the candidate's keypoint is not labelled (visibility 0).
    """
    pred_xy = np.asarray(pred_xy, dtype=np.float64)[..., :2]
    gt = np.asarray(gt_keypoints, dtype=np.float64)
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((pred_xy[:, None] - gt[None, :, :, :2]) ** 2).sum(-1)
    area = np.asarray(gt_areas, dtype=np.float64)[None, :, None] + np.spacing(1)
    ks = np.exp(-d2 / var / area / 2)
    return np.where(gt[None, :, :, 2] > 0, ks, -1.0)


def coco_oks(pred_xy, gt_keypoints, gt_areas, sigmas) -> np.ndarray:
    """(D, G) OKS as pycocotools computes it for persons with labelled keypoints (mean ks over the
    ground truth's labelled keypoints, its own area); 0 for a person without labelled keypoints."""
    ks = keypoint_similarity(pred_xy, gt_keypoints, gt_areas, sigmas)
    labelled = np.asarray(gt_keypoints)[None, :, :, 2] > 0
    n = labelled.sum(-1)
    return np.where(n > 0, (ks * labelled).sum(-1) / np.maximum(n, 1), 0.0)


@dataclass
class KeypointErrors:
    """What :func:`classify_keypoints` finds for D matched detections with K keypoints."""

    labels: np.ndarray  # (D, K) ERROR_TYPES index; UNLABELLED where the person's keypoint is not
    best_ks: np.ndarray  # (D, K) the highest ks over all candidates
    corrected_xy: np.ndarray  # (D, K, 2) where each keypoint goes when its error is corrected
    normalised_error: np.ndarray  # (D, K) distance to the own joint / sqrt(area); NaN if unlabelled


def classify_keypoints(
    pred_xy, gt_keypoints, gt_areas, matched, sigmas, flip_indices
) -> KeypointErrors:
    """Label each keypoint of detections matched to persons of one image (see the module doc).

    Args:
        pred_xy: (D, K, 2+) keypoints of the matched detections.
        gt_keypoints: (G, K, 3) every annotated person of the image.
        gt_areas: (G,) their areas.
        matched: (D,) index into the G persons of each detection's match.
        sigmas: (K,) OKS sigmas; flip_indices: (K,) the mirror keypoint of each keypoint.
    """
    pred_xy = np.asarray(pred_xy, dtype=np.float64)[..., :2]
    gt = np.asarray(gt_keypoints, dtype=np.float64)
    areas = np.asarray(gt_areas, dtype=np.float64)
    matched = np.asarray(matched, dtype=np.int64)
    flip = np.asarray(flip_indices, dtype=np.int64)
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    g = len(gt)
    # Candidates 0..G-1: each person as annotated; G..2G-1: mirrored, so that column k of a
    # mirrored person holds the location of its joint flip[k] (the right wrist for the left one).
    candidates = np.concatenate([gt, gt[:, flip]])
    cand_areas = np.concatenate([areas, areas])
    ks = keypoint_similarity(pred_xy, candidates, cand_areas, sigmas)  # (D, 2G, K)

    # coco-analyze's row order decides ties (np.argmax keeps the first maximum): own person,
    # other persons, own mirrored, other persons mirrored (cocoanalyze.py l.255-304).
    c = np.arange(2 * g)[None, :]
    own, mirror = matched[:, None], matched[:, None] + g
    rank = np.where(c == own, 0, np.where(c < g, 1, np.where(c == mirror, 2, 3)))
    order = np.argsort(rank, axis=1, kind="stable")  # (D, 2G)
    ks_in_order = np.take_along_axis(ks, order[:, :, None], axis=1)
    pos = ks_in_order.argmax(axis=1)  # (D, K)
    best = np.take_along_axis(ks_in_order, pos[:, None, :], axis=1)[:, 0]
    best_cand = np.take_along_axis(order, pos, axis=1)  # (D, K) candidate index

    labelled = gt[matched, :, 2] > 0
    on_own = best_cand == own
    on_mirror = best_cand == mirror
    labels = np.select(
        [~labelled, best < NEAR_KS, on_own & (best >= GOOD_KS), on_own, on_mirror],
        [UNLABELLED, MISS, GOOD, JITTER, INVERSION],
        default=SWAP,
    ).astype(np.int8)

    own_xy = gt[matched, :, :2]  # (D, K, 2)
    own_area = areas[matched][:, None]  # (D, 1)
    error = pred_xy - own_xy
    dist = np.linalg.norm(error, axis=-1)
    direction = np.where(
        dist[..., None] > 0, error / np.maximum(dist, 1e-12)[..., None], [1.0, 0.0]
    )

    def at_ks(t):  # the distance from the own joint at which ks equals t
        return np.sqrt(-2.0 * math.log(t) * var[None] * own_area) * (1 - _INSIDE)

    # Inversions and swaps keep their offset from the wrong joint, rescaled to the own person.
    wrong_xy = candidates[best_cand, np.arange(pred_xy.shape[1])[None, :], :2]  # (D, K, 2)
    scale = np.sqrt(own_area / np.maximum(cand_areas[best_cand], 1e-12)) * (1 - _INSIDE)
    carried = own_xy + (pred_xy - wrong_xy) * scale[..., None]
    corrected = pred_xy.copy()
    for label, target in (
        (JITTER, own_xy + direction * at_ks(GOOD_KS)[..., None]),
        (MISS, own_xy + direction * at_ks(NEAR_KS)[..., None]),
        (INVERSION, carried),
        (SWAP, carried),
    ):
        corrected = np.where((labels == label)[..., None], target, corrected)

    norm_error = np.where(labelled, dist / np.sqrt(np.maximum(own_area, 1e-12)), np.nan)
    return KeypointErrors(labels, best, corrected, norm_error)


# ---------------------------------------------------------------------------------------------
# Inputs


def load_ground_truth(
    dataset_name: str, missing_area_factor: Optional[float] = None
) -> Tuple[COCO, KeypointSpec, str]:
    """The dataset's ground truth as a pycocotools ``COCO`` (COCO pixel convention, see the module
    doc), its :class:`KeypointSpec` and a description of where it came from.

    Keeps the one category that has keypoints; completes what COCOeval needs as the evaluator
    does (``ground_truth.complete_ground_truth``: ``area`` from the box x
    ``missing_area_factor``, or CrowdPose's rule for its layout; ids 0 or repeated renumbered,
    ``num_keypoints``, ``iscrowd``).
    """
    if dataset_name not in DatasetCatalog.list():
        raise AnalysisInputError(
            f"dataset {dataset_name!r} is not registered with detectron2's DatasetCatalog "
            "(`import multitask_pose` registers the built-in ones)"
        )
    meta = MetadataCatalog.get(dataset_name)
    json_file = meta.get("json_file", None)
    try:
        spec = keypoint_spec_of(dataset_name)
    except KeyError as e:
        raise AnalysisInputError(
            f"dataset {dataset_name!r}{f' ({json_file})' if json_file else ''} has no keypoints: "
            f"{e.args[0]}"
        ) from None
    if json_file:
        if not os.path.isfile(json_file):
            DatasetCatalog.get(dataset_name)  # generated datasets write their json on first load
        if not os.path.isfile(json_file):
            raise AnalysisInputError(
                f"dataset {dataset_name!r}: annotation file not found: {json_file}"
            )
        source = str(json_file)
        with open(json_file) as f:
            dataset = json.load(f)
    else:
        from detectron2.data.datasets.coco import convert_to_coco_dict

        source = f"dataset {dataset_name!r} (DatasetCatalog, converted to COCO format)"
        dataset = convert_to_coco_dict(dataset_name)

    k = spec.num_keypoints
    with_kp = [a for a in dataset.get("annotations", []) if a.get("keypoints")]
    if not with_kp:
        raise AnalysisInputError(f"{source}: dataset {dataset_name!r} has no keypoint annotations")
    cats = sorted({a["category_id"] for a in with_kp})
    if len(cats) != 1:
        raise AnalysisInputError(
            f"{source}: keypoints in categories {cats}; the analysis takes one category"
        )
    dataset = {
        "images": dataset["images"],
        "categories": [c for c in dataset["categories"] if c["id"] == cats[0]],
        "annotations": [a for a in dataset["annotations"] if a.get("category_id") == cats[0]],
    }
    try:
        dataset = complete_ground_truth(
            dataset, source=source, num_keypoints=k, area_factor=missing_area_factor,
            crowdpose=is_crowdpose_layout(spec.keypoint_names),
        )  # fmt: skip
    except ValueError as e:
        raise AnalysisInputError(f"{e} (dataset {dataset_name!r})") from None
    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco, spec, source


def load_results(
    results_file, coco_gt: COCO, spec: KeypointSpec, dataset_name: str = ""
) -> List[Dict]:
    """Read and check a COCO keypoint results file against the ground truth.

    Returns a list of ``{"image_id", "category_id", "keypoints", "score"}``. Raises
    :class:`AnalysisInputError`, naming the file, when it is not a non-empty COCO results list,
    has no keypoints, has a keypoint count other than the dataset's, or names images or
    categories the dataset does not have, or when its record names another dataset or its boxes
    reach beyond the dataset's images (results for another dataset; ``results_record.py``).
    """
    path = str(results_file)
    ds = f"dataset {dataset_name!r}" if dataset_name else "the dataset"
    if not os.path.isfile(path):
        raise AnalysisInputError(f"results file not found: {path}")
    try:
        record = read_results_record(path)  # what made it; a warning when unknown
        if dataset_name:
            check_record_dataset(record, dataset_name, path)
    except ValueError as e:  # a damaged record, or results on another dataset
        raise AnalysisInputError(str(e)) from None
    try:
        with open(path) as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        raise AnalysisInputError(f"{path}: not a readable JSON file ({e})") from None
    if isinstance(entries, dict):
        hint = " (this looks like an annotation file)" if "annotations" in entries else ""
        raise AnalysisInputError(
            f"{path}: expected a COCO results list of detections, got an object{hint}"
        )
    if not isinstance(entries, list) or not entries:
        raise AnalysisInputError(f"{path}: the results file is empty: no detections to analyse")
    missing = [i for i, e in enumerate(entries) if not isinstance(e, dict) or "keypoints" not in e]
    if len(missing) == len(entries):
        raise AnalysisInputError(
            f"{path}: no detection has 'keypoints' (a box or mask results file?)"
        )
    if missing:
        raise AnalysisInputError(
            f"{path}: {len(missing)} of {len(entries)} detections have no 'keypoints' "
            f"(first: entry {missing[0]})"
        )
    k3 = 3 * spec.num_keypoints
    wrong = [(i, len(e["keypoints"])) for i, e in enumerate(entries) if len(e["keypoints"]) != k3]
    if wrong:
        i, n = wrong[0]
        raise AnalysisInputError(
            f"{path}: {len(wrong)} of {len(entries)} detections have a keypoint count other than "
            f"{ds}'s {spec.num_keypoints} ({k3} values); entry {i} (image "
            f"{entries[i].get('image_id')}) has {n} values = {n // 3} keypoints. Results for "
            "another dataset?"
        )
    for key in ("image_id", "score"):
        lacking = [i for i, e in enumerate(entries) if key not in e]
        if lacking:
            raise AnalysisInputError(
                f"{path}: {len(lacking)} detections have no {key!r} (first: entry {lacking[0]})"
            )
    known = set(coco_gt.getImgIds())
    unknown = sorted({e["image_id"] for e in entries} - known, key=str)
    if unknown:
        raise AnalysisInputError(
            f"{path}: {len(unknown)} image ids are not in {ds} (e.g. {unknown[:5]}); "
            f"it has {len(known)} images. Results for another dataset?"
        )
    sizes = {i: (im["height"], im["width"]) for i, im in coco_gt.imgs.items()
             if "height" in im and "width" in im}  # fmt: skip
    try:
        check_boxes_in_images(entries, sizes, dataset_name or "the dataset", path)
    except ResultsDatasetError as e:
        raise AnalysisInputError(str(e)) from None
    cats = coco_gt.getCatIds()
    out = []
    for e in entries:
        cat = e.get("category_id", cats[0])
        if cat not in cats:
            raise AnalysisInputError(
                f"{path}: category_id {cat} (image {e['image_id']}) is not {ds}'s keypoint "
                f"category {cats}"
            )
        kp = np.asarray(e["keypoints"], dtype=np.float64)
        if not (np.isfinite(kp).all() and np.isfinite(float(e["score"]))):
            raise AnalysisInputError(
                f"{path}: detection in image {e['image_id']} has non-finite values"
            )
        det = {
            "image_id": e["image_id"],
            "category_id": cat,
            "keypoints": kp,
            "score": float(e["score"]),
        }
        if len(e.get("bbox") or ()) == 4:
            det["bbox"] = [float(v) for v in e["bbox"]]
        out.append(det)
    return out


# ---------------------------------------------------------------------------------------------
# The analysis


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
    """Everything :func:`write_report` draws and :func:`summary_line` prints."""

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


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


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


# ---------------------------------------------------------------------------------------------
# Output


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def summary_line(a: ErrorAnalysis) -> str:
    """One line to paste into a note."""
    frac = a.fractions
    kinds = " ".join(
        f"{t} {100 * frac[t]:.1f}%" if np.isfinite(frac[t]) else f"{t} n/a" for t in ERROR_TYPES
    )
    fixed = ", ".join(f"{s.label} {_f(s.metrics['AP'])}" for s in a.one_fixed.values())
    chain = {s.name: s for s in a.cumulative}
    return (
        f"analyze_keypoints: AP {_f(a.baseline.metrics['AP'])}; {kinds}; AP with {fixed}; "
        f"all keypoint errors fixed {_f(chain['+jitter'].metrics['AP'])}, "
        f"+ scores optimal {_f(chain['+score'].metrics['AP'])}, "
        f"+ background FP removed {_f(chain['+background_fp'].metrics['AP'])}"
    )


def _size_label(lo, hi) -> str:
    def side(v):
        return f"{int(round(math.sqrt(v)))}²"

    if lo == 0:
        return f"< {side(hi)}"
    return f">= {side(lo)}" if not np.isfinite(hi) else f"{side(lo)}-{side(hi)}"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(a: ErrorAnalysis, output_dir) -> Path:
    """Write ``report.md`` and its PNG plots into ``output_dir``; returns the report's path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {
        "keypoint_errors.png": _plot_keypoint_errors,
        "ap_after_corrections.png": _plot_ap_impact,
        "pr_curves.png": _plot_pr_curves,
        "background_errors.png": _plot_background,
        "joint_error_histograms.png": _plot_joint_histograms,
    }
    for name, draw in plots.items():
        save_figure_atomic(draw(a), out / name, dpi=100, bbox_inches="tight")

    def percent(c, n):
        return f"{100 * c / n:.1f}" if n else "n/a"

    counts = a.counts
    total = counts.sum(0)
    error_rows = [
        [name, int(total[j])] + [percent(c, total[j]) for c in counts[:, j]]
        for j, name in enumerate(a.keypoint_names)
    ]
    error_rows.append(
        ["**all**", int(counts.sum())] + [percent(c, counts.sum()) for c in counts.sum(1)]
    )

    base_ap = a.baseline.metrics["AP"]
    ap_head = ["detections", "AP", "AP50", "AP75", "APm", "APl", "ΔAP"]

    def stage_rows(stages):
        rows = []
        for s in stages:
            gain = s.metrics["AP"] - base_ap
            rows.append(
                [s.label]
                + [_f(s.metrics[m]) for m in ap_head[1:-1]]
                + [f"{gain:+.3f}" if np.isfinite(gain) else "n/a"]
            )
        return rows

    b = a.background
    per_oks = [
        [f"{t:.2f}", int(m), int(fp), int(fn)]
        for t, m, fp, fn in zip(
            OKS_THRESHOLDS, b["matched_per_oks"], b["fp_per_oks"], b["fn_per_oks"]
        )
    ]
    sizes = [
        [_size_label(lo, hi), fp, fn]
        for (lo, hi), fp, fn in zip(SIZE_BINS, b["fp_by_size"], b["fn_by_size"])
    ]
    q = b["score_quantiles"]
    score_labels = (
        [f"< {q[0]:.3g} (lowest 20%)"]
        + [f"{lo:.3g} to {hi:.3g}" for lo, hi in zip(q[:-1], q[1:])]
        + [f">= {q[-1]:.3g} (top 20%)"]
    )
    by_kps = [
        [f"{lo}-{hi - 1}", c] for (lo, hi), c in zip(b["fn_keypoint_bins"], b["fn_by_keypoints"])
    ]
    joint_rows = []
    for j, name in enumerate(a.keypoint_names):
        e = a.normalised_error[:, j]
        e = e[np.isfinite(e)]
        stats = [_f(np.median(e)), _f(np.quantile(e, 0.9))] if e.size else ["n/a", "n/a"]
        joint_rows.append(
            [name, e.size]
            + stats
            + [f"{_ks_distance(t, a.sigmas[j]):.3f}" for t in (GOOD_KS, NEAR_KS)]
        )
    n_matched = int((a.matched_gt > 0).sum())

    sections = [
        "# Keypoint error analysis",
        f"- dataset: `{a.dataset}` (ground truth: `{a.gt_source}`), {a.num_images} images, "
        f"{a.num_persons} persons that count for AP (not crowd, with labelled keypoints)\n"
        f"- results: `{a.results_file}`: {a.num_detections} detections, {a.num_evaluated} "
        "evaluated "
        f"(COCO keeps the {a.max_dets} best-scored per image), {n_matched} localise a person "
        f"(OKS >= {LOCALIZATION_OKS})",
        f"```\n{summary_line(a)}\n```",
        "Method: Ronchi & Perona, ICCV 2017 (`coco-analyze`); the definitions and where they "
        "differ "
        "from coco-analyze are in the docstring of `multitask_pose/evaluation/error_analysis.py`. "
        "AP is COCO keypoint AP (pycocotools, OKS 0.50:0.95, the dataset's OKS sigmas) in [0, 1].",
        "## Keypoint localisation errors",
        "Every labelled keypoint of a detection that localises a person, by its keypoint "
        f"similarity ks to the candidate locations: **good** ks >= {GOOD_KS} on its own joint; "
        f"**jitter** {NEAR_KS} <= ks < {GOOD_KS} on its own joint; **inversion** ks >= {NEAR_KS} "
        f"on the same person's mirror joint (left for right); **swap** ks >= {NEAR_KS} on a joint "
        f"of another person; **miss** ks < {NEAR_KS} to every labelled joint. Percent per "
        "keypoint:",
        _table(["keypoint", "n"] + [f"{t} %" for t in ERROR_TYPES], error_rows),
        "![keypoint errors](keypoint_errors.png)",
        "## AP after correcting errors",
        f"One error type at a time. Jitter moved to ks {GOOD_KS} and miss to ks {NEAR_KS} of "
        "the own joint; inversion and swap onto the own joint with the ks they had to the wrong "
        "one; optimal scores: best OKS with any person, then OKS soft-NMS; background FP / FN "
        "removed: detections / persons matched by nothing ignored at each OKS threshold.",
        _table(ap_head, stage_rows([a.baseline] + list(a.one_fixed.values()))),
        "Cumulatively, in coco-analyze's order (the last row is 1.0 by construction: nothing "
        "unmatched is left):",
        _table(ap_head, stage_rows(a.cumulative)),
        "![AP after corrections](ap_after_corrections.png)",
        "![precision-recall after corrections](pr_curves.png)",
        "## Background false positives and false negatives",
        "Detections matched to no person (background FP) and persons matched by no detection "
        "(FN) at each OKS threshold, for the detections as given:",
        _table(["OKS", "matched", "background FP", "FN"], per_oks),
        f"Unmatched at every OKS threshold: {b['fp_count']} background false positives and "
        f"{b['fn_count']} false negatives. Size is a person's `area` and a detection's area as "
        "pycocotools takes it (its box if the results have boxes, else its keypoints' extent).",
        _table(["size (pixels)", "background FP", "FN"], sizes),
        _table(
            ["FP score (quintiles of all evaluated detections)", "background FP"],
            list(zip(score_labels, b["fp_by_score"])),
        ),
        _table(["labelled keypoints of the missed person", "FN"], by_kps),
        "![background errors](background_errors.png)",
        "## Localisation error per joint",
        "Distance from each labelled keypoint of a localising detection to its own joint, divided "
        f"by the person's scale sqrt(area); the last two columns are that distance at ks {GOOD_KS} "
        f"and at ks {NEAR_KS} for the joint's sigma.",
        _table(
            ["keypoint", "n", "median", "90th percentile", f"ks {GOOD_KS} at", f"ks {NEAR_KS} at"],
            joint_rows,
        ),
        "![per-joint error histograms](joint_error_histograms.png)",
    ]
    path = out / "report.md"
    write_text_atomic(path, "\n\n".join(sections) + "\n")
    return path


def _ks_distance(ks: float, sigma):
    """Distance / sqrt(area) at which a keypoint with OKS ``sigma`` has similarity ``ks``."""
    return np.sqrt(-2 * math.log(ks)) * 2 * np.asarray(sigma)


def _figure(**kwargs):
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _plot_keypoint_errors(a: ErrorAnalysis):
    counts = a.counts.astype(np.float64)
    names = list(a.keypoint_names) + ["all"]
    counts = np.concatenate([counts, counts.sum(1, keepdims=True)], axis=1)
    frac = counts / np.maximum(counts.sum(0, keepdims=True), 1)
    fig = _figure(figsize=(8, 0.3 * len(names) + 1.5))
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    left = np.zeros(len(names))
    for i, t in enumerate(ERROR_TYPES):
        ax.barh(y, frac[i], left=left, color=_COLORS[t], label=t, edgecolor="k", linewidth=0.3)
        left += frac[i]
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of labelled keypoints of localising detections")
    ax.legend(ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return fig


def _plot_ap_impact(a: ErrorAnalysis):
    fig = _figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    base = a.baseline.metrics["AP"]
    colours = [
        _COLORS.get(k, "grey")
        for k in ("miss", "swap", "inversion", "jitter", "score", "background FP", "FN")
    ]
    labels = [s.label for s in a.one_fixed.values()]
    gains = [s.metrics["AP"] - base for s in a.one_fixed.values()]
    ax1.bar(range(len(gains)), np.nan_to_num(gains), color=colours, edgecolor="k", linewidth=0.5)
    ax1.set_xticks(range(len(gains)), labels, rotation=30, ha="right")
    ax1.set_ylabel(f"AP gain over {_f(base)}")
    ax1.set_title("one error type corrected")
    for s in a.cumulative:
        ax2.plot(
            OKS_THRESHOLDS,
            np.where(s.ap_per_oks >= 0, s.ap_per_oks, np.nan),
            marker="o",
            ms=3,
            label=s.label,
        )
    ax2.set_xlabel("OKS threshold")
    ax2.set_ylabel("AP")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("corrections added in turn")
    ax2.legend(fontsize=7)
    return fig


def _plot_pr_curves(a: ErrorAnalysis):
    fig = _figure(figsize=(15, 4.5))
    axes = fig.subplots(1, 3)
    recall = np.linspace(0, 1, 101)
    cmap = [
        "white",
        _COLORS["miss"],
        _COLORS["swap"],
        _COLORS["inversion"],
        _COLORS["jitter"],
        _COLORS["score"],
        _COLORS["background FP"],
        _COLORS["FN"],
    ]
    for ax, t in zip(axes, (0, 5, 9)):
        prev = None
        for s, colour in zip(a.cumulative, cmap):
            p = np.clip(s.precision[t], 0, None)
            ax.plot(recall, p, color="k", lw=0.8)
            if prev is not None:
                ax.fill_between(recall, prev, p, where=p >= prev, color=colour, interpolate=True)
            prev = p
            ax.plot([], [], color=colour, lw=6, label=f"{s.label}: {_f(s.ap_per_oks[t])}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"OKS {OKS_THRESHOLDS[t]:.2f}")
        ax.legend(fontsize=7, loc="lower left")
    return fig


def _plot_background(a: ErrorAnalysis):
    b = a.background
    fig = _figure(figsize=(12, 7))
    axes = fig.subplots(2, 2)
    sizes = [_size_label(lo, hi) for lo, hi in SIZE_BINS]
    panels = [
        (
            axes[0, 0],
            sizes,
            b["fp_by_size"],
            "background FP by detection area",
            _COLORS["background FP"],
        ),
        (
            axes[0, 1],
            ["0-20%", "20-40%", "40-60%", "60-80%", "80-100%"],
            b["fp_by_score"],
            "background FP by score quintile",
            _COLORS["background FP"],
        ),
        (axes[1, 0], sizes, b["fn_by_size"], "FN by person area", _COLORS["FN"]),
    ]
    for ax, names, values, title, colour in panels:
        ax.bar(range(len(values)), values, color=colour)
        ax.set_xticks(range(len(values)), names)
        ax.set_title(title)
    k = len(a.keypoint_names)
    hist = np.bincount(b["fn_num_keypoints"], minlength=k + 1)[1:]
    axes[1, 1].bar(np.arange(1, k + 1), hist, color=_COLORS["FN"])
    axes[1, 1].set_title("FN by number of labelled keypoints")
    fig.tight_layout()
    return fig


def _plot_joint_histograms(a: ErrorAnalysis):
    k = len(a.keypoint_names)
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    fig = _figure(figsize=(3.2 * cols, 2.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for j, ax in enumerate(axes):
        if j >= k:
            ax.set_visible(False)
            continue
        good, near = _ks_distance(GOOD_KS, a.sigmas[j]), _ks_distance(NEAR_KS, a.sigmas[j])
        e = a.normalised_error[:, j]
        e = e[np.isfinite(e)]
        top = 3 * near
        ax.hist(np.minimum(e, top), bins=30, range=(0, top), color="#4F82BD")
        ax.axvline(good, color=_COLORS["good"], lw=1.5, label=f"ks {GOOD_KS}")
        ax.axvline(near, color=_COLORS["jitter"], lw=1.5, label=f"ks {NEAR_KS}")
        ax.set_title(f"{a.keypoint_names[j]} (n={e.size})", fontsize=9)
        ax.tick_params(labelsize=7)
        if j == 0:
            ax.legend(fontsize=7)
    fig.supxlabel("distance to own joint / sqrt(person area) (last bin: beyond)")
    fig.tight_layout()
    return fig
