#!/usr/bin/env python
"""Training throughput of every CPU recipe: images or crops per second, the
share of iteration time spent waiting for data, and peak memory.

    python benchmarks/bench_training.py [--configs A.yaml ...] [--iters N] [--warmup N] [--quick]
                                        [--mixed [--force-bf16]] [--channels-last]
                                        [-- KEY VALUE ...]   (config overrides for every recipe)

Each recipe (default: every yaml under configs/Synthetic/ and projects/TopDown/configs/Synthetic/)
trains in its own process, as ``train_net.py`` would run it (its trainer, data loader and
workers, the recipe's thread count), for --warmup + --iters iterations from scratch, with
evaluation and checkpoints off (and no test datasets: a recipe whose evaluation reads another
run's output trains as it would). From detectron2's own per-iteration records of that run
(``SimpleTrainer``'s ``data_time``, the ``IterationTimer``'s ``time``) over the last --iters
iterations:
- data wait: sum of data_time / sum of time (the goal: at most 5%);
- throughput: SOLVER.IMS_PER_BATCH / mean iteration time (images for the R-CNN and detectors,
  crops for the top-down models);
- peak memory: the largest sum of PSS (proportional set size: shared pages counted once) over the
  training process and its data-loader workers, sampled every 0.25 s from /proc (Linux only), and
  the training process's own peak RSS (``getrusage``). The goal: at most 3 GB for every recipe.
``--mixed``: each recipe also with SOLVER.AMP.ENABLED True, right after its fp32 run, and the
speed ratio mixed / fp32 (the precision each run trained in is in its row: bf16 on a CPU with
native bf16, fp32 where the CPU lacks it). ``--force-bf16``: the mixed runs in bf16 even without
native bf16 (emulated), to measure what the fp32 fallback avoids. ``--channels-last``: each
top-down recipe also with MODEL.TOPDOWN.CHANNELS_LAST flipped, right after its own run, and the
speed ratio channels-last / contiguous.
Prints a table and a last line to paste into a note. About 15 minutes on a quiet 2-core CPU for
all recipes; --quick: the two main recipes, 10 iterations.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TOPDOWN_CONFIGS = os.path.join(ROOT, "projects", "TopDown", "configs", "Synthetic")
MAIN_RECIPES = [
    os.path.join(ROOT, "configs", "Synthetic", "multitask_rcnn_R_18_FPN_synth_basic.yaml"),
    os.path.join(TOPDOWN_CONFIGS, "hrnet_w18_small_synth_basic.yaml"),
]
RESULT_TAG = "bench_training result: "


def default_recipes():
    found = sorted(glob.glob(os.path.join(ROOT, "configs", "Synthetic", "**", "*.yaml"),
                             recursive=True))  # fmt: skip
    found += sorted(glob.glob(os.path.join(TOPDOWN_CONFIGS, "*.yaml")))
    return found


def is_topdown(config):
    return os.path.abspath(config).startswith(os.path.join(ROOT, "projects", "TopDown"))


def tree_pss_bytes(root):
    """The summed PSS of ``root`` and all its descendants (Linux /proc)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # the process ended meanwhile
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


class PeakMemory(threading.Thread):
    """Samples :func:`tree_pss_bytes` of this process every ``period`` seconds; ``peak``."""

    def __init__(self, period=0.25):
        super().__init__(daemon=True)
        self.period, self.peak, self._done = period, 0, threading.Event()

    def run(self):
        while not self._done.is_set():
            self.peak = max(self.peak, tree_pss_bytes(os.getpid()))
            self._done.wait(self.period)

    def stop(self):
        self._done.set()
        self.join()
        self.peak = max(self.peak, tree_pss_bytes(os.getpid()))
        return self.peak


def worker(config, iters, warmup, extra_opts=(), force_bf16=False):
    """Train ``config`` for warmup + iters iterations in this process; print the result line."""
    import resource

    import torch
    from detectron2.engine import default_argument_parser, hooks

    import multitask_pose  # noqa: F401  (registers models and datasets)
    from multitask_pose.engine import MultiTaskTrainer, mixed_precision
    from multitask_pose.engine.setup import setup_cfg

    if force_bf16:
        mixed_precision.cpu_has_native_bf16 = lambda: True

    if is_topdown(config):
        import pose_topdown  # noqa: F401  (registers the top-down models)
        from pose_topdown.engine import TopDownTrainer as trainer_cls
    else:
        trainer_cls = MultiTaskTrainer
    memory = PeakMemory()
    memory.start()
    with tempfile.TemporaryDirectory() as out:
        # No test datasets: nothing is evaluated, and recipes whose evaluation reads another
        # run's output (a detection or results file) train as they would.
        opts = ["OUTPUT_DIR", out, "SOLVER.MAX_ITER", str(warmup + iters), "TEST.EVAL_PERIOD", "0",
                "SOLVER.CHECKPOINT_PERIOD", str(10 * (warmup + iters)), "DATASETS.TEST", "()",
                *extra_opts]  # fmt: skip
        args = default_argument_parser().parse_args(["--config-file", config, *opts])
        cfg = setup_cfg(args, (trainer_cls.add_config,))
        trainer = trainer_cls(cfg)
        loop = trainer._trainer
        precision = str(getattr(loop, "dtype", torch.float32)).replace("torch.", "")
        trainer.resume_or_load(resume=False)
        # Evaluation (detectron2 evaluates after the last iteration even with period 0) and
        # checkpoints are not training throughput.
        drop = (hooks.EvalHook, hooks.PeriodicCheckpointer)
        trainer._hooks = [h for h in trainer._hooks if not isinstance(h, drop)]
        history = {}

        class Record(hooks.HookBase):
            def after_train(self):
                for name in ("data_time", "time"):
                    history[name] = dict(
                        (it, v) for v, it in self.trainer.storage.history(name).values()
                    )

        trainer.register_hooks([Record()])
        trainer.train()
    peak = memory.stop()
    measured = range(warmup, warmup + iters)
    missing = [it for it in measured if it not in history["time"] or it not in history["data_time"]]
    if missing:
        raise RuntimeError(f"{config}: no time record for iterations {missing[:5]}")
    data = sum(history["data_time"][it] for it in measured)
    total = sum(history["time"][it] for it in measured)
    result = {
        "config": os.path.relpath(config, ROOT),
        "batch": cfg.SOLVER.IMS_PER_BATCH,
        "precision": precision + (" (AMP on, no native bf16)" if cfg.SOLVER.AMP.ENABLED
                                  and precision == "float32" else "")
        + (" channels-last" if is_topdown(config) and cfg.MODEL.TOPDOWN.CHANNELS_LAST
           else ""),  # fmt: skip
        "unit": "crops" if is_topdown(config) else "images",
        "s_per_iter": total / iters,
        "per_s": cfg.SOLVER.IMS_PER_BATCH * iters / total,
        "data_wait": data / total,
        "workers": cfg.DATALOADER.NUM_WORKERS,
        "peak_pss_gb": peak / 2**30,
        "main_max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    print(RESULT_TAG + json.dumps(result), flush=True)


def run_recipe(config, iters, warmup, opts, force_bf16=False):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", config, "--iters", str(iters),
           "--warmup", str(warmup), *(["--force-bf16"] if force_bf16 else []),
           "--", *opts]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SystemExit(f"bench_training: {config} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_TAG) :])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", help="recipe yamls (default: every CPU recipe)")
    ap.add_argument("--iters", type=int, default=20, help="measured iterations per recipe")
    ap.add_argument("--warmup", type=int, default=5, help="iterations before measuring")
    ap.add_argument("--quick", action="store_true", help="the two main recipes, 10 iterations")
    ap.add_argument("--mixed", action="store_true",
                    help="each recipe also with SOLVER.AMP.ENABLED True (fp32 vs mixed)")
    ap.add_argument("--force-bf16", action="store_true",
                    help="--mixed runs in bf16 even on a CPU without native bf16 (emulated)")
    ap.add_argument("--channels-last", action="store_true",
                    help="each top-down recipe also with MODEL.TOPDOWN.CHANNELS_LAST flipped")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, after --")
    args = ap.parse_args()
    opts = args.opts[1:] if args.opts[:1] == ["--"] else args.opts
    if len(opts) % 2:
        ap.error(f"overrides come in KEY VALUE pairs, got {opts}")
    if args.worker:
        return worker(args.worker, args.iters, args.warmup, opts, args.force_bf16)
    if args.iters < 1 or args.warmup < 0:
        ap.error("--iters must be at least 1 and --warmup at least 0")
    configs = args.configs or (MAIN_RECIPES if args.quick else default_recipes())
    if args.quick:
        args.iters = 10
    for c in configs:
        if not os.path.isfile(c):
            ap.error(f"no such config: {c}")
    if not os.path.isdir("/proc/self"):
        raise SystemExit("bench_training: peak memory is read from /proc, which needs Linux")
    from multitask_pose.env import cpu_model

    if args.force_bf16 and not args.mixed:
        ap.error("--force-bf16 applies to the --mixed runs")
    print("| recipe | precision | batch | s/iter | throughput | data wait | workers | peak PSS"
          " (tree) | main max RSS |\n" + "|---" * 9 + "|", flush=True)  # fmt: skip
    rows, ratios, layouts = [], [], []
    for c in configs:
        variants = [[]] + ([["SOLVER.AMP.ENABLED", "True"]] if args.mixed else [])
        if args.channels_last and is_topdown(c):
            variants.append(None)  # the layout the first run did not train in (its row says)
        for variant in variants:
            if variant is None:
                flip = "channels-last" not in rows[-len(variants) + 1]["precision"]
                variant = ["MODEL.TOPDOWN.CHANNELS_LAST", str(flip)]
            t = time.perf_counter()
            r = run_recipe(os.path.abspath(c), args.iters, args.warmup, [*opts, *variant],
                           args.force_bf16)  # fmt: skip
            rows.append(r)
            print(f"| {os.path.basename(r['config'])[:-5]} | {r['precision']} | {r['batch']} |"
                  f" {r['s_per_iter']:.2f} | {r['per_s']:.1f} {r['unit']}/s |"
                  f" {100 * r['data_wait']:.1f}% | {r['workers']} | {r['peak_pss_gb']:.2f} GB |"
                  f" {r['main_max_rss_gb']:.2f} GB | <!-- {time.perf_counter() - t:.0f} s -->",
                  flush=True)  # fmt: skip
        runs = rows[-len(variants):]
        if args.mixed:
            fp32, mixed = runs[:2]
            ratios.append(f"{os.path.basename(c)[:-5]} {mixed['precision']} /"
                          f" fp32 {fp32['s_per_iter'] / mixed['s_per_iter']:.2f}x")  # fmt: skip
        if len(variants) > 1 + args.mixed:
            flat, nhwc = sorted((runs[0], runs[-1]),
                                key=lambda r: "channels-last" in r["precision"])  # fmt: skip
            layouts.append(f"{os.path.basename(c)[:-5]} channels-last / contiguous"
                           f" {flat['s_per_iter'] / nhwc['s_per_iter']:.2f}x")  # fmt: skip
    worst_wait = max(rows, key=lambda r: r["data_wait"])
    worst_mem = max(rows, key=lambda r: r["peak_pss_gb"])
    items = ", ".join(
        f"{os.path.basename(r['config'])[:-5]}{' ' + r['precision'] if args.mixed else ''}"
        f" {r['per_s']:.1f} {r['unit']}/s"
        f" wait {100 * r['data_wait']:.1f}% {r['peak_pss_gb']:.2f} GB"
        for r in rows
    )
    print(
        f"bench_training: {items}; worst data wait {100 * worst_wait['data_wait']:.1f}%"
        f" ({os.path.basename(worst_wait['config'])[:-5]}; goal <= 5%), worst peak"
        f" {worst_mem['peak_pss_gb']:.2f} GB ({os.path.basename(worst_mem['config'])[:-5]};"
        f" goal <= 3 GB); {args.warmup} + {args.iters} iterations each"
        f"{'; mixed-precision speed: ' + ', '.join(ratios) if ratios else ''}"
        f"{'; memory layout speed: ' + ', '.join(layouts) if layouts else ''}"
        f"{'; overrides ' + ' '.join(opts) if opts else ''}; {cpu_model()}"
    )


if __name__ == "__main__":
    main()
