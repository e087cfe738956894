#!/usr/bin/env python
"""Top-down inference backends (projects/TopDown/pose_topdown/runtime.py): HRNet-W32 256x192 crops
per second at batch 1, 8 and 32 for each TEST.TOPDOWN.BACKEND against the reference.

    python benchmarks/bench_topdown_backends.py [--batches 1 8 32] [--repeats N] [--threads N]
                                                [--config COCO/hrnet_w32_256x192.yaml]
                                                [--backends fused onnxruntime bf16 int8]

Reference: our PoseHighResolutionNet module as the official code runs it: plain eager forward,
BatchNorm unfolded, contiguous (NCHW) memory, under ``torch.inference_mode()``, same thread count.
Rows: "fused" (BatchNorm folded, channels-last), "onnxruntime" (exported in memory, ONNX Runtime's
CPU provider), "bf16" (fused under bf16 autocast: fast only on a CPU with native bf16, AVX-512
BF16 or AMX; emulated and slower than fp32 elsewhere, which the summary says), "int8" (ONNX
Runtime static int8, calibrated on the real COCO sample's person crops; fastest with AVX-512 VNNI
or AVX-VNNI, which the summary says; quantizing takes about a minute) and "auto" (what the
default picks here, always measured). --backends picks the rows. Random weights with He-initialised
convolutions and random BatchNorm statistics (speed does not depend on the values; the outputs are
far from zero, so the printed max relative difference to the reference means something). Each
figure is the median of --repeats timed runs after one warm-up. The goal: every backend
row that "auto" can pick at least 1.5x the reference at each batch, and int8 at least 2x (the
official code's eager forward is the reference's), outputs within 1e-4 (bf16:
within its BF16_TOLERANCE, 2.5% of the largest output; int8's difference on these random
networks says nothing of its keypoints: its build-time check, decoded keypoints on real crops,
needs trained weights; see the README's figures).

Prints a table and a last line to paste into a note (about 3 minutes on a quiet 2-core CPU).
"""

import argparse
import os
import time
import warnings

warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
)

import torch  # noqa: E402

import multitask_pose  # noqa: E402,F401  (registers the datasets)
from multitask_pose.engine.mixed_precision import cpu_has_native_bf16  # noqa: E402
from multitask_pose.env import cpu_model  # noqa: E402
from multitask_pose.shared.timing import median_seconds  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "projects", "TopDown", "configs")


def random_net(config):
    from pose_topdown import get_topdown_cfg
    from pose_topdown.modeling import build_pose_net

    cfg = get_topdown_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, config))
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    net = build_pose_net(cfg).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.kaiming_normal_(m.weight)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return net, tuple(cfg.MODEL.TOPDOWN.INPUT_SIZE), cfg.MODEL.TOPDOWN.POSE_NET


def official_net(checkout: str, net, experiment: str):
    """The official HRNet code's PoseHighResolutionNet (``checkout``: a clone of
    leoxiaobin/deep-high-resolution-net.pytorch; the benchmark downloads nothing), built from its
    ``experiment`` yaml and given ``net``'s weights (the names are the same: strict load)."""
    import importlib.util

    import yaml

    path = os.path.join(checkout, "lib", "models", "pose_hrnet.py")
    spec = importlib.util.spec_from_file_location("official_pose_hrnet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with open(os.path.join(checkout, experiment)) as f:
        cfg = yaml.safe_load(f)
    official = module.PoseHighResolutionNet(cfg).eval()
    official.load_state_dict(net.state_dict(), strict=True)
    return official


def cpu_int8_instructions() -> str:
    """The CPU's int8 dot-product instructions, from /proc/cpuinfo's flags: VNNI (AVX-512 or AVX)
    or, without it, AVX2's vpmaddubsw (uint8 x int8 pairs summed in int16, which can saturate:
    hence the reduced activation range)."""
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if vnni:
        return "int8 via " + "+".join(vnni)
    return "int8 via AVX2 vpmaddubsw, NO VNNI" if "avx2" in flags else "int8: no AVX2 or VNNI"


ALL = ("fused", "onnxruntime", "bf16", "int8")


def main():
    from pose_topdown.runtime import InferenceNet, _Int8, calibration_crops, resolve_backend

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads")
    ap.add_argument("--config", default="COCO/hrnet_w32_256x192.yaml", help="under configs/")
    ap.add_argument(
        "--official", default="", metavar="DIR",
        help="a clone of leoxiaobin/deep-high-resolution-net.pytorch: its network, run as its"
        " test script does (eager, torch.no_grad), is timed as a row too",
    )  # fmt: skip
    ap.add_argument(
        "--official-experiment", default="experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml",
        help="the official experiment yaml of the same network as --config",
    )  # fmt: skip
    ap.add_argument(
        "--backends", nargs="+", default=list(ALL), choices=ALL,
        help="the rows (default: all; bf16 is slow on a CPU without native bf16)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net, (w, h), name = random_net(args.config)
    from fvcore.nn import FlopCountAnalysis

    # fvcore counts one multiply-add as one "flop": GMAC per crop, so the rows can say how close
    # to the cores' arithmetic limit each backend runs.
    counter = FlopCountAnalysis(net, (torch.zeros(1, 3, h, w),))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    gmac = counter.total() / 1e9
    print(f"{name} {w}x{h}: {gmac:.2f} GMAC per crop", flush=True)
    auto = resolve_backend("auto", "cpu")
    backends = list(dict.fromkeys(args.backends))
    if auto not in backends:
        backends.insert(0, auto)  # the default's row is always measured
    runners = {}
    for b in backends:
        t = time.perf_counter()
        if b == "int8":
            # Built directly: the random weights make no keypoints for its check to compare.
            crops = calibration_crops(
                "coco_person_sample", 14, (w, h), (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
            )
            fast = _Int8(net, (w, h), lambda: crops)
            runners[b] = argparse.Namespace(infer=lambda net, x, fast=fast: fast(x))
        else:
            runners[b] = InferenceNet(b, input_size=(w, h))
            runners[b].infer(net, torch.zeros(1, 3, h, w))  # builds (and checks) once
        print(f"{b}: built and checked in {time.perf_counter() - t:.1f} s", flush=True)
    official = official_net(args.official, net, args.official_experiment) if args.official else None
    rows, reference = {}, {}
    for batch in args.batches:
        x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            ref_out = net(x)[net.prediction]
            t_ref = median_seconds(lambda: net(x), args.repeats)
        scale = max(1.0, float(ref_out.abs().max()))
        line = (
            f"batch {batch:3d}: reference {batch / t_ref:6.1f} crops/s"
            f" ({gmac * batch / t_ref:.0f} GMAC/s)"
        )
        rows[batch], reference[batch] = {}, batch / t_ref
        if official is not None:
            with torch.no_grad():  # as the official tools/test.py runs it
                out = official(x)
                err = float((out - ref_out).abs().max()) / scale
                t = median_seconds(lambda: official(x), args.repeats)
            rows[batch]["official"] = (batch / t, t_ref / t, err)
            line += f" | official {batch / t:6.1f} crops/s {t_ref / t:4.2f}x (diff {err:.1e})"
        for b in backends:
            out = runners[b].infer(net, x)
            err = float((out - ref_out).abs().max()) / scale
            t = median_seconds(lambda: runners[b].infer(net, x), args.repeats)
            rows[batch][b] = (batch / t, t_ref / t, err)
            line += (
                f" | {b} {batch / t:6.1f} crops/s ({gmac * batch / t:.0f} GMAC/s)"
                f" {t_ref / t:4.2f}x (diff {err:.1e})"
            )
        print(line, flush=True)
    cells = "; ".join(
        f"batch {batch}: "
        + ", ".join(f"{b} {r[1]:.2f}x ({r[0]:.1f} crops/s)" for b, r in row.items())
        for batch, row in rows.items()
    )
    worst_auto = min(row[auto][1] for row in rows.values())
    fp32 = ("fused", "onnxruntime")
    worst_err = max(r[2] for row in rows.values() for b, r in row.items() if b in fp32)
    native = "native bf16" if cpu_has_native_bf16() else "NO native bf16 (emulated, slow)"
    if "bf16" in backends:
        native += f"; bf16 max relative difference {max(r['bf16'][2] for r in rows.values()):.1e}"
    if "int8" in backends:
        # the goal is against the official code's crops/s where it ran, else the reference's
        versus = "official" if official is not None else "reference"
        worst_int8 = min(
            row["int8"][0] / (row["official"][0] if official is not None else reference[batch])
            for batch, row in rows.items()
        )
        native += (
            f"; int8 worst {worst_int8:.2f}x the {versus} (goal 2x:"
            f" {'met' if worst_int8 >= 2 else 'NOT met'})"
        )
        if "onnxruntime" in backends:
            int8 = ", ".join(
                f"{row['int8'][0] / row['onnxruntime'][0]:.2f}x" for row in rows.values()
            )
            native += f", int8 / onnxruntime {int8}"
        native += f", {cpu_int8_instructions()}"
    print(
        f"bench_topdown_backends: {name} {w}x{h} vs eager inference_mode reference ({cells});"
        f" {gmac:.2f} GMAC/crop; auto = {auto}, worst {worst_auto:.2f}x (goal 1.5x:"
        f" {'met' if worst_auto >= 1.5 else 'NOT met'}); max relative difference {worst_err:.1e};"
        f" {cpu_model()}, {native}, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
