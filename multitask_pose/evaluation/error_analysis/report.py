"""The analysis as a report: report.md with its tables and plots, and a one-line summary."""

from pathlib import Path
from typing import Sequence

import numpy as np

from ...shared.atomic_io import save_figure_atomic, write_text_atomic
from .analysis import SIZE_BINS, ErrorAnalysis
from .plots import PLOTS, format_number, ks_distance, size_label
from .taxonomy import ERROR_TYPES, GOOD_KS, LOCALIZATION_OKS, NEAR_KS, OKS_THRESHOLDS


def error_summary(a: ErrorAnalysis) -> str:
    """One line to paste into a note."""
    frac = a.fractions
    kinds = " ".join(
        f"{t} {100 * frac[t]:.1f}%" if np.isfinite(frac[t]) else f"{t} n/a" for t in ERROR_TYPES
    )
    fixed = ", ".join(f"{s.label} {format_number(s.metrics['AP'])}" for s in a.one_fixed.values())
    chain = {s.name: s for s in a.cumulative}
    return (
        f"analyze_keypoints: AP {format_number(a.baseline.metrics['AP'])}; {kinds}; "
        f"AP with {fixed}; "
        f"all keypoint errors fixed {format_number(chain['+jitter'].metrics['AP'])}, "
        f"+ scores optimal {format_number(chain['+score'].metrics['AP'])}, "
        f"+ background FP removed {format_number(chain['+background_fp'].metrics['AP'])}"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(a: ErrorAnalysis, output_dir) -> Path:
    """Write ``report.md`` and its PNG plots into ``output_dir``; returns the report's path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, draw in PLOTS.items():
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
                + [format_number(s.metrics[m]) for m in ap_head[1:-1]]
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
        [size_label(lo, hi), fp, fn]
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
        stats = (
            [format_number(np.median(e)), format_number(np.quantile(e, 0.9))]
            if e.size
            else ["n/a", "n/a"]
        )
        joint_rows.append(
            [name, e.size]
            + stats
            + [f"{ks_distance(t, a.sigmas[j]):.3f}" for t in (GOOD_KS, NEAR_KS)]
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
        f"```\n{error_summary(a)}\n```",
        "Method: Ronchi & Perona, ICCV 2017 (`coco-analyze`); the definitions and where they "
        "differ "
        "from coco-analyze are in the docstring of `multitask_pose/evaluation/error_analysis/`. "
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
