#!/usr/bin/env python
"""Train a list of configs with one budget and one or more seeds and tabulate their COCO AP and
cost.

    python tools/ablate.py                      # every configs/Synthetic/ablation/*.yaml
    python tools/ablate.py --seeds 42 43        # two seeds per config
    python tools/ablate.py --configs plain offset --max-iter 300 -- TEST.EVAL_PERIOD 0

Each config is trained with tools/train_net.py (projects/TopDown/train_net.py for the configs of
the top-down project, e.g. ``--configs projects/TopDown/configs/Synthetic/*_basic.yaml``) once
per seed into ``<output>/<name>/seed<seed>``
(SEED set, the same SOLVER.MAX_ITER/STEPS when --max-iter is given, any further overrides after
``--``), evaluated on its DATASETS.TEST at the end, and the table (box/mask/keypoint AP, keypoint
AP50/AP75, training minutes, inference ms/image from detectron2's inference log) is written to
``<output>/ablation.md`` and printed, with a last line to paste into a note. With several seeds
each AP cell gives the mean and every seed's value, and a last column says by how much each
config's keypoint AP differs from the first config's and whether that difference exceeds the seed
spread (the larger of the two configs' max - min over seeds): a smaller difference is noise.

``--jobs N``: the seeds shared among N processes at once (one seed's runs per process, the CPU's
threads divided among them); the table once all have finished.

Killed half-way? Run the same command again: finished configs are read back from their results
files, an interrupted one resumes from its last checkpoint (train_net --resume; its training
minutes then count the resumed part only). A different budget needs a different --output.
"""

import argparse
import os
from pathlib import Path

from multitask_pose.engine.cli import ConfigError, argument_parser, tool_errors
from multitask_pose.shared.atomic_io import write_text_atomic
from multitask_pose.shared.paths import REPO_ROOT as ROOT
from multitask_pose.studies.jobs import add_jobs_argument, parse_overrides, run_seeds_in_parallel
from multitask_pose.studies.runner import run_one
from multitask_pose.studies.tables import cell, table

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


def parse_args(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--configs",
        nargs="+",
        help="names in configs/Synthetic/ablation or yaml paths (default: all)",
    )
    parser.add_argument(
        "--output", default="output/ablation", help="one sub-folder per config, and ablation.md"
    )
    parser.add_argument(
        "--max-iter", type=int, help="SOLVER.MAX_ITER for every config (steps scaled to it)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="SEED of each run")
    add_jobs_argument(parser)
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides for every run, after --"
    )
    return parse_overrides(parser, argv)


def resolve(name):
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


def main(argv=None):
    args = parse_args(argv)
    names = args.configs or [n for n in ORDER if (ABLATION_DIR / f"{n}.yaml").exists()]
    configs = [resolve(n) for n in names]
    out_root = (ROOT / args.output) if not os.path.isabs(args.output) else Path(args.output)
    run_seeds_in_parallel(Path(__file__), argv, args, out_root)
    groups = [
        (name, [run_one(name, path, args, out_root, seed) for seed in args.seeds])
        for name, path in configs
    ]
    if args.seeds_only:
        return
    from multitask_pose.env import cpu_model

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
    print(
        "ablate: "
        + "; ".join(
            f"{name} kp AP {cell(runs, 'kp')} AP75 {cell(runs, 'kp75')} box {cell(runs, 'box')}"
            for name, runs in groups
        )
        + f" ({budget}, seeds {seeds})"
    )


if __name__ == "__main__":
    with tool_errors("ablate"):
        main()
