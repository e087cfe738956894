"""The detector study (tools/detector_study.py): person detectors trained with one budget and
seeds, their boxes' AP and AR@100 on each evaluation dataset, and the keypoint AP a trained
top-down model reaches on them (and on the ground-truth boxes for reference)."""

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..engine.cli import ConfigError
from ..env import cpu_model
from ..shared.atomic_io import write_json_atomic, write_text_atomic
from ..shared.paths import REPO_ROOT as ROOT
from . import effects, jobs, records, runner, tables

__all__ = ["DATASETS", "DETECTORS", "ORDER", "box_ap_ar", "build_parser", "main", "parse_args",
           "table"]  # fmt: skip

SCRIPT = ROOT / "tools" / "detector_study.py"  # (run once per share of the seeds with --jobs)
DETECTORS = ROOT / "configs" / "Synthetic" / "detectors"
# The default order: the plain detector first (the table's reference), then the cascades.
ORDER = [
    "faster_rcnn_R_18_FPN_synth_basic",
    "cascade_mask_rcnn_R_18_FPN_synth_basic",
    "htc_R_18_FPN_synth_basic",
    "htc_keypoint_R_18_FPN_synth_basic",
]
DATASETS = ["synth_people_basic_val", "synth_people_crowd_val"]


def build_parser(doc=None):
    """The study's options; ``doc``: the help's description (the script's docstring)."""
    parser = runner.study_parser(doc, "output/detector_study")
    parser.add_argument(
        "--configs", nargs="+",
        help=f"detector yaml paths (default: {', '.join(ORDER)} of {DETECTORS.relative_to(ROOT)})",
    )  # fmt: skip
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="evaluation datasets")
    parser.add_argument(
        "--topdown",
        required=True,
        help="the top-down model run on the boxes: a trained output folder (config.yaml, "
        "model_final.pth) or a model zoo entry (zoo://hrnet_w18_small_synthpeople)",
    )
    jobs.add_jobs_argument(parser)
    return runner.add_overrides(parser)


def topdown_keypoint_ap(topdown, eval_dir, dataset, box_opts, what):
    """(keypoint AP, AP75) of the top-down model ``topdown`` (a finished run's folder or a model zoo
    entry, :func:`jobs.run_files`) on ``dataset`` with the boxes ``box_opts`` select, evaluated
    into ``eval_dir`` (kept if it exists)."""
    config, weights = jobs.run_files(topdown)
    res = runner.evaluate_run(
        config, eval_dir, dataset, ["MODEL.WEIGHTS", weights, *box_opts], what, True,
        "detector_study",
    )  # fmt: skip
    return res["keypoints"]["AP"], res["keypoints"]["AP75"]


def parse_args(argv=None, parser=None):
    """The options of ``argv``, checked (``parser``: the script's, default :func:`build_parser`)."""
    parser = parser or build_parser()
    args = jobs.parse_overrides(parser, argv)
    jobs.check_run_dir(parser, "--topdown", args.topdown)
    return args


def box_ap_ar(det_file, dataset):
    """(box AP, box AR@100), both x100 as detectron2 reports them, of a detection file."""
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


def table(rows, gt, datasets, note):
    """``rows``: [(detector, [runner row per seed, with box_/ar_/kp_<dataset> AP])], then the
    ground-truth boxes' row ``gt``."""
    header = ["detector"]
    for d in datasets:
        header += [f"box AP {d}", f"box AR@100 {d}", f"top-down kp AP {d}"]
    keys = [k for d in datasets for k in (f"box_{d}", f"ar_{d}", f"kp_{d}")]
    lines = []
    for name, runs in rows:
        train = sum(r["train_min"] for r in runs) / len(runs)
        infer = sum(r["infer_ms"] for r in runs) / len(runs)
        lines.append([name, *(tables.cell(runs, k) for k in keys), f"{train:.1f}", f"{infer:.0f}"])
    lines.append(["ground-truth boxes", *(tables.cell([gt], k) for k in keys), "-", "-"])
    return tables.markdown(note, header + ["train min", "infer ms/img"], lines)


def main(argv=None, parser=None):
    """The study of ``argv`` (``parser``: the script's, for its help): the steps of the script's
    help, each skipped when its output exists; the table in ``<output>/detector_study.md``,
    printed with a one-line summary."""
    args = parse_args(argv, parser)
    out_root, record = runner.study_dirs(args)
    paths = [Path(p) for p in args.configs] if args.configs else [
        DETECTORS / f"{n}.yaml" for n in ORDER
    ]  # fmt: skip
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"no such config {', '.join(missing)}")
    train_args = SimpleNamespace(max_iter=args.max_iter, opts=["TEST.EVAL_PERIOD", "0", *args.opts])

    jobs.run_seeds_in_parallel(SCRIPT, argv, args, out_root, "detector_study")
    rows = []
    for path in paths:
        name, runs = path.stem, []
        for seed in args.seeds:
            run_dir = out_root / name / f"seed{seed}"
            # per dataset: the detection file, its box AP and AR, the top-down model's results
            done = {d: [run_dir / "detections" / f"results_{d}.json",
                        run_dir / "topdown" / d / f"results_{d}.json"]
                    for d in args.datasets}  # fmt: skip
            needs = not all(f.is_file() for files in done.values() for f in files)
            r = runner.run_one(name, path, train_args, out_root, seed, needs)
            for d in args.datasets:
                det = run_dir / "detections" / f"{d}.json"
                if not all(f.is_file() for f in done[d]):
                    runner.detect_persons(run_dir, d, det, "detector_study")
                box_file = done[d][0]
                if not box_file.is_file():
                    ap, ar = box_ap_ar(det, d)
                    write_json_atomic(box_file, {"bbox": {"AP": ap, "AR@100": ar}})
                box = json.loads(box_file.read_text())["bbox"]
                r[f"box_{d}"], r[f"ar_{d}"] = box["AP"], box["AR@100"]
                r[f"results_{d}"] = str(runner.results_file(run_dir / "topdown" / d, d))
                r[f"kp_{d}"], r[f"kp75_{d}"] = topdown_keypoint_ap(
                    args.topdown,
                    run_dir / "topdown" / d,
                    d,
                    ["TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE", str(det)],
                    f"the top-down model on {name} seed {seed}'s boxes of {d}",
                )
            runs.append(r)
            records.save(record, out_root, run_dir)
        rows.append((name, runs))
    if args.seeds_only:
        return
    gt = {"train_min": float("nan"), "infer_ms": float("nan")}
    for d in args.datasets:
        gt[f"box_{d}"], gt[f"ar_{d}"] = 100.0, 100.0
        gt[f"results_{d}"] = str(runner.results_file(out_root / "topdown_gt_boxes" / d, d))
        gt[f"kp_{d}"], gt[f"kp75_{d}"] = topdown_keypoint_ap(
            args.topdown,
            out_root / "topdown_gt_boxes" / d,
            d,
            ["TEST.TOPDOWN.BOX_SOURCE", "gt"],
            f"the top-down model on the ground-truth boxes of {d}",
        )
    records.save(record, out_root, out_root / "topdown_gt_boxes")

    budget = f"SOLVER.MAX_ITER {args.max_iter}" if args.max_iter else "each config's own schedule"
    note = (
        f"Detector study: {budget}, SEED {', '.join(map(str, args.seeds))}"
        + (f", overrides {' '.join(args.opts)}" if args.opts else "")
        + f"; top-down model {jobs.run_files(args.topdown)[1]}; {cpu_model()}."
    )
    text = table(rows, gt, args.datasets, note)
    write_text_atomic(out_root / "detector_study.md", text)
    print(text)
    sections = [
        (d, {name: [{"box": r[f"box_{d}"], "ar": r[f"ar_{d}"], "kp": r[f"kp_{d}"],
                     "kp75": r[f"kp75_{d}"], "results": r[f"results_{d}"], "dataset": d}
                    for r in runs]
             for name, runs in rows + [("gt", [gt])]})
        for d in args.datasets
    ]  # fmt: skip
    write_text_atomic(
        out_root / "effects.md", effects.effects_document(effects.DETECTOR_STUDY, sections)
    )
    print(f"detector_study: effects the reports claim in {out_root / 'effects.md'}", flush=True)
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

