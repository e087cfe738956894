"""The studies' tables: the cells (AP as a mean over seeds with every seed's value, training
minutes), the keypoint AP difference from the first row judged against the seed spread, and the
markdown table every study writes."""

__all__ = ["cell", "fmt", "markdown", "mean_difference", "mean_minutes", "versus_first"]


def fmt(ap):
    return "-" if ap is None else f"{ap / 100:.3f}"


def cell(runs, key):
    """One config's value over its seeds: ``mean (v1, v2, ...)``, or the value for one seed."""
    vals = [r[key] for r in runs]
    if any(v is None for v in vals):
        return "-"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(sum(vals) / len(vals))} ({', '.join(fmt(v) for v in vals)})"


def mean_difference(runs, first, key="kp"):
    """(the difference of the means of ``key`` over the seeds of ``runs`` from those of
    ``first``, the seed spread: the larger max - min over seeds of the two); the studies call a
    difference real only when its size exceeds the spread."""
    vals, vals0 = [r[key] for r in runs], [r[key] for r in first]
    spread = max(max(v) - min(v) for v in (vals, vals0))
    return sum(vals) / len(vals) - sum(vals0) / len(vals0), spread


def versus_first(runs, first):
    """Keypoint AP difference of the means from the first config's, and whether it exceeds the
    seed spread (:func:`mean_difference`; "-" without keypoints)."""
    if any(r["kp"] is None for r in (*runs, *first)):
        return "-"
    diff, spread = mean_difference(runs, first)
    verdict = "yes" if abs(diff) > spread else "no"
    return f"{diff / 100:+.3f} (spread {spread / 100:.3f}: {verdict})"


def mean_minutes(runs):
    """The mean training minutes of ``runs`` that trained (NaN for a row that did not, e.g. an
    ensemble), "-" when none did."""
    train = [r["train_min"] for r in runs if r["train_min"] == r["train_min"]]
    return f"{sum(train) / len(train):.1f}" if train else "-"


def markdown(note, header, rows):
    """Every study's table: ``note``, a blank line, then a markdown table of the ``header``
    cells and each row's cells."""
    lines = [note, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"
