"""The studies' command-line plumbing: overrides after ``--``, ``--jobs`` (the seeds shared among
processes, the CPU's threads divided among them) and run folders given as inputs."""

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..shared.errors import UserError
from ..shared.paths import REPO_ROOT as ROOT

__all__ = [
    "add_jobs_argument",
    "check_run_dir",
    "child_argv",
    "divided_threads",
    "parse_overrides",
    "run_seeds_in_parallel",
]


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


def run_files(path):
    """(config file, weights) of a trained model as the studies take them: a finished training
    run's folder (its config.yaml and model_final.pth) or a model zoo entry, ``zoo://<name>``
    (its recipe and stored weights)."""
    from ..model_zoo import ENTRIES, PREFIX

    path = str(path)
    if path.startswith(PREFIX):
        name = path[len(PREFIX):]
        if name not in ENTRIES:
            raise KeyError(f"{path}: no such model zoo entry; the entries: {sorted(ENTRIES)}")
        return ROOT / ENTRIES[name].config, path
    return Path(path).resolve() / "config.yaml", str(Path(path).resolve() / "model_final.pth")


def check_run_dir(parser, flag, path):
    """A finished training run's folder (config.yaml and model_final.pth) or a model zoo entry
    with stored weights (:func:`run_files`), or a parser error naming ``flag``."""
    from ..model_zoo import PREFIX, zoo_weights_file

    try:
        config, weights = run_files(path)
    except KeyError as e:
        parser.error(f"{flag} {e.args[0]}")
    if str(path).startswith(PREFIX):
        if not zoo_weights_file(str(path)[len(PREFIX):]).is_file():
            parser.error(f"{flag} {path}: the entry has no weights in this clone yet")
        return
    for f in (config, Path(weights)):
        if not f.is_file():
            parser.error(f"{flag} {path}: no {f.name} there (a finished training run?)")
