"""The code of ``tools/select_data.py``, whose docstring is its help text."""

import json
import os
import sys

import numpy as np

from multitask_pose.data.selection import KS_AT_ALL, KS_AT_ONE, select_annotations
from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.shared.atomic_io import atomic_write, write_json_atomic


def write_report(folder, src, ks, n, keep, k, counts):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    judged = n > 0
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for mask, colour, label in ((judged & keep, "tab:blue", "kept"),
                                (judged & ~keep, "tab:red", "dropped")):  # fmt: skip
        ax.scatter(ks[mask], n[mask] + np.random.default_rng(0).uniform(-0.2, 0.2, mask.sum()),
                   s=4, c=colour, label=f"{label} ({mask.sum()})", alpha=0.5)  # fmt: skip
    ax.plot([KS_AT_ONE, KS_AT_ALL], [1, k], "k-", label="the line")
    ax.set_xlabel("ks: box centre vs keypoint centre")
    ax.set_ylabel("labelled keypoints n")
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_write(os.path.join(folder, "scatter.png"), "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    lines = [
        "# Data selection",
        "",
        f"- input: `{src}`, {k} keypoints per person",
        f"- judged (labelled keypoints, not crowd): {counts['judged']}; kept {counts['kept']},"
        f" dropped {counts['dropped']} ({counts['dropped_pct']:.1f}%)",
        f"- not judged, kept: {counts['unjudged']}",
        "",
        f"Rule: keep when ks > {KS_AT_ONE} + {KS_AT_ALL - KS_AT_ONE:.1f} (n - 1) / ({k} - 1).",
        "",
        "![ks against n](scatter.png)",
    ]
    with atomic_write(os.path.join(folder, "report.md")) as f:
        f.write("\n".join(lines) + "\n")


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    ap = argument_parser(doc and doc.split("\n")[0])
    ap.add_argument("--input", required=True, help="a COCO person-keypoints json")
    ap.add_argument("--output", required=True, help="the filtered json to write")
    ap.add_argument("--report", help="a folder for report.md and scatter.png")
    return ap


@entry_point("select_data")
def main(argv=None, parser=None):
    """The tool (``parser``: the script's, for its help)."""
    ap = parser or build_parser()
    args = ap.parse_args(argv)
    try:
        with open(args.input) as f:
            data = json.load(f)
        cats = data.get("categories") or [{}]
        k = len(cats[0].get("keypoints", []))
        if not k:
            raise ValueError("its category lists no keypoints")
        anns = data["annotations"]
        judged = [a for a in anns if not a.get("iscrowd", 0)]
        kept, (ks, n, keep) = select_annotations(judged, k)
    except (OSError, ValueError, KeyError) as e:
        print(f"select_data: {args.input}: {e}", file=sys.stderr)
        return 2
    dropped = {id(a) for a, kp in zip(judged, keep) if not kp}
    data["annotations"] = [a for a in anns if id(a) not in dropped]
    write_json_atomic(args.output, data)
    counts = {
        "judged": int((n > 0).sum()),
        "kept": int(((n > 0) & keep).sum()),
        "dropped": len(dropped),
        "dropped_pct": 100 * len(dropped) / max(1, int((n > 0).sum())),
        "unjudged": len(anns) - int((n > 0).sum()),
    }
    if args.report:
        write_report(args.report, args.input, ks, n, keep, k, counts)
    print(
        f"select_data: {counts['dropped']} of {counts['judged']} judged annotations dropped"
        f" ({counts['dropped_pct']:.1f}%), {counts['unjudged']} not judged -> {args.output}"
        + (f"; report in {args.report}" if args.report else "")
    )
    return 0
