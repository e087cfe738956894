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

The package, by concern: ``taxonomy`` (the error types and the classification of keypoints),
``loading`` (the ground truth and a results file, checked), ``analysis`` (the COCOeval runs on
corrected detections), ``report`` (report.md and the summary line), ``plots`` (its figures).
The OKS terms are ``multitask_pose/shared/oks.py``'s.
"""

from .analysis import ErrorAnalysis, StageResult, analyze, analyze_keypoint_errors
from .loading import AnalysisInputError, load_ground_truth, load_results
from .report import error_summary, write_report
from .taxonomy import (
    ERROR_TYPES,
    GOOD,
    GOOD_KS,
    LOCALIZATION_OKS,
    NEAR_KS,
    UNLABELLED,
    KeypointErrors,
    classify_keypoints,
)

__all__ = [
    "ERROR_TYPES",
    "GOOD",
    "GOOD_KS",
    "NEAR_KS",
    "LOCALIZATION_OKS",
    "UNLABELLED",
    "AnalysisInputError",
    "ErrorAnalysis",
    "KeypointErrors",
    "StageResult",
    "analyze",
    "analyze_keypoint_errors",
    "classify_keypoints",
    "error_summary",
    "load_ground_truth",
    "load_results",
    "write_report",
]
