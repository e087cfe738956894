"""The effects tables' reason column: which errors account for a keypoint AP difference between
two rows of a study, from the error analysis of both rows' results (coco-analyze's, as
``tools/analyze_keypoints.py`` runs it: ``multitask_pose/evaluation/error_analysis``).

coco-analyze's cumulative corrections split what a set of results lacks of a perfect AP into what
each kind of error costs: the keypoint errors in its order (miss, swap, inversion, jitter), then
the scores (the optimal OKS as score), the background false positives and the false negatives.
Each cost is the AP gained by its correction on top of the earlier ones, so a row's AP is the AP
after every correction less the sum of its costs, and the difference of two rows is the sum of
the differences of their costs (plus that of the fully corrected APs, zero where both reach 1).
As in coco-analyze, a corrected keypoint is moved to where its OKS term is 0.85 ("good"), not onto
the ground truth: what the strictest OKS thresholds still miss after the corrections counts with
the false negatives.
The reason names the kinds of error whose cost changed most, each with its cost in the compared
row and in the method's row (means over the seeds with results), and how much of the difference
they make. A claim on box or mask AP gets no reason (the analysis is of keypoints).

Each results file is analysed once: its costs are kept beside it (``<results>.costs.json``, with
the results' SHA-1: analysed again when the results change).
"""

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..shared.atomic_io import write_json_atomic

__all__ = ["COSTS", "LEGEND", "analysed", "costs_file", "error_costs", "effect_reason",
           "reasons_for"]  # fmt: skip

# (name in the reason, the stage of coco-analyze's cumulative chain whose gain is the cost)
COSTS = (
    ("miss", "miss"),
    ("swap", "+swap"),
    ("inversion", "+inversion"),
    ("jitter", "+jitter"),
    ("score", "+score"),
    ("background FP", "+background_fp"),
    ("FN", "+false_negatives"),
)
# the analysis' metric for each keypoint metric of the effects tables
_METRIC = {"kp": "AP", "kp75": "AP75"}
SHOWN = 2  # kinds of error named per reason
LEGEND = (
    "Reason: the error analysis of both rows' results (coco-analyze's corrections): the"
    " difference in the metric, then the kinds of error whose AP cost changed most, each as"
    " its cost in the compared row -> in the row (its share of the difference), and the rest"
    " (the other kinds). Means over the seeds."
)


def error_costs(results_file, dataset: str) -> Dict[str, Dict[str, float]]:
    """{metric: {"AP": the results' AP, "corrected": the AP after every correction, and each
    kind of error of :data:`COSTS`: its cost}} for "AP" and "AP75" (in [0, 1]) of the keypoint
    results in ``results_file`` on the registered ``dataset``."""
    results_file = Path(results_file)
    cache = costs_file(results_file)
    digest = _sha1(results_file) if results_file.is_file() else None
    if cache.is_file():
        cached = json.loads(cache.read_text())
        # kept while it is the analysis of these results (a study's record keeps the costs of
        # results it does not keep: there is no file to compare with then)
        if cached.get("dataset") == dataset and digest in (None, cached.get("sha1")):
            return cached["costs"]
    from ..evaluation.error_analysis.analysis import analyze_keypoint_errors

    analysis = analyze_keypoint_errors(dataset, results_file)
    chain = [analysis.baseline, *analysis.cumulative[1:]]
    names = [s.name for s in chain]
    if names != ["baseline", *(stage for _, stage in COSTS)]:
        raise RuntimeError(f"the error analysis' stages changed: {names}")
    costs = {}
    for metric in ("AP", "AP75"):
        values = [float(s.metrics[metric]) for s in chain]
        costs[metric] = {"AP": values[0], "corrected": values[-1]}
        for (name, _), before, after in zip(COSTS, values, values[1:]):
            costs[metric][name] = after - before
    write_json_atomic(
        cache,
        {"dataset": dataset, "results": str(results_file), "sha1": digest, "costs": costs},
    )
    return costs


def costs_file(results_file) -> Path:
    """Where :func:`error_costs` keeps the analysis of ``results_file``: beside it."""
    results_file = Path(results_file)
    return results_file.with_name(results_file.name + ".costs.json")


def analysed(results_file) -> bool:
    """Whether :func:`error_costs` can answer for ``results_file``: the file or its costs exist
    (a study's record keeps the costs of results files it does not keep)."""
    return Path(results_file).is_file() or costs_file(results_file).is_file()


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _mean_costs(runs: Sequence[Dict], metric: str) -> Optional[Dict[str, float]]:
    found = [error_costs(r["results"], r["dataset"])[metric] for r in runs
             if r.get("results") and analysed(r["results"])]  # fmt: skip
    if not found:
        return None
    return {k: sum(c[k] for c in found) / len(found) for k in found[0]}


def effect_reason(metric: str, runs: Sequence[Dict], base_runs: Sequence[Dict]) -> str:
    """The reason for the difference in ``metric`` ("kp" or "kp75") of ``runs`` (one dict per
    seed, with "results": a keypoint results file, and "dataset") from ``base_runs``; "" where
    either row has no results file or the metric is not a keypoint one; what the analysis
    refuses (an empty results file) is said in the cell instead."""
    if metric not in _METRIC:
        return ""
    from ..evaluation.error_analysis.loading import AnalysisInputError

    try:
        row, base = (_mean_costs(r, _METRIC[metric]) for r in (runs, base_runs))
    except AnalysisInputError as e:  # e.g. a model that found nobody: the table still stands
        return f"no error analysis: {e}"
    if row is None or base is None:
        return ""
    # each kind's share of the difference: the row's AP is higher where it costs less
    share = {name: base[name] - row[name] for name, _ in COSTS}
    diff = row["AP"] - base["AP"]
    named = sorted(share, key=lambda n: -abs(share[n]))[:SHOWN]
    parts = [f"{n} {base[n]:.3f} -> {row[n]:.3f} ({share[n]:+.3f})" for n in named]
    rest = diff - sum(share[n] for n in named)
    return f"{diff:+.3f}: " + ", ".join(parts) + f", rest {rest:+.3f}"


def reasons_for(claims, runs_by_row: Dict[str, List[Dict]]) -> Dict[str, str]:
    """{claim key: :func:`effect_reason`} for the ``claims`` whose rows' runs carry results."""
    out = {}
    for c in claims:
        runs, base = runs_by_row.get(c.row), runs_by_row.get(c.baseline)
        if runs and base:
            reason = effect_reason(c.metric, runs, base)
            if reason:
                out[c.key] = reason
    return out
