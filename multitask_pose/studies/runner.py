"""One study run: a config trained with a seed and a budget into its folder (resumed when cut,
read back when finished), and the steps studies add (person detection, evaluation), each
writing one output and skipped when it exists. Trainings and tools run as subprocesses of the
repository's scripts, so a study's runs are the runs a user gets from the same commands."""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from detectron2.config import get_cfg

from ..engine.cli import argument_parser
from ..shared.atomic_io import write_json_atomic
from ..shared.paths import REPO_ROOT as ROOT
from . import reasons, records
from .jobs import divided_threads, run_files
from .tables import fmt

__all__ = [
    "add_overrides",
    "study_parser",
    "box_opts",
    "budget_opts",
    "detect_persons",
    "evaluate_run",
    "is_topdown",
    "parse_log",
    "results_file",
    "run_logged",
    "run_one",
    "study_dirs",
    "train_script",
]

TOPDOWN = ROOT / "projects" / "TopDown"


def is_topdown(config_path) -> bool:
    """A config of the top-down project (under projects/TopDown): trained by its train_net.py."""
    return TOPDOWN in Path(config_path).resolve().parents


def train_script(config_path) -> Path:
    return TOPDOWN / "train_net.py" if is_topdown(config_path) else ROOT / "tools" / "train_net.py"


def study_parser(doc, output: str, seeds=(42, 43)) -> argparse.ArgumentParser:
    """The options every study has (``--output``, ``--seeds``, ``--max-iter``); the study adds
    its own, then :func:`add_overrides`. ``doc``: the help's description (the script's
    docstring)."""
    parser = argument_parser(doc)
    parser.add_argument(
        "--output", default=output, help="the study's folder: one sub-folder per run, its table"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(seeds), help="SEED of each run"
    )
    parser.add_argument(
        "--max-iter", type=int, help="SOLVER.MAX_ITER of every training (steps scaled to it)"
    )
    parser.add_argument(
        "--record",
        help="a folder that keeps the small files of each finished run (rows, metrics, error"
        " analysis; no weights), e.g. in the repository: restored into --output at the start,"
        " so that a study whose output folder was lost resumes from its finished runs",
    )
    return parser


def study_dirs(args):
    """(output folder, record folder or None) of a study's ``args`` (relative paths from the
    repository's root), the record restored into the output folder (:mod:`.records`)."""
    out_root, record = (
        None if p is None else (Path(p) if os.path.isabs(p) else ROOT / p)
        for p in (args.output, getattr(args, "record", None))
    )
    found = records.restore(record, out_root)
    if found:
        print(f"study: restored {found} recorded files from {record}", flush=True)
    return out_root, record


def add_overrides(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The trailing ``-- KEY VALUE ...`` config overrides of every training (last option)."""
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="training overrides, after --")
    return parser


def budget_opts(config_path, max_iter):
    """SOLVER.MAX_ITER and STEPS for a common budget, the steps at the config's own fractions."""
    if not max_iter:
        return []
    # The schedule keys are detectron2's in both stages: the config merged over detectron2's
    # defaults, the stage's own keys let in as they are (the core does not import the top-down
    # project to build its config).
    cfg = get_cfg()
    cfg.set_new_allowed(True)
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


def run_one(name, path, args, out_root, seed, needs_weights=False):
    """Train ``path`` (a config) with ``seed`` and ``args``' budget and overrides into
    ``<out_root>/<name>/seed<seed>``, resumed where cut; a finished run (its row file) is read
    back, and trained again only if ``needs_weights`` (later steps load it) and its weights are
    gone (a run restored from a study's record). Returns its row (APs, minutes)."""
    out = out_root / name / f"seed{seed}"
    done = out / "ablation_row.json"
    name_s = f"{name} seed {seed}"
    if done.exists() and needs_weights and not (out / "model_final.pth").is_file():
        print(f"ablate: {name_s}: recorded without its weights, which later steps load: "
              "training it again", flush=True)  # fmt: skip
        done.unlink()
    if done.exists():
        print(f"ablate: {name_s}: finished earlier, reading {done}", flush=True)
        return _with_results(json.loads(done.read_text()), out)
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
    return _with_results(row, out)


def _with_results(row, out):
    """``row`` with "results": the results file of the run's final evaluation (the effects
    tables' error analysis, studies/reasons.py), where it wrote one."""
    found = results_file(out, row["dataset"])
    return dict(row, results=str(found)) if reasons.analysed(found) else row


def run_logged(cmd, log, what, prefix="ablate", env=None):
    """Run ``cmd`` from the repository root (``env``: its environment, default this one's), its
    output appended to ``log``; exit naming ``what`` and the log if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        raise SystemExit(f"{prefix}: {what} failed (exit {proc.returncode}); see {log}")


def detect_persons(detector, dataset, path, prefix="ablate", processes=1):
    """tools/detect_persons.py with a trained detector (a finished run's folder or a model zoo
    entry, :func:`jobs.run_files`) on ``dataset`` into ``path`` (kept if it exists; a cut run
    resumes), its images shared among ``processes`` (its --num-gpus: CPU processes without
    CUDA; the CPU's threads divided among them unless OMP_NUM_THREADS is set); returns
    ``path``."""
    path = Path(path)
    if not path.exists():
        config, weights = run_files(detector)
        print(f"{prefix}: detecting persons in {dataset} with {weights}", flush=True)
        cmd = [
            sys.executable,
            str(ROOT / "tools" / "detect_persons.py"),
            "--config-file",
            str(config),
            "--dataset",
            dataset,
            "--output",
            str(path),
            "--resume",
            "--quiet",
            "--num-gpus",
            str(processes),
            "MODEL.WEIGHTS",
            weights,
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
