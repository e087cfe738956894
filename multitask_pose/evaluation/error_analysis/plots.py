"""The report's figures (matplotlib, drawn on ``Figure`` objects: no pyplot state)."""

import math

import numpy as np

from .analysis import SIZE_BINS, ErrorAnalysis
from .taxonomy import ERROR_TYPES, GOOD_KS, NEAR_KS, OKS_THRESHOLDS

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


def format_number(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` decimals; "n/a" when undefined."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def size_label(lo, hi) -> str:
    """An area range as side lengths, e.g. "32²-64²"."""

    def side(v):
        return f"{int(round(math.sqrt(v)))}²"

    if lo == 0:
        return f"< {side(hi)}"
    return f">= {side(lo)}" if not np.isfinite(hi) else f"{side(lo)}-{side(hi)}"


def ks_distance(ks: float, sigma):
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
    ax1.set_ylabel(f"AP gain over {format_number(base)}")
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
            ax.plot(
                [], [], color=colour, lw=6, label=f"{s.label}: {format_number(s.ap_per_oks[t])}"
            )
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
    sizes = [size_label(lo, hi) for lo, hi in SIZE_BINS]
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
        good, near = ks_distance(GOOD_KS, a.sigmas[j]), ks_distance(NEAR_KS, a.sigmas[j])
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


# The report's figures by file name, in the report's order.
PLOTS = {
    "keypoint_errors.png": _plot_keypoint_errors,
    "ap_after_corrections.png": _plot_ap_impact,
    "pr_curves.png": _plot_pr_curves,
    "background_errors.png": _plot_background,
    "joint_error_histograms.png": _plot_joint_histograms,
}
