"""The data study (tools/data_study.py): the reports' data strategies compared on SynthPeople,
each a row of training data on one top-down recipe (:data:`ROWS`, their overrides in
:func:`variant_opts`), every model evaluated on ground-truth and detector boxes, the table with
the difference from the baseline against the seed spread, and what each strategy added (mined hard
negatives, data selection's decisions, the pseudo-labels' quality)."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..data.hard_negatives import mine_dataset_dicts
from ..data.selection import unlabel_inconsistent
from ..env import cpu_model
from ..shared.atomic_io import write_text_atomic
from ..shared.paths import REPO_ROOT as ROOT
from . import effects, jobs, records, runner, tables

__all__ = ["HNDM_SETTINGS", "RECIPE", "ROWS", "build_parser", "data_counts", "main",
           "needed_detections", "parse_args", "table", "variant_opts"]  # fmt: skip

SCRIPT = ROOT / "tools" / "data_study.py"  # (run once per share of the seeds with --jobs)
RECIPE = (
    ROOT / "projects" / "TopDown" / "configs" / "Synthetic" / "hrnet_w18_small_synth_basic.yaml"
)
ROWS = {
    "baseline": "baseline",
    "aic": "+ AIC-layout data",
    "pseudo": "+ pseudo-labels",
    "hndm": "+ hard negatives (no intersection, the report's rule)",
    "hndm_iou": "+ hard negatives at IoU < 0.3",
    "hndm_iou_clean": "+ hard negatives at IoU < 0.3 holding no labelled keypoint",
    "inconsistent": "+ inconsistent data (1:1)",
    "inconsistent_selected": "+ inconsistent data (1:1), data selection",
}
# The HNDM rows' INPUT.HARD_NEGATIVES.RULE and MAX_KEYPOINTS: the report's
# rule; IoU below 0.3; IoU below 0.3 and only the boxes holding no labelled keypoint (0).
HNDM_SETTINGS = {"hndm": ("no_intersection", -1), "hndm_iou": ("iou", -1),
                 "hndm_iou_clean": ("iou", 0)}  # fmt: skip


def build_parser(doc=None):
    """The study's options; ``doc``: the help's description (the script's docstring)."""
    parser = runner.study_parser(doc, "output/data_study")
    parser.add_argument(
        "--detector",
        help="a trained person detector: a finished run's folder (config.yaml, "
        "model_final.pth), e.g. make demo's multitask R-CNN, or a model zoo entry "
        "(zoo://multitask_rcnn_R_18_FPN_synthpeople); its boxes on the datasets --detections "
        "does not cover",
    )
    parser.add_argument(
        "--detections",
        nargs="+",
        default=[],
        metavar="DATASET=FILE",
        help="person detections (COCO results) to use for a dataset instead of the detector's",
    )
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--train", default="synth_people_basic_train")
    parser.add_argument("--aic", default="synth_people_aic_train")
    parser.add_argument("--unlabelled", default="synth_people_basic_unlabelled")
    parser.add_argument("--inconsistent", default="synth_people_basic_inconsistent")
    parser.add_argument("--val", default="synth_people_basic_val")
    # The report's 0.9 keeps about 1% of this budget's keypoints (heatmap maxima of a model
    # trained for minutes rarely reach it); 0.5 keeps about three quarters of those on boxes
    # scoring 0.5 or more.
    parser.add_argument("--kp-thresh", type=float, default=0.5)
    parser.add_argument("--box-thresh", type=float, default=0.5)
    parser.add_argument("--min-keypoints", type=int, default=4)
    jobs.add_jobs_argument(parser)
    return runner.add_overrides(parser)


def parse_args(argv=None, parser=None):
    """The options of ``argv``, checked (``parser``: the script's, default :func:`build_parser`);
    ``detections``: {dataset: file}."""
    parser = parser or build_parser()
    args = jobs.parse_overrides(parser, argv)
    given = {}
    for item in args.detections:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            parser.error(f"--detections {item!r}: expected DATASET=FILE with an existing file")
        given[name] = Path(path).resolve()
    args.detections = given
    missing = [d for d in needed_detections(args) if d not in given]
    if missing and not args.detector:
        parser.error(f"give --detector (or --detections for {missing})")
    if args.detector:
        jobs.check_run_dir(parser, "--detector", args.detector)
    if "baseline" not in args.rows:
        parser.error("--rows needs baseline (the reference, and the pseudo-labels' source)")
    return args


def needed_detections(args):
    """The datasets whose person boxes the study uses: the validation set's (its detector-box
    column), the training set's (HNDM), the unlabelled set's (pseudo-labels)."""
    needs = [args.val] + [args.train] * any(r in HNDM_SETTINGS for r in args.rows)
    return list(dict.fromkeys(needs + [args.unlabelled] * ("pseudo" in args.rows)))


def variant_opts(row, args, det, pseudo):
    """The training overrides of ``row`` (``pseudo``: its seed's pseudo-label file)."""
    joined = lambda other: ["DATASETS.TRAIN", f"('{args.train}', '{other}')"]  # noqa: E731
    pair = lambda other: [*joined(other), "DATASETS.TRAIN_RATIOS", "(1, 1)"]  # noqa: E731
    if row == "baseline":
        return ["DATASETS.TRAIN", f"('{args.train}',)"]
    if row == "aic":
        return joined(args.aic)
    if row == "pseudo":
        name = f"pseudo_{Path(pseudo).stem}"
        images = MetadataCatalog.get(args.unlabelled).image_root
        return ["DATASETS.REGISTER_COCO", f"(('{name}', '{pseudo}', '{images}'),)", *joined(name)]
    if row in HNDM_SETTINGS:
        rule, max_kps = HNDM_SETTINGS[row]
        return ["DATASETS.TRAIN", f"('{args.train}',)",
                "INPUT.HARD_NEGATIVES.FILE", str(det[args.train]),
                "INPUT.HARD_NEGATIVES.RULE", rule,
                "INPUT.HARD_NEGATIVES.MAX_KEYPOINTS", str(max_kps)]  # fmt: skip
    if row == "inconsistent":
        return pair(args.inconsistent)
    return [*pair(args.inconsistent), "DATASETS.KEYPOINT_SELECTION", "True"]


def pseudo_labels(args, out_root, run_dir, seed, det):
    """The baseline's poses on the unlabelled set (its keypoint AP there, against the hidden
    labels) and the pseudo-label file made from them; returns (file, AP, the tool's line)."""
    res = runner.evaluate_run(
        run_dir / "config.yaml", run_dir / "eval" / "unlabelled", args.unlabelled,
        ["MODEL.WEIGHTS", str(run_dir / "model_final.pth"),
         *runner.box_opts("det", det[args.unlabelled])],
        f"the baseline seed {seed} on {args.unlabelled}", True, "data_study",
    )  # fmt: skip
    path = out_root / "pseudo_labels" / f"seed{seed}.json"
    line_file = path.with_suffix(".txt")
    if not path.exists():
        print(f"data_study: pseudo-labels of seed {seed}", flush=True)
        cmd = [
            sys.executable, str(ROOT / "tools" / "pseudo_label.py"),
            "--results", str(runner.results_file(run_dir / "eval" / "unlabelled", args.unlabelled)),
            "--dataset", args.unlabelled, "--output", str(path),
            "--kp-thresh", str(args.kp_thresh), "--box-thresh", str(args.box_thresh),
            "--min-keypoints", str(args.min_keypoints),
        ]  # fmt: skip
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"data_study: pseudo_label.py failed: {out.stderr.strip()}")
        write_text_atomic(line_file, out.stdout.strip().splitlines()[-1] + "\n")
    persons = len(json.loads(path.read_text())["annotations"])
    if not persons:
        raise SystemExit(
            f"data_study: no pseudo-labelled person in {path} (lower --kp-thresh, --box-thresh or"
            " --min-keypoints)"
        )
    return path, res["keypoints"]["AP"], line_file.read_text().strip()


def data_counts(args, det, out_root):
    """What the strategies add, counted in this process: the hard negatives each HNDM row mined
    (with the settings of its first seed's training, read from its config.yaml in
    ``out_root``), and data selection's decisions on the inconsistent set against its known
    displaced persons."""
    notes = []
    hndm = [row for row in HNDM_SETTINGS if row in args.rows]
    if hndm:  # (the training set and its detections read once for all rows)
        dicts = DatasetCatalog.get(args.train)
        detections = json.loads(Path(det[args.train]).read_text())
    for row in hndm:
        run_cfg = out_root / row / f"seed{args.seeds[0]}" / "config.yaml"
        hn = yaml.safe_load(run_cfg.read_text())["INPUT"]["HARD_NEGATIVES"]
        rule, max_kps, iou = hn["RULE"], hn["MAX_KEYPOINTS"], hn["IOU"]
        _, report = mine_dataset_dicts(dicts, detections, hn["SCORE"], iou, max_kps,
                                       rule=rule)  # fmt: skip
        how = "no intersection" if rule == "no_intersection" else f"IoU < {iou}"
        notes.append(
            f"HNDM, {how}{', no labelled keypoint inside' * (max_kps == 0)}: {report['mined']} hard"
            f" negatives in {report['images_with_negatives']} of {report['images']} images"
            f" ({report['confident']} of {report['detections']} detections scoring >="
            f" {report['score_thresh']}"
            + (f"; {report['holding_keypoints']} holding one dropped)" if max_kps == 0 else ")")
        )  # fmt: skip
    if "inconsistent_selected" in args.rows:
        dicts = DatasetCatalog.get(args.inconsistent)
        selected, judged, rejected = unlabel_inconsistent(dicts)

        def labelled(ds):
            return np.array([(np.asarray(a.get("keypoints", [0, 0, 0])).reshape(-1, 3)[:, 2] > 0)
                             .any() for d in ds for a in d["annotations"]])  # fmt: skip

        flags = np.array([bool(a.get("inconsistent")) for d in dicts for a in d["annotations"]])
        before, dropped = labelled(dicts), labelled(dicts) & ~labelled(selected)
        notes.append(
            f"data selection on {args.inconsistent}: {rejected} of {judged} persons with"
            f" keypoints unlabelled: {int(dropped[flags & before].sum())} of"
            f" {int((flags & before).sum())} displaced ones, {int(dropped[~flags & before].sum())}"
            f" of {int((~flags & before).sum())} clean ones"
        )
    return notes


def _box_sources(args, det):
    given = [f"{d} {f}" for d, f in det.items() if d in args.detections]
    ran = [d for d in det if d not in args.detections]
    return ", ".join(given + ([f"detector {jobs.run_files(args.detector)[1]} on {', '.join(ran)}"]
                              if ran else []))  # fmt: skip


def table(rows, cols, note):
    """``rows``: [(label, {col: [{"kp", "train_min"} per seed]})]; the first row is the
    baseline."""
    base = rows[0][1]
    header = ["training data"]
    for c in cols:
        header += [f"kp AP {c}", "vs baseline (exceeds seed spread?)"]
    lines = []
    for label, by_col in rows:
        cells = [label]
        for c in cols:
            verdict = "-" if by_col is base else tables.versus_first(by_col[c], base[c])
            cells += [tables.cell(by_col[c], "kp"), verdict]
        lines.append(cells + [tables.mean_minutes(by_col[cols[0]])])
    return tables.markdown(note, header + ["train min"], lines)


def main(argv=None, parser=None):
    """The study of ``argv`` (``parser``: the script's, for its help): the steps of the script's
    help, each skipped when its output exists; the table in ``<output>/data_study.md``, printed
    with the data counts and a one-line summary."""
    args = parse_args(argv, parser)
    out_root, record = runner.study_dirs(args)
    base_opts = ["TEST.EVAL_PERIOD", "0", "DATASETS.TEST", f"('{args.val}',)"]
    det = {
        d: args.detections.get(d)
        or runner.detect_persons(
            args.detector, d, out_root / "detections" / f"{d}.json", "data_study",
            args.jobs,
        )  # fmt: skip
        for d in needed_detections(args)
    }
    # (the boxes above first, once: every seed's process reads them)
    jobs.run_seeds_in_parallel(SCRIPT, argv, args, out_root, "data_study")
    cols = {"gt": "GT boxes", "det": "detector boxes"}
    by_row, pseudo_notes = {}, []
    for row in args.rows:
        for seed in args.seeds:
            pseudo = None
            if row == "pseudo":
                base_dir = out_root / "baseline" / f"seed{seed}"
                pseudo, ap, line = pseudo_labels(args, out_root, base_dir, seed, det)
                records.save(record, out_root, base_dir, pseudo, pseudo.with_suffix(".txt"))
                pseudo_notes.append(
                    f"seed {seed}: baseline kp AP {tables.fmt(ap)} on {args.unlabelled}'s hidden"
                    f" labels; {line}"
                )
            opts = [*base_opts, *variant_opts(row, args, det, pseudo), *args.opts]
            run_dir = out_root / row / f"seed{seed}"
            # its weights: for its evaluations, and the baseline's for the pseudo-labels
            needs = not all((run_dir / "eval" / f"{args.val}_{box}" / f"results_{args.val}.json")
                            .is_file() for box in cols) or (
                row == "baseline" and "pseudo" in args.rows
                and not (out_root / "pseudo_labels" / f"seed{seed}.json").is_file())  # fmt: skip
            r = runner.run_one(row, RECIPE, SimpleNamespace(max_iter=args.max_iter, opts=opts),
                               out_root, seed, needs)  # fmt: skip
            for box, label in cols.items():
                weights = ["MODEL.WEIGHTS", str(run_dir / "model_final.pth")]
                eval_dir = run_dir / "eval" / f"{args.val}_{box}"
                res = runner.evaluate_run(
                    run_dir / "config.yaml", eval_dir, args.val,
                    [*weights, *runner.box_opts(box, det[args.val])],
                    f"{row} seed {seed} on {args.val}, {label}", True, "data_study",
                )  # fmt: skip
                by_row.setdefault(row, {}).setdefault(label, []).append(
                    {"kp": res["keypoints"]["AP"], "kp75": res["keypoints"]["AP75"],
                     "train_min": r["train_min"], "dataset": args.val,
                     "results": str(runner.results_file(eval_dir, args.val))}  # fmt: skip
                )
            records.save(record, out_root, run_dir)

    if args.seeds_only:
        return
    budget = f"SOLVER.MAX_ITER {args.max_iter}" if args.max_iter else "the recipe's schedule"
    note = (
        f"Data study: {RECIPE.stem}, {budget}, SEED {', '.join(map(str, args.seeds))}, evaluated"
        f" on {args.val}"
        + (f", overrides {' '.join(args.opts)}" if args.opts else "")
        + f"; boxes: {_box_sources(args, det)}; {cpu_model()}."
    )
    rows = [(ROWS[r], by_row[r]) for r in args.rows]
    notes = [f"pseudo-labels {n}" for n in pseudo_notes] + data_counts(args, det, out_root)
    text = table(rows, list(cols.values()), note) + "".join(f"\n- {n}" for n in notes) + "\n"
    write_text_atomic(out_root / "data_study.md", text)
    print(text)
    sections = [(f"{args.val}, {label}", {row: by_row[row][label] for row in args.rows})
                for label in cols.values()]  # fmt: skip
    write_text_atomic(
        out_root / "effects.md", effects.effects_document(effects.DATA_STUDY, sections)
    )
    print(f"data_study: effects the reports claim in {out_root / 'effects.md'}", flush=True)
    print(
        "data_study: "
        + "; ".join(
            f"{label} " + ", ".join(f"{c} {tables.cell(by[c], 'kp')}" for c in cols.values())
            for label, by in rows
        )
        + f" ({budget}, seeds {', '.join(map(str, args.seeds))})"
    )

