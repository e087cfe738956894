"""The top-down methods study (projects/TopDown/study.py): the report models (:data:`MODELS`),
HRNet + PoseFix and heatmap ensembles (:func:`ensembles`) trained with one budget and seeds,
evaluated on ground-truth and detector boxes of each dataset (:func:`settings`), a cued model
cued as in training (:func:`hint_opts`), and the table with each row's difference from HRNet
against the seed spread."""

import argparse
from types import SimpleNamespace

from ..env import cpu_model
from ..shared.atomic_io import write_text_atomic
from . import effects, jobs, records, runner, tables

__all__ = ["DATASETS", "HINTED", "HINTPOSE_ENSEMBLE", "MODELS", "POSEFIX", "build_parser",
           "ensembles", "evaluated", "hint_opts", "main", "parse_args", "settings",
           "table"]  # fmt: skip

CONFIGS = runner.TOPDOWN / "configs" / "Synthetic"
# Study name -> (the recipe's config stem, the table's label).
MODELS = {
    "hrnet": ("hrnet_w18_small_synth_basic", "HRNet-W18-small"),
    "pcr": ("pcr_hrnet_w18_small_synth_basic", "PCR-HRNet-W18-small"),
    "hintpose": ("hintpose_w18_small_synth_basic", "HintPose (cue + 3 hops)"),
    "hintpose_cue_only": ("hintpose_w18_small_synth_basic_cue_only", "HintPose cue only"),
    "hintpose_refine_only": (
        "hintpose_w18_small_synth_basic_refine_only",
        "HintPose refinement only",
    ),
}
POSEFIX = ("posefix_hrnet_w18_small_synth_basic", "HRNet + PoseFix")
# Models with an instance cue: their hint source differs by box source (module docstring).
HINTED = {"hintpose", "hintpose_cue_only"}
# The HintPose report's ensemble (004 footnote 2: the heatmaps of two models of each kind, cue and
# refinement, cue only, refinement only, averaged): here one model of each kind of the same seed,
# so that the seeds give the row its spread.
HINTPOSE_ENSEMBLE = ["hintpose", "hintpose_cue_only", "hintpose_refine_only"]
DATASETS = ["synth_people_basic_val", "synth_people_crowd_val"]


def build_parser(doc=None):
    """The study's options; ``doc``: the help's description (the script's docstring)."""
    parser = runner.study_parser(doc, "output/study_topdown_basic")
    parser.add_argument(
        "--detector",
        help="a trained multitask R-CNN: a finished run's folder (config.yaml and "
        "model_final.pth), e.g. make demo's, or a model zoo entry "
        "(zoo://multitask_rcnn_R_18_FPN_synthpeople); its boxes give the detector-box columns",
    )
    parser.add_argument(
        "--no-detector",
        action="store_true",
        help="ground-truth boxes only (no detector-box columns)",
    )
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="evaluation datasets")
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), choices=list(MODELS), help="trained models"
    )
    parser.add_argument(
        "--posefix", action=argparse.BooleanOptionalAction, default=True, help="the PoseFix row"
    )
    parser.add_argument(
        "--ensemble",
        nargs="*",
        default=["hrnet", "pcr", "hintpose_refine_only"],
        help="members of the ensemble row (none: no ensemble row)",
    )
    parser.add_argument(
        "--hintpose-ensemble",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the HintPose report's ensemble row: one model of each HintPose kind (cue and"
        " refinement, cue only, refinement only) of the same seed, heatmaps averaged",
    )
    return runner.add_overrides(parser)


def parse_args(argv=None, parser=None):
    """The options of ``argv``, checked (``parser``: the script's, default :func:`build_parser`)."""
    parser = parser or build_parser()
    args = jobs.parse_overrides(parser, argv)
    if bool(args.detector) == args.no_detector:
        parser.error(
            "give --detector RUN_DIR or zoo://NAME (a trained multitask R-CNN) or --no-detector"
        )
    if args.detector:
        jobs.check_run_dir(parser, "--detector", args.detector)
    hinted = [m for m in args.models if m in HINTED]
    if hinted and "hrnet" not in args.models:
        parser.error(
            f"{hinted} are cued by HRNet's keypoints on ground-truth boxes: add hrnet to --models"
        )
    if args.posefix and "hrnet" not in args.models:
        parser.error(
            "the PoseFix row refines HRNet's results: add hrnet to --models or --no-posefix"
        )
    if args.ensemble:
        missing = [m for m in args.ensemble if m not in args.models]
        if missing:
            parser.error(f"--ensemble members {missing} are not in --models {args.models}")
        if len(args.ensemble) < 2:
            parser.error("--ensemble needs two members or more")
    missing = [m for m in HINTPOSE_ENSEMBLE if m not in args.models]
    if args.hintpose_ensemble and missing:
        parser.error(
            f"the HintPose ensemble row needs {missing} in --models: add them or give"
            " --no-hintpose-ensemble"
        )
    return args


def ensembles(args):
    """(row key, table label, members) of each ensemble row: ``--ensemble``'s, then the HintPose
    report's (``--hintpose-ensemble``)."""
    rows = []
    if args.ensemble:
        label = "ensemble: " + " + ".join(MODELS[m][1] for m in args.ensemble)
        rows.append(("ensemble", label, list(args.ensemble)))
    if args.hintpose_ensemble:
        rows.append(("hintpose_ensemble", "HintPose ensemble: one model of each kind",
                     HINTPOSE_ENSEMBLE))  # fmt: skip
    return rows


def with_hrnet_results(train_args, runs, seed, key):
    """``train_args`` with ``key`` set to the results file of HRNet's own (training's final)
    evaluation of the same seed."""
    hrnet_dir, hrnet_row = runs["hrnet"][seed]
    own = runner.results_file(hrnet_dir, hrnet_row["dataset"])
    return SimpleNamespace(max_iter=train_args.max_iter, opts=[*train_args.opts, key, str(own)])


def hint_opts(results, seed, name, box):
    """The hint overrides of a cued model's evaluation: HRNet's results of the same seed and
    setting on GT boxes, the detector box's own keypoints on detector boxes."""
    hint_file = str(results["hrnet", seed, name]) if box == "gt" else ""
    return ["TEST.TOPDOWN.HINT.SOURCE", "keypoints", "TEST.TOPDOWN.HINT.FILE", hint_file]


def settings(args):
    """(setting name, dataset, box source) of every evaluation column, in table order."""
    boxes = ["gt"] + ([] if args.no_detector else ["det"])
    return [(f"{d}_{b}", d, b) for d in args.datasets for b in boxes]


def row(res, train_min=float("nan"), eval_dir=None, dataset=None):
    """One seed's cell: its APs and training minutes; with ``eval_dir`` and ``dataset``, the
    evaluation's results file (the effects tables' error analysis)."""
    out = {
        "box": res.get("bbox", {}).get("AP"),
        "kp": res["keypoints"]["AP"],
        "kp75": res["keypoints"]["AP75"],
        "train_min": train_min,
    }
    if eval_dir is not None:
        out.update(results=str(runner.results_file(eval_dir, dataset)), dataset=dataset)
    return out


def table(rows, cols, note):
    """``rows``: [(label, {setting: [row per seed]})]; ``cols``: setting names. The first row is
    the reference of the last columns, on the first setting."""
    first = cols[0]
    header = ["model", *(f"kp AP {c}" for c in cols), f"kp AP75 {first}",
              f"vs {rows[0][0]} on {first} (exceeds seed spread?)", "train min"]  # fmt: skip
    base = rows[0][1][first]
    lines = []
    for label, by_col in rows:
        runs = by_col[first]
        verdict = "-" if runs is base else tables.versus_first(runs, base)
        lines.append([label, *(tables.cell(by_col[c], "kp") for c in cols),
                      tables.cell(runs, "kp75"), verdict, tables.mean_minutes(runs)])  # fmt: skip
    return tables.markdown(note, header, lines)


def evaluated(run_dir, cols) -> bool:
    """Whether the run in ``run_dir`` has been evaluated in every setting of ``cols``."""
    return all((run_dir / "eval" / n / f"results_{d}.json").is_file() for n, d, _ in cols)


def main(argv=None, parser=None):
    """The study of ``argv`` (``parser``: the script's, for its help): the steps of the script's
    help, each skipped when its output exists; the table in ``<output>/study.md``, printed with
    a one-line summary."""
    args = parse_args(argv, parser)
    out_root, record = runner.study_dirs(args)
    cols = settings(args)
    train_args = SimpleNamespace(max_iter=args.max_iter, opts=["TEST.EVAL_PERIOD", "0", *args.opts])
    models = sorted(args.models, key=lambda m: m != "hrnet")  # HRNet's results cue HintPose

    # 1. detector boxes (first: each model is evaluated on them after its training)
    det_files = {}
    if not args.no_detector:
        det_files = {
            d: runner.detect_persons(
                args.detector, d, out_root / "detections" / f"{d}.json", "study"
            )
            for d in args.datasets
        }

    # 2. seed by seed, each model trained and evaluated in every setting (then recorded whole),
    # PoseFix on HRNet's results, the ensembles of the seed's models
    runs = {}  # model -> seed -> (run dir, ablate row)
    results = {}  # (model, seed, setting) -> results file, for PoseFix's input and the hints
    cells = {}  # row key -> setting -> [row per seed]
    ens_rows = ensembles(args)
    for seed in args.seeds:
        ens_dirs = {key: out_root / ("ensemble_" + "+".join(names)) / f"seed{seed}"
                    for key, _, names in ens_rows}  # fmt: skip
        for model in models:
            stem = MODELS[model][0]
            run_dir = out_root / stem / f"seed{seed}"
            seed_args = train_args
            if model in HINTED:  # its training's final evaluation, on GT boxes, cued by HRNet's
                seed_args = with_hrnet_results(train_args, runs, seed, "TEST.TOPDOWN.HINT.FILE")
            # its weights are loaded by its evaluations and by the ensembles it is in
            needs = not evaluated(run_dir, cols) or any(
                model in names and not evaluated(ens_dirs[key], cols) for key, _, names in ens_rows
            )
            r = runner.run_one(stem, CONFIGS / f"{stem}.yaml", seed_args, out_root, seed, needs)
            runs.setdefault(model, {})[seed] = (run_dir, r)
            for name, dataset, box in cols:
                opts = ["MODEL.WEIGHTS", str(run_dir / "model_final.pth")]
                opts += runner.box_opts(box, det_files.get(dataset))
                if model in HINTED:
                    opts += hint_opts(results, seed, name, box)
                eval_dir = run_dir / "eval" / name
                what = f"{model} seed {seed} {name}"
                res = runner.evaluate_run(
                    run_dir / "config.yaml", eval_dir, dataset, opts, what, True, "study"
                )
                results[model, seed, name] = runner.results_file(eval_dir, dataset)
                cells.setdefault(model, {}).setdefault(name, []).append(
                    row(res, r["train_min"], eval_dir, dataset)
                )
            # HRNet's results are read by later runs: its results files are recorded too
            records.save(record, out_root, run_dir, inputs=model == "hrnet")

        if args.posefix:
            stem = POSEFIX[0]
            # The training's final evaluation refines HRNet's results of its own evaluation.
            seed_args = with_hrnet_results(train_args, runs, seed, "TEST.TOPDOWN.DET_FILE")
            run_dir = out_root / stem / f"seed{seed}"
            r = runner.run_one(stem, CONFIGS / f"{stem}.yaml", seed_args, out_root, seed,
                               not evaluated(run_dir, cols))  # fmt: skip
            for name, dataset, _ in cols:
                opts = ["MODEL.WEIGHTS", str(run_dir / "model_final.pth")]
                opts += runner.box_opts("det", results["hrnet", seed, name])
                res = runner.evaluate_run(
                    run_dir / "config.yaml", run_dir / "eval" / name, dataset, opts,
                    f"posefix seed {seed} {name}", topdown=True, prefix="study",
                )  # fmt: skip
                cells.setdefault("posefix", {}).setdefault(name, []).append(
                    row(res, r["train_min"], run_dir / "eval" / name, dataset)
                )
            records.save(record, out_root, run_dir)

        for key, _, names in ens_rows:
            cued = [m for m in names if m in HINTED]
            members = [runs[m][seed][0] for m in names]
            # The ensemble renders a cued member's cue (its config is the base), for all of them.
            base = runs[cued[0]][seed][0] if cued else members[0]
            ens_dir = ens_dirs[key]
            ens_opts = [
                "MODEL.TOPDOWN.POSE_NET",
                "HeatmapEnsemble",
                "MODEL.ENSEMBLE.CONFIGS",
                str([str(m / "config.yaml") for m in members]),
                "MODEL.ENSEMBLE.WEIGHTS",
                str([str(m / "model_final.pth") for m in members]),
                "MODEL.WEIGHTS",
                "",
            ]
            for name, dataset, box in cols:
                opts = ens_opts + runner.box_opts(box, det_files.get(dataset))
                if cued:
                    opts += hint_opts(results, seed, name, box)
                res = runner.evaluate_run(
                    base / "config.yaml", ens_dir / "eval" / name, dataset, opts,
                    f"{key} seed {seed} {name}", topdown=True, prefix="study",
                )  # fmt: skip
                cells.setdefault(key, {}).setdefault(name, []).append(
                    row(res, eval_dir=ens_dir / "eval" / name, dataset=dataset)
                )
            records.save(record, out_root, ens_dir)

    table_rows = [(MODELS[m][1], cells[m]) for m in args.models]
    if args.posefix:
        table_rows.append((POSEFIX[1], cells["posefix"]))
    table_rows += [(label, cells[key]) for key, label, _ in ens_rows]
    by_key = {k: cells[k] for k in [*args.models, *(["posefix"] * args.posefix),
                                    *(key for key, _, _ in ens_rows)]}  # fmt: skip

    # 6. the table
    budget = f"SOLVER.MAX_ITER {args.max_iter}" if args.max_iter else "each recipe's own schedule"
    det_ap = ""
    if det_files:
        base = table_rows[0][1]
        det_ap = "; detector box AP " + ", ".join(
            f"{d} {tables.cell(base[f'{d}_det'], 'box')}" for d in args.datasets
        )
        det_ap += f" ({jobs.run_files(args.detector)[1]})"
    note = (
        f"Top-down study: {budget}, SEED {', '.join(map(str, args.seeds))}"
        + (f", overrides {' '.join(args.opts)}" if args.opts else "")
        + f"{det_ap}; {cpu_model()}."
    )
    names = [c[0] for c in cols]
    text = table(table_rows, names, note)
    write_text_atomic(out_root / "study.md", text)
    print(text)
    sections = [
        (f"{dataset}, {'ground-truth' if box == 'gt' else 'detector'} boxes",
         {key: by_col[name] for key, by_col in by_key.items()})
        for name, dataset, box in cols
    ]  # fmt: skip
    write_text_atomic(
        out_root / "effects.md", effects.effects_document(effects.TOPDOWN_METHODS, sections)
    )
    print(f"study: effects the reports claim in {out_root / 'effects.md'}", flush=True)
    print(
        "study: "
        + "; ".join(
            f"{label} " + ", ".join(f"{c} {tables.cell(by[c], 'kp')}" for c in names)
            for label, by in table_rows
        )
        + f" ({budget}, seeds {', '.join(map(str, args.seeds))})"
    )

