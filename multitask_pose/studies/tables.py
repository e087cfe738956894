"""The studies' table cells: AP as a mean over seeds with every seed's value, and the keypoint AP
difference from the first row judged against the seed spread."""

__all__ = ["cell", "fmt", "table", "versus_first"]


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


def versus_first(runs, first):
    """Keypoint AP difference of the means from the first config's, and whether it exceeds the
    seed spread: the larger max - min over seeds of the two configs ("-" without keypoints)."""
    if any(r["kp"] is None for r in (*runs, *first)):
        return "-"
    mean = sum(r["kp"] for r in runs) / len(runs)
    mean0 = sum(r["kp"] for r in first) / len(first)
    spread = max(max(r["kp"] for r in rs) - min(r["kp"] for r in rs) for rs in (runs, first))
    verdict = "yes" if abs(mean - mean0) > spread else "no"
    return f"{(mean - mean0) / 100:+.3f} (spread {spread / 100:.3f}: {verdict})"


def table(groups, header_note):
    """``groups``: [(name, [row per seed])]."""
    several = len(groups[0][1]) > 1
    extra = " kp AP vs first, exceeds seed spread |" if several else ""
    lines = [
        header_note,
        "",
        "| config | box AP | mask AP | kp AP | kp AP50 | kp AP75 | train min | infer ms/img |"
        + extra,
        "|---|---|---|---|---|---|---|---|" + ("---|" if several else ""),
    ]
    for name, runs in groups:
        train = sum(r["train_min"] for r in runs) / len(runs)
        infer = sum(r["infer_ms"] for r in runs) / len(runs)
        line = (
            f"| {name} | {cell(runs, 'box')} | {cell(runs, 'mask')} | {cell(runs, 'kp')} | "
            f"{cell(runs, 'kp50')} | {cell(runs, 'kp75')} | {train:.1f} | {infer:.0f} |"
        )
        if several:
            line += f" {versus_first(runs, groups[0][1])} |"
        lines.append(line)
    return "\n".join(lines) + "\n"
