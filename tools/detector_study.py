#!/usr/bin/env python
"""Person detectors compared on SynthPeople, and what their boxes give the top-down stage.

    PY=$(tools/install/setup_env.sh)
    $PY tools/detector_study.py --seeds 42 43 --jobs 2 \\
        --topdown output/study_topdown_basic/hrnet_w18_small_synth_basic/seed42

``--jobs 2``: the seeds in two processes at once (multitask_pose/studies/jobs.py), the
table once both have finished.

Steps, each skipped when its output exists, so a killed study resumes with the same command:

1. train each detector config (default: every configs/Synthetic/detectors/*.yaml: Faster R-CNN,
   Cascade Mask R-CNN, HTC, HTC + keypoints on one backbone, data and schedule) per seed with
   the studies' runner into ``<output>/<config>/seed<seed>`` (TEST.EVAL_PERIOD 0 and the
   overrides after ``--``);
2. its person detections on each evaluation dataset with tools/detect_persons.py (top 100 per
   image, score >= 0.05): ``<run>/detections/<dataset>.json``;
3. person box AP and AR@100 of those files against the dataset's annotations (pycocotools);
4. the keypoint AP of a trained top-down model (``--topdown``: its output folder) on those boxes
   (``--eval-only`` with TEST.TOPDOWN.BOX_SOURCE "file" into ``<run>/topdown/<dataset>``), and on
   the ground-truth boxes for reference;
5. the table: ``mean (seed values)`` per cell, written to ``<output>/detector_study.md`` and
   printed, with a one-line summary.
"""

import argparse
import contextlib
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

from multitask_pose.engine.cli import ConfigError, argument_parser, tool_errors
from multitask_pose.shared.atomic_io import write_text_atomic
from multitask_pose.shared.paths import REPO_ROOT as ROOT
from multitask_pose.studies import jobs, runner, tables

DETECTORS = ROOT / "configs" / "Synthetic" / "detectors"
# The default order: the plain detector first (the table's reference), then the cascades.
ORDER = [
    "faster_rcnn_R_18_FPN_synth_basic",
    "cascade_mask_rcnn_R_18_FPN_synth_basic",
    "htc_R_18_FPN_synth_basic",
    "htc_keypoint_R_18_FPN_synth_basic",
]
DATASETS = ["synth_people_basic_val", "synth_people_crowd_val"]


def parse_args(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--configs", nargs="+",
        help=f"detector yaml paths (default: {', '.join(ORDER)} of {DETECTORS.relative_to(ROOT)})",
    )  # fmt: skip
    parser.add_argument("--output", default="output/detector_study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--max-iter", type=int, help="SOLVER.MAX_ITER of every training")
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="evaluation datasets")
    parser.add_argument(
        "--topdown",
        required=True,
        help="a trained top-down output folder (config.yaml, model_final.pth) run on the boxes",
    )
    jobs.add_jobs_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="training overrides, after --")
    args = jobs.parse_overrides(parser, argv)
    jobs.check_run_dir(parser, "--topdown", args.topdown)
    return args


def box_ap_ar(det_file, dataset):
    """(box AP, box AR@100), both x100 as detectron2 reports them, of a detection file."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    DatasetCatalog.get(dataset)  # generates a SynthPeople split if it is not cached
    dets = json.loads(Path(det_file).read_text())
    if not dets:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO(MetadataCatalog.get(dataset).json_file)
        fields = ("image_id", "category_id", "bbox", "score")  # (boxes only: no keypoints)
        ev = COCOeval(gt, gt.loadRes([{k: d[k] for k in fields} for d in dets]), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * ev.stats[0], 100 * ev.stats[8]


def cells(runs, keys):
    return " | ".join(tables.cell(runs, k) for k in keys)


def main(argv=None):
    args = parse_args(argv)
    out_root = Path(args.output) if os.path.isabs(args.output) else ROOT / args.output
    paths = [Path(p) for p in args.configs] if args.configs else [
        DETECTORS / f"{n}.yaml" for n in ORDER
    ]  # fmt: skip
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"no such config {', '.join(missing)}")
    train_args = SimpleNamespace(max_iter=args.max_iter, opts=["TEST.EVAL_PERIOD", "0", *args.opts])
    td = Path(args.topdown).resolve()
    td_opts = ["MODEL.WEIGHTS", str(td / "model_final.pth")]

    def topdown_ap(eval_dir, dataset, box_opts, what):
        res = runner.evaluate_run(
            td / "config.yaml", eval_dir, dataset, td_opts + box_opts, what, True,
            "detector_study",
        )  # fmt: skip
        return res["keypoints"]["AP"]

    jobs.run_seeds_in_parallel(Path(__file__), argv, args, out_root, "detector_study")
    rows = []
    for path in paths:
        name, runs = path.stem, []
        for seed in args.seeds:
            r = runner.run_one(name, path, train_args, out_root, seed)
            run_dir = out_root / name / f"seed{seed}"
            for d in args.datasets:
                det = runner.detect_persons(
                    run_dir, d, run_dir / "detections" / f"{d}.json", "detector_study"
                )
                r[f"box_{d}"], r[f"ar_{d}"] = box_ap_ar(det, d)
                r[f"kp_{d}"] = topdown_ap(
                    run_dir / "topdown" / d,
                    d,
                    ["TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE", str(det)],
                    f"the top-down model on {name} seed {seed}'s boxes of {d}",
                )
            runs.append(r)
        rows.append((name, runs))
    if args.seeds_only:
        return
    gt = {"train_min": float("nan"), "infer_ms": float("nan")}
    for d in args.datasets:
        gt[f"box_{d}"], gt[f"ar_{d}"] = 100.0, 100.0
        gt[f"kp_{d}"] = topdown_ap(
            out_root / "topdown_gt_boxes" / d,
            d,
            ["TEST.TOPDOWN.BOX_SOURCE", "gt"],
            f"the top-down model on the ground-truth boxes of {d}",
        )

    from multitask_pose.env import cpu_model

    budget = f"SOLVER.MAX_ITER {args.max_iter}" if args.max_iter else "each config's own schedule"
    head = " | ".join(
        f"box AP {d} | box AR@100 {d} | top-down kp AP {d}" for d in args.datasets
    )  # fmt: skip
    keys = [k for d in args.datasets for k in (f"box_{d}", f"ar_{d}", f"kp_{d}")]
    lines = [
        f"Detector study: {budget}, SEED {', '.join(map(str, args.seeds))}"
        + (f", overrides {' '.join(args.opts)}" if args.opts else "")
        + f"; top-down model {td}; {cpu_model()}.",
        "",
        f"| detector | {head} | train min | infer ms/img |",
        "|---|" + "---|" * (len(keys) + 2),
    ]
    for name, runs in rows:
        train = sum(r["train_min"] for r in runs) / len(runs)
        infer = sum(r["infer_ms"] for r in runs) / len(runs)
        lines.append(f"| {name} | {cells(runs, keys)} | {train:.1f} | {infer:.0f} |")
    lines.append(f"| ground-truth boxes | {cells([gt], keys)} | - | - |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(out_root / "detector_study.md", text)
    print(text)
    print(
        "detector_study: "
        + "; ".join(
            f"{name} "
            + ", ".join(
                f"{d} box AP {tables.cell(runs, f'box_{d}')} kp AP {tables.cell(runs, f'kp_{d}')}"
                for d in args.datasets
            )
            for name, runs in rows + [("ground-truth boxes", [gt])]
        )
        + f" ({budget}, seeds {', '.join(map(str, args.seeds))})"
    )


if __name__ == "__main__":
    with tool_errors("detector_study"):
        main()
