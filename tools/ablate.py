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
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from multitask_pose.engine.cli import ConfigError, UserError, argument_parser, tool_errors
from multitask_pose.shared.atomic_io import write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
ABLATION_DIR = ROOT / "configs" / "Synthetic" / "ablation"
TOPDOWN = ROOT / "projects" / "TopDown"
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


def parse_overrides(parser, argv=None):
    """``parser.parse_args`` with the config overrides after ``--`` (``opts``) checked to come
    in KEY VALUE pairs; shared by the studies built on this runner."""
    args = parser.parse_args(argv)
    if args.opts and args.opts[0] == "--":
        args.opts = args.opts[1:]
    if len(args.opts) % 2:
        parser.error(f"overrides come in KEY VALUE pairs, got {args.opts}")
    return args


def add_jobs_argument(parser):
    """``--jobs``, shared by the studies built on this runner (see ``run_seeds_in_parallel``)."""
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes to share the seeds among (each seed's trainings and evaluations in one"
        " process, the CPU's threads divided among them); the table is made after all finish",
    )
    # set in the processes run_seeds_in_parallel starts: their runs only, no table
    parser.add_argument("--seeds-only", action="store_true", help=argparse.SUPPRESS)


def child_argv(argv, args):
    """``argv`` (the command's arguments) without its --seeds, --jobs and the overrides after
    ``--``: what run_seeds_in_parallel's processes share (it adds their seeds, the overrides)."""
    raw = list(sys.argv[1:] if argv is None else argv)
    if "--" in raw:
        raw = raw[: raw.index("--")]
    elif args.opts:
        raw = raw[: len(raw) - len(args.opts)]
    kept, skipping = [], False
    for tok in raw:
        if tok.startswith("--"):
            name = tok.split("=", 1)[0]
            skipping = name in ("--seeds", "--jobs") and "=" not in tok  # (its values follow)
            if name in ("--seeds", "--jobs", "--seeds-only"):
                continue
        elif skipping:
            continue
        kept.append(tok)
    return kept


def divided_threads(processes):
    """This process's environment for one of ``processes`` processes sharing the CPU: its
    OMP/MKL_NUM_THREADS the CPU count / ``processes``, unless OMP_NUM_THREADS is set (the
    user's choice stands)."""
    env = dict(os.environ)
    threads = env.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // processes))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=env.get("MKL_NUM_THREADS", threads))
    return env


def run_seeds_in_parallel(script, argv, args, out_root, prefix="ablate"):
    """With ``--jobs N`` (N > 1) and several seeds, run ``script`` with the same arguments once
    per share of the seeds (seed i in share i mod N) in N processes at once, each with
    ``--seeds-only`` (its runs, no table) and, unless OMP_NUM_THREADS is set, the CPU count / N
    threads; their lines are printed as they come, prefixed with their seeds, and kept in
    ``<out_root>/jobs/seeds<...>.log``. Returns when all have finished: the caller's own pass
    then finds every run done and makes the table. A process that fails stops the others and
    the study, naming its log; so does an interrupt."""
    import threading

    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    shares = [args.seeds[i :: args.jobs] for i in range(min(args.jobs, len(args.seeds)))]
    if len(shares) < 2 or args.seeds_only:
        return
    env = divided_threads(len(shares))
    threads = env["OMP_NUM_THREADS"]
    base = [sys.executable, str(script), *child_argv(argv, args)]
    (out_root / "jobs").mkdir(parents=True, exist_ok=True)
    print(
        f"{prefix}: seeds {' | '.join(' '.join(map(str, s)) for s in shares)} in {len(shares)}"
        f" processes, {threads} thread(s) each; logs in {out_root / 'jobs'}",
        flush=True,
    )
    procs, pumps = [], []
    try:
        for share in shares:
            tag = "seeds" + "_".join(map(str, share))
            cmd = [*base, "--seeds", *map(str, share), "--jobs", "1", "--seeds-only",
                   "--", *args.opts]  # fmt: skip
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            log = out_root / "jobs" / f"{tag}.log"

            def pump(proc=proc, log=log, tag=tag):
                with open(log, "a") as f:
                    for line in proc.stdout:
                        f.write(line)
                        f.flush()
                        print(f"[{tag}] {line}", end="", flush=True)

            procs.append((proc, log))
            pumps.append(threading.Thread(target=pump, daemon=True))
            pumps[-1].start()
        # until all have ended or one has failed
        while None in (codes := [p.poll() for p, _ in procs]) and not any(codes):
            time.sleep(1)
        failed = [(p, log) for p, log in procs if p.returncode]
        if failed:
            p, log = failed[0]
            raise SystemExit(f"{prefix}: a seed process failed (exit {p.returncode}); see {log}")
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.terminate()
        for p, _ in procs:
            p.wait()
        for t in pumps:
            t.join(timeout=5)


def check_run_dir(parser, flag, path):
    """A finished training run's folder, as the studies take them: config.yaml and
    model_final.pth, or a parser error naming ``flag``."""
    for f in ("config.yaml", "model_final.pth"):
        if not (Path(path) / f).is_file():
            parser.error(f"{flag} {path}: no {f} there (a finished training run?)")


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


def is_topdown(config_path) -> bool:
    """A config of the top-down project (under projects/TopDown): trained by its train_net.py."""
    return TOPDOWN in Path(config_path).resolve().parents


def train_script(config_path) -> Path:
    return TOPDOWN / "train_net.py" if is_topdown(config_path) else ROOT / "tools" / "train_net.py"


def budget_opts(config_path, max_iter):
    """SOLVER.MAX_ITER and STEPS for a common budget, the steps at the config's own fractions."""
    if not max_iter:
        return []
    if is_topdown(config_path):
        sys.path.insert(0, str(TOPDOWN))
        from topdown import get_topdown_cfg

        cfg = get_topdown_cfg()
    else:
        import multitask_pose

        cfg = multitask_pose.get_multitask_cfg()
    cfg.merge_from_file(str(config_path))
    # Each step strictly inside the schedule, as detectron2's scheduler requires.
    steps = tuple(
        sorted(
            {
                min(max(1, round(s * max_iter / cfg.SOLVER.MAX_ITER)), max_iter - 1)
                for s in cfg.SOLVER.STEPS
            }
        )
    )
    warmup = min(cfg.SOLVER.WARMUP_ITERS, max_iter // 4)
    return [
        "SOLVER.MAX_ITER",
        str(max_iter),
        "SOLVER.STEPS",
        str(steps),
        "SOLVER.WARMUP_ITERS",
        str(warmup),
    ]


def parse_log(log_text, max_iter):
    """Training seconds (detectron2's timed seconds per iteration, which leave out the first
    iterations and the evaluations, times all iterations) and inference ms/image, from log.txt."""
    train = re.findall(
        r"Overall training speed: \d+ iterations in [\d:]+ \(([\d.]+) s / it\)", log_text
    )
    infer = re.findall(
        r"Total inference pure compute time: .*?\(([\d.]+) s / iter per device", log_text
    )
    seconds = float(train[-1]) * max_iter if train else float("nan")
    return seconds, 1000 * float(infer[-1]) if infer else float("nan")


def run_one(name, path, args, out_root, seed):
    out = out_root / name / f"seed{seed}"
    done = out / "ablation_row.json"
    name_s = f"{name} seed {seed}"
    if done.exists():
        print(f"ablate: {name_s}: finished earlier, reading {done}", flush=True)
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    opts = budget_opts(path, args.max_iter) + [
        "SEED",
        str(seed),
        "OUTPUT_DIR",
        str(out),
        *args.opts,
    ]
    resume = (out / "last_checkpoint").exists()
    cmd = [
        sys.executable,
        str(train_script(path)),
        "--config-file",
        str(path),
        *(["--resume"] if resume else []),
        *opts,
    ]
    print(
        f"ablate: {name_s}: training{' (resuming)' if resume else ''}; log in {out / 'log.txt'}",
        flush=True,
    )
    start = time.perf_counter()
    with open(out / "ablate_stdout.txt", "a") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(
            f"ablate: {name_s} failed (exit {proc.returncode}); see {out / 'ablate_stdout.txt'}"
        )
    results = sorted(out.glob("results_*.json"))
    if not results:
        raise SystemExit(
            f"ablate: {name_s} wrote no results file; "
            "is DATASETS.TEST empty or TEST.EVAL_PERIOD off?"
        )
    res = json.loads(results[0].read_text())
    max_iter = int(
        re.search(r"^  MAX_ITER: (\d+)", (out / "config.yaml").read_text(), re.M).group(1)
    )
    train_s, infer_ms = parse_log((out / "log.txt").read_text(), max_iter)
    row = {
        "name": name,
        "seed": seed,
        "config": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
        "dataset": results[0].stem[len("results_") :],
        "box": res.get("bbox", {}).get("AP"),
        "mask": res.get("segm", {}).get("AP"),
        # (None for a model without keypoints, e.g. a person detector: "-" in the table)
        "kp": res.get("keypoints", {}).get("AP"),
        "kp50": res.get("keypoints", {}).get("AP50"),
        "kp75": res.get("keypoints", {}).get("AP75"),
        "train_min": train_s / 60,
        "infer_ms": infer_ms,
        "wall_min": (time.perf_counter() - start) / 60,
    }
    write_json_atomic(done, row, indent=1)
    print(
        f"ablate: {name_s}: box AP {fmt(row['box'])}, keypoint AP {fmt(row['kp'])} "
        f"in {row['train_min']:.1f} min",
        flush=True,
    )
    return row


# ---- helpers of the studies built on this runner (projects/TopDown/study.py,
# tools/detector_study.py): each step writes one output and is skipped when it exists.


def run_logged(cmd, log, what, prefix="ablate", env=None):
    """Run ``cmd`` from the repository root (``env``: its environment, default this one's), its
    output appended to ``log``; exit naming ``what`` and the log if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f"{prefix}: {what} failed (exit {proc.returncode}); see {log}")


def detect_persons(detector, dataset, path, prefix="ablate", processes=1):
    """tools/detect_persons.py with a trained detector's folder (config.yaml, model_final.pth)
    on ``dataset`` into ``path`` (kept if it exists; a cut run resumes), its images shared among
    ``processes`` (its --num-gpus: CPU processes without CUDA; the CPU's threads divided among
    them unless OMP_NUM_THREADS is set); returns ``path``."""
    path = Path(path)
    if not path.exists():
        det = Path(detector).resolve()
        print(f"{prefix}: detecting persons in {dataset} with {det}", flush=True)
        cmd = [
            sys.executable,
            str(ROOT / "tools" / "detect_persons.py"),
            "--config-file",
            str(det / "config.yaml"),
            "--dataset",
            dataset,
            "--output",
            str(path),
            "--resume",
            "--quiet",
            "--num-gpus",
            str(processes),
            "MODEL.WEIGHTS",
            str(det / "model_final.pth"),
        ]
        env = divided_threads(processes) if processes > 1 else None
        run_logged(cmd, path.with_suffix(".log"), f"detect_persons on {dataset}", prefix, env)
    return path


def box_opts(box, det_file):
    """The top-down overrides of a box source: "gt", or a detection file for "det"."""
    if box == "gt":
        return ["TEST.TOPDOWN.BOX_SOURCE", "gt"]
    return ["TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE", str(det_file)]


def results_file(eval_dir, dataset):
    """The COCO results json an evaluation in ``eval_dir`` wrote for ``dataset``."""
    return Path(eval_dir) / "inference" / dataset / "coco_instances_results.json"


def evaluate_run(config, eval_dir, dataset, opts, what, topdown, prefix="ablate"):
    """``--eval-only`` of ``config`` (a run's config.yaml; ``topdown``: with the top-down
    project's train_net.py) on ``dataset`` into ``eval_dir``, kept if done; the results dict."""
    eval_dir = Path(eval_dir)
    done = eval_dir / f"results_{dataset}.json"
    if not done.exists():
        print(f"{prefix}: evaluating {what}", flush=True)
        script = TOPDOWN / "train_net.py" if topdown else ROOT / "tools" / "train_net.py"
        cmd = [
            sys.executable,
            str(script),
            "--config-file",
            str(config),
            "--eval-only",
            "OUTPUT_DIR",
            str(eval_dir),
            "DATASETS.TEST",
            f"('{dataset}',)",
            *opts,
        ]
        run_logged(cmd, eval_dir / "eval_stdout.txt", what, prefix)
    return json.loads(done.read_text())


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
