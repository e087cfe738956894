"""The R-CNN ablation (tools/ablate.py): a list of configs, by default every
configs/Synthetic/ablation config in the study's order, trained with one budget and seeds by the
runner, and their table of box/mask/keypoint AP and cost."""

from pathlib import Path

from ..engine.cli import ConfigError
from ..env import cpu_model
from ..shared.atomic_io import write_text_atomic
from ..shared.paths import REPO_ROOT as ROOT
from . import effects, records
from .jobs import add_jobs_argument, parse_overrides, run_seeds_in_parallel
from .runner import add_overrides, run_one, study_dirs, study_parser
from .tables import cell, markdown, versus_first

__all__ = ["ABLATION_DIR", "ORDER", "build_parser", "main", "parse_args", "resolve", "table"]

SCRIPT = ROOT / "tools" / "ablate.py"  # (run once per share of the seeds with --jobs)
ABLATION_DIR = ROOT / "configs" / "Synthetic" / "ablation"
# The study's order: the baseline, each method added, then the two design comparisons.
ORDER = [
    "plain",
    "dcn_rb",
    "dcn_rb_h",
    "offset",
    "dcn_rb_h_offset",
    "balanced",
    "kp_only",
    "single_scale",
]


def build_parser(doc=None):
    """The study's options; ``doc``: the help's description (the script's docstring)."""
    parser = study_parser(doc, "output/ablation", seeds=[42])
    parser.add_argument(
        "--configs",
        nargs="+",
        help="names in configs/Synthetic/ablation or yaml paths (default: all)",
    )
    add_jobs_argument(parser)
    return add_overrides(parser)


def parse_args(argv=None, parser=None):
    return parse_overrides(parser or build_parser(), argv)


def resolve(name):
    """(row name, config path) of a --configs entry: a yaml path, or a name in ABLATION_DIR."""
    path = Path(name)
    if path.suffix == ".yaml":
        if not path.exists():
            raise ConfigError(f"config file {name} does not exist")
        return path.stem, path
    path = ABLATION_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in ABLATION_DIR.glob("*.yaml"))
        raise ConfigError(f"no config {name!r} in {ABLATION_DIR}; known: {known}")
    return name, path


def table(groups, note):
    """``groups``: [(name, [runner row per seed])]; with several seeds, a last column compares
    each config's keypoint AP with the first's against the seed spread."""
    several = len(groups[0][1]) > 1
    header = ["config", "box AP", "mask AP", "kp AP", "kp AP50", "kp AP75", "train min",
              "infer ms/img"] + ["kp AP vs first, exceeds seed spread"] * several  # fmt: skip
    rows = []
    for name, runs in groups:
        train = sum(r["train_min"] for r in runs) / len(runs)
        infer = sum(r["infer_ms"] for r in runs) / len(runs)
        cells = [name, *(cell(runs, k) for k in ("box", "mask", "kp", "kp50", "kp75")),
                 f"{train:.1f}", f"{infer:.0f}"]  # fmt: skip
        rows.append(cells + [versus_first(runs, groups[0][1])] * several)
    return markdown(note, header, rows)


def main(argv=None, parser=None):
    """The study of ``argv`` (``parser``: the script's, for its help): the runs, then the table
    in ``<output>/ablation.md``, printed with a one-line summary."""
    args = parse_args(argv, parser)
    names = args.configs or [n for n in ORDER if (ABLATION_DIR / f"{n}.yaml").exists()]
    configs = [resolve(n) for n in names]
    out_root, record = study_dirs(args)
    run_seeds_in_parallel(SCRIPT, argv, args, out_root)
    groups = []
    for name, path in configs:
        runs = []
        for seed in args.seeds:
            runs.append(run_one(name, path, args, out_root, seed))
            records.save(record, out_root, out_root / name / f"seed{seed}")
        groups.append((name, runs))
    if args.seeds_only:
        return
    budget = f"SOLVER.MAX_ITER {args.max_iter}" if args.max_iter else "each config's own schedule"
    seeds = ", ".join(str(s) for s in args.seeds)
    note = (
        f"Ablation on {groups[0][1][0]['dataset']}: {budget}, SEED {seeds}"
        + (f", overrides {' '.join(args.opts)}" if args.opts else "")
        + f"; {cpu_model()}."
    )
    text = table(groups, note)
    write_text_atomic(out_root / "ablation.md", text)
    print(text)
    effects_md = effects.effects_document(
        effects.RCNN_ABLATION, [(f"On {groups[0][1][0]['dataset']}", dict(groups))]
    )
    write_text_atomic(out_root / "effects.md", effects_md)
    print(f"ablate: effects the reports claim in {out_root / 'effects.md'}", flush=True)
    print(
        "ablate: "
        + "; ".join(
            f"{name} kp AP {cell(runs, 'kp')} AP75 {cell(runs, 'kp75')} box {cell(runs, 'box')}"
            for name, runs in groups
        )
        + f" ({budget}, seeds {seeds})"
    )
