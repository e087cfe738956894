#!/usr/bin/env python
"""Inference cost of the multitask R-CNN's keypoint variants, and of keypoint decoding alone.

    python benchmarks/bench_keypoint_variants.py [--config {r50,r18}] [--repeats N] [--images N]
                                                 [--size PX] [--dets N] [--rois N] [--quick]

1. Decoding: detectron2's per-RoI ``heatmaps_to_keypoints`` (bicubic upsampling of each RoI's
   maps to its box size, then argmax) against ``RoIHeatmapCodec.decode`` (the same result,
   vectorised over all RoIs, evaluating the bicubic map only near each peak), and with offsets,
   on ``--rois`` RoIs of 17 keypoints with peaked, noisy 56x56 logits and boxes of 60-400 px
   (the sizes of COCO persons at 800 px), median of 20 calls.
2. Whole-model latency with ``DefaultPredictor`` on the real COCO sample images, every variant
   built in the same run from the same random weights (norms calibrated on the first image, as
   in bench_inference.py, whose timing loop this reuses), keypoints only:
   plain (detectron2's head), + offsets (KeypointOffsetHead), deformable res3-res5 (RB),
   RB + deformable head convs 3-4 (RB+H), RB+H + offsets. Ratios are against plain.
3. One DCNv2 layer, forward + backward (training), torchvision's ``deform_conv2d`` against the
   sampled form that ``DeformConv2d`` runs on the CPU (grid_sample + matmul), with offsets of
   about a pixel, at the CPU recipe's shapes: R-18 res3/res4/res5 3x3 convs on a batch of 4
   images of 288 px, and a keypoint-head conv on 64 RoIs of 14x14x128. Median of 5 calls.

Prints tables and a one-line summary to paste into a note. ``--quick``: 1 round, 2 images at
320 px, 20 RoIs.
"""

import argparse
import os
import statistics
import warnings

warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
)
warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.data.detection_utils import read_image  # noqa: E402
from detectron2.engine import DefaultPredictor  # noqa: E402
from detectron2.structures import heatmaps_to_keypoints  # noqa: E402
from torchvision.ops import deform_conv2d  # noqa: E402

import multitask_pose  # noqa: E402
from bench_inference import (  # noqa: E402
    OURS_CONFIGS,
    ROOT,
    add_model_timing_args,
    calibrate_norms,
    fill_defaults,
    run_rounds,
)
from multitask_pose.codecs import RoIHeatmapCodec  # noqa: E402
from multitask_pose.env import cpu_model  # noqa: E402
from multitask_pose.layers.deform_conv import sampled_deform_conv2d  # noqa: E402
from multitask_pose.shared.timing import median_ms  # noqa: E402

OFFSETS = ["MODEL.ROI_KEYPOINT_HEAD.NAME", "KeypointOffsetHead"]
RB = [
    "MODEL.BACKBONE.NAME",
    "build_multitask_resnet_fpn_backbone",
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE",
    "[False, True, True, True]",
]
HEAD = [
    "MODEL.ROI_KEYPOINT_HEAD.NAME",
    "KeypointOffsetHead",
    "MODEL.ROI_KEYPOINT_HEAD.OFFSET_ON",
    "False",
    "MODEL.ROI_KEYPOINT_HEAD.DEFORM_CONVS",
    "(3, 4)",
]
VARIANTS = [
    ("plain", []),
    ("+ offsets", OFFSETS),
    ("RB", RB),
    ("RB+H", RB + HEAD),
    ("RB+H + offsets", RB + HEAD + ["MODEL.ROI_KEYPOINT_HEAD.OFFSET_ON", "True"]),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_timing_args(parser)
    parser.add_argument("--rois", type=int)
    args = parser.parse_args(argv)
    fill_defaults(
        args,
        quick={"repeats": 1, "images": 2, "size": 320, "rois": 20},
        full={"repeats": 3, "images": None, "size": None, "rois": 100},
    )
    return args


def bench_decode(n_rois, seed):
    gen = torch.Generator().manual_seed(seed)
    K, S = 17, 56
    xy = torch.rand(n_rois, 2, generator=gen) * 400
    side = 60 + torch.rand(n_rois, 1, generator=gen) * 340
    rois = torch.cat([xy, xy + side * torch.tensor([0.6, 1.0])], dim=1)
    codec = RoIHeatmapCodec(S)
    # Peaked logits, as a trained head gives: a Gaussian bump (in the log domain) plus noise.
    centres = 3 + torch.rand(n_rois * K, 2, generator=gen) * (S - 6)
    bump = codec.gaussian_targets(centres).clamp(min=1e-4).log()
    maps = (bump + 0.3 * torch.randn(n_rois * K, S, S, generator=gen)).view(n_rois, K, S, S)
    offsets = 0.5 * torch.randn(n_rois, 2 * K, S, S, generator=gen)
    (ours, _), ref = codec.decode(maps, rois), heatmaps_to_keypoints(maps, rois)
    # Ours looks for the bicubic maximum within 1.5 cells of the coarse argmax; on noisy flat
    # tops a separate, slightly higher bicubic bump can lie further away. Count those.
    same = ((ours - ref[..., :2]).abs().amax(dim=-1) < 1e-3).float().mean().item()
    return (
        median_ms(lambda: heatmaps_to_keypoints(maps, rois), 20),
        median_ms(lambda: codec.decode(maps, rois), 20),
        median_ms(lambda: codec.decode(maps, rois, offsets), 20),
        same,
    )


# (name, batch, channels, side): the CPU recipe's deformable layers (see the module doc, item 3).
DCN_SHAPES = [
    ("res3 4x128x36x36", 4, 128, 36),
    ("res4 4x256x18x18", 4, 256, 18),
    ("res5 4x512x9x9", 4, 512, 9),
    ("head 64x128x14x14", 64, 128, 14),
]


def bench_dcn_layers(seed, calls=5):
    """[(shape name, torchvision ms, sampled ms)] for forward + backward of one 3x3 DCNv2 layer."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for name, n, c, side in DCN_SHAPES:
        x = torch.randn(n, c, side, side, generator=gen).requires_grad_(True)
        weight = (0.05 * torch.randn(c, c, 3, 3, generator=gen)).requires_grad_(True)
        bias = torch.zeros(c, requires_grad=True)
        offset = torch.randn(n, 18, side, side, generator=gen).requires_grad_(True)
        mask = torch.rand(n, 9, side, side, generator=gen).requires_grad_(True)

        def step(op):
            op(x, offset, weight, bias, padding=(1, 1), mask=mask).sum().backward()

        rows.append(
            (
                name,
                median_ms(lambda: step(deform_conv2d), calls),
                median_ms(lambda: step(sampled_deform_conv2d), calls),
            )
        )
    return rows


def check_close(name, instances, reference):
    """Finite outputs and as many detections as plain (the heads' workload). Deformable layers
    start equal to plain ones, but float differences reorder near-tied random-weight boxes, so
    the boxes themselves are not compared."""
    if not torch.isfinite(instances.pred_keypoints).all():
        raise FloatingPointError(f"{name}: non-finite keypoints")
    if reference is not None and len(instances) != len(reference):
        raise AssertionError(
            f"{name}: {len(instances)} detections against plain's {len(reference)}, "
            "the workloads are not comparable"
        )


def main(argv=None):
    args = parse_args(argv)
    d2_ms, ours_ms, ours_off_ms, same = bench_decode(args.rois, args.seed)
    machine = f"{cpu_model()}, {torch.get_num_threads()} threads"
    print(f"decode {args.rois} RoIs x 17 keypoints, 56x56 maps (median of 20 calls, {machine}):")
    print(
        f"  detectron2 heatmaps_to_keypoints {d2_ms:8.1f} ms\n"
        f"  ours                             {ours_ms:8.1f} ms"
        f"  = {d2_ms / ours_ms:.1f}x faster; same location for {100 * same:.1f}% of keypoints\n"
        f"  ours with offsets                {ours_off_ms:8.1f} ms"
    )

    dcn = bench_dcn_layers(args.seed)
    print(f"\nDCNv2 layer forward + backward, 3x3, median of 5 calls ({machine}):")
    print(f"{'shape':<20}{'torchvision ms':>15}{'sampled ms':>12}{'speed-up':>10}")
    for name, tv_ms, sampled_ms in dcn:
        print(f"{name:<20}{tv_ms:>15.1f}{sampled_ms:>12.1f}{tv_ms / sampled_ms:>9.1f}x")
    dcn_summary = ", ".join(f"{name.split()[0]} {tv / sm:.1f}x" for name, tv, sm in dcn)

    files = [d["file_name"] for d in DatasetCatalog.get("coco_person_sample")][: args.images]
    images = [np.ascontiguousarray(read_image(f, format="BGR")) for f in files]
    predictors = []
    for name, opts in VARIANTS:
        cfg = multitask_pose.get_multitask_cfg()
        cfg.merge_from_file(os.path.join(ROOT, OURS_CONFIGS[args.config][0]))
        cfg.merge_from_list(
            [
                "MODEL.MASK_ON",
                "False",
                "MODEL.DEVICE",
                "cpu",
                "MODEL.WEIGHTS",
                "",
                "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
                "0.0",
                "TEST.DETECTIONS_PER_IMAGE",
                str(args.dets),
                *(["INPUT.MIN_SIZE_TEST", str(args.size)] if args.size else []),
                *opts,
            ]
        )
        torch.manual_seed(args.seed)
        predictor = DefaultPredictor(cfg)
        calibrate_norms(predictor, images[0])
        predictor(images[0])
        predictors.append((name, predictor))
    times, dets, _ = run_rounds(predictors, images, args.repeats, check=check_close)
    ms = [1000 * statistics.mean(statistics.median(t) for t in per_image) for per_image in times]
    size = predictors[0][1].cfg.INPUT.MIN_SIZE_TEST
    depth = predictors[0][1].cfg.MODEL.RESNETS.DEPTH
    print(
        f"\nR{depth}-FPN keypoint R-CNN variants, DefaultPredictor on {len(images)} COCO images "
        f"@{size}px, {args.dets} dets/img, {args.repeats} rounds:"
    )
    print(f"{'variant':<18}{'ms/img':>8}{'x plain':>9}")
    for (name, _), m in zip(predictors, ms):
        print(f"{name:<18}{m:>8.0f}{m / ms[0]:>8.2f}x")
    ratios = ", ".join(f"{name} {m / ms[0]:.2f}x" for (name, _), m in zip(predictors[1:], ms[1:]))
    print(
        f"bench_keypoint_variants: decode {args.rois} RoIs {ours_ms:.1f} ms vs detectron2 "
        f"{d2_ms:.1f} ms ({d2_ms / ours_ms:.1f}x faster, {100 * same:.1f}% identical); "
        f"DCN layer training step, sampled vs torchvision: {dcn_summary}; "
        f"R{depth}-FPN @{size}px plain {ms[0]:.0f} ms/img, {ratios}; {machine}"
    )


if __name__ == "__main__":
    main()
