#!/usr/bin/env python
"""Per-image inference latency of the multitask R-CNN against stock detectron2 Keypoint R-CNN.

    python benchmarks/bench_inference.py [--config {r50,r18}] [--repeats N] [--warmup N]
                                         [--images N] [--size PX] [--dets N] [--threads N]
                                         [--quick]

Times detectron2's ``DefaultPredictor`` (what a user times: resize, forward, post-processing) on
the real COCO person sample (``coco_person_sample``, 4 images), for three models built in the
same run with the same backbone:

- ``stock``: detectron2's Keypoint R-CNN (model zoo ``COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x``,
  ``StandardROIHeads``, no mask head), the reference of every ratio;
- ``ours kp-only``: ``MultiTaskROIHeads`` with the mask head off, expected at 1.00x: the check
  that the multitask wrapper costs nothing at inference;
- ``ours mask+kp``: the multitask model (box + mask + keypoints), showing what the mask head costs.

``--config r50`` (default): ``configs/COCO-MultiTask/{multitask,keypoint}_rcnn_R_50_FPN_1x.yaml``
against the stock config as is (the two differ only in the ROI heads class and the mask head).
``--config r18``: the CPU recipe ``configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml`` against
the stock config given the recipe's backbone, RPN, box/keypoint head widths and test size (the
aligned keys are printed).

No weights are downloaded: every model starts from the same random weights (``torch.manual_seed``
before each build, so backbone, RPN and box head are identical across the three models). Random
weights under FrozenBatchNorm give exploding activations and no detections, so the first warm-up
run sets each norm layer's statistics from the activations it sees (a calibrated backbone, like a
trained one); then ``SCORE_THRESH_TEST 0`` and ``TEST.DETECTIONS_PER_IMAGE`` (``--dets``) make every
model run its mask/keypoint heads on the same fixed number of boxes. The script checks that all
models return the same boxes with finite outputs, and prints the detections per image.

Timing: ``--warmup`` runs per model, then ``--repeats`` rounds; in each round every image is run
through every model in turn (model order rotated), so drift hits all models alike. A model's
ms/img is the mean over images of the per-image median over rounds; ratios divide by stock's.

Arguments:
  --config    r50 (default) or r18, see above
  --repeats   timed rounds over the images (default 3)
  --warmup    untimed runs per model before timing, at least 1, the first one calibrating
              the norms (default 2)
  --images    use the first N sample images (default: all 4)
  --size      INPUT.MIN_SIZE_TEST in px (default: the config's, 800 for r50, 320 for r18)
  --dets      detections per image, TEST.DETECTIONS_PER_IMAGE (default 20)
  --threads   torch.set_num_threads (default: torch's default)
  --seed      seed of the random weights (default 0)
  --quick     smoke run: 1 round, 2 images at 320 px (explicit arguments still win)

Prints a table and, last, a one-line summary to paste into a note (flagged NOISY when a call's
time varied by more than 50% between rounds). The default run takes about 3 minutes on a quiet
2-core CPU, ``--quick`` about 30 s.
"""

import argparse
import os
import statistics
import time
import warnings

# detectron2 0.6 on a recent torch: deprecation noise that says nothing about this benchmark
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
)
warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2 import model_zoo  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.data.detection_utils import read_image  # noqa: E402
from detectron2.engine import DefaultPredictor  # noqa: E402
from detectron2.layers import FrozenBatchNorm2d  # noqa: E402

import multitask_pose  # noqa: E402  (registers MultiTaskROIHeads and coco_person_sample)
from multitask_pose.config import flatten_config  # noqa: E402
from multitask_pose.env import cpu_model  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOCK_CONFIG = "COCO-Keypoints/keypoint_rcnn_R_50_FPN_1x.yaml"
# --config: (multitask config, its keypoints-only variant or None to turn the mask off)
OURS_CONFIGS = {
    "r50": (
        "configs/COCO-MultiTask/multitask_rcnn_R_50_FPN_1x.yaml",
        "configs/COCO-MultiTask/keypoint_rcnn_R_50_FPN_1x.yaml",
    ),
    "r18": ("configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml", None),
}
# Keys the stock model keeps from its own config when aligned to ours: what makes it stock.
STOCK_OWN_KEYS = (
    "MODEL.ROI_HEADS.NAME",
    "MODEL.MASK_ON",
    "MODEL.ROI_MASK_HEAD.",
    "MODEL.WEIGHTS",
    "MODEL.DEVICE",
)
TRAINING_ONLY = ("TRAIN", "BATCH_SIZE_PER_IMAGE")  # keys that do not change inference, left alone
NORM_TYPES = (FrozenBatchNorm2d, torch.nn.BatchNorm2d)
NOISY = 0.5  # round-to-round variation flagged as disturbed (10-35% is usual on a quiet 2-core VM)


def add_model_timing_args(parser):
    """The arguments every whole-model latency benchmark here takes (see the module docstring)."""
    parser.add_argument("--config", choices=sorted(OURS_CONFIGS), default="r50")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--images", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--dets", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")


def fill_defaults(args, quick, full):
    """Arguments left unset take their --quick or full-run default."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_timing_args(parser)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    fill_defaults(
        args,
        quick={"repeats": 1, "images": 2, "size": 320},
        full={"repeats": 3, "images": None, "size": None},
    )
    if args.warmup < 1 or args.repeats < 1:
        parser.error(
            "--warmup and --repeats must be at least 1 (the first warm-up run calibrates the norms)"
        )
    return args


def _finish(cfg, args):
    """Settings shared by every model: CPU, random weights, fixed number of detections."""
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = args.dets
    if args.size:
        cfg.INPUT.MIN_SIZE_TEST = args.size
    cfg.freeze()
    return cfg


def build_configs(args):
    """``[(name, cfg)]`` with stock first, and the stock config's keys aligned to ours."""
    ours_file, kp_file = OURS_CONFIGS[args.config]
    ours = multitask_pose.get_multitask_cfg()
    ours.merge_from_file(os.path.join(ROOT, ours_file))
    kp_only = multitask_pose.get_multitask_cfg()
    if kp_file:
        kp_only.merge_from_file(os.path.join(ROOT, kp_file))
    else:
        kp_only.merge_from_file(os.path.join(ROOT, ours_file))
        kp_only.MODEL.MASK_ON = False
    stock = get_cfg()
    stock.merge_from_file(model_zoo.get_config_file(STOCK_CONFIG))
    stock_keys, ours_keys = flatten_config(stock), flatten_config(ours)
    aligned = [
        k
        for k in sorted(stock_keys)
        if k.startswith(("MODEL.", "INPUT."))
        and not k.startswith(STOCK_OWN_KEYS)
        and not any(word in k for word in TRAINING_ONLY)
        and stock_keys[k] != ours_keys[k]
    ]
    stock.merge_from_list([item for k in aligned for item in (k, ours_keys[k])])
    configs = [("stock Keypoint R-CNN", stock), ("ours kp-only", kp_only), ("ours mask+kp", ours)]
    return [(name, _finish(cfg, args)) for name, cfg in configs], aligned


def calibrate_norms(predictor, image):
    """Run ``predictor`` once, setting each norm layer's statistics from its input on the way."""

    def set_stats(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)))

    handles = [
        m.register_forward_pre_hook(set_stats)
        for m in predictor.model.modules()
        if isinstance(m, NORM_TYPES)
    ]
    predictor(image)
    for handle in handles:
        handle.remove()


def check_outputs(name, instances, reference):
    """Finite outputs, and the same boxes as the first model on this image."""
    fields = [instances.scores, instances.pred_boxes.tensor, instances.pred_keypoints]
    if instances.has("pred_masks"):
        fields.append(instances.pred_masks.float())
    if not all(torch.isfinite(f).all() for f in fields):
        raise FloatingPointError(
            f"{name}: non-finite outputs from the random weights; try another --seed"
        )
    if reference is not None and not torch.equal(
        instances.pred_boxes.tensor, reference.pred_boxes.tensor
    ):
        raise AssertionError(
            f"{name}: boxes differ from stock's on the same image, the workloads are not comparable"
        )


def run_rounds(predictors, images, repeats, check=check_outputs):
    """Time every model on every image, ``repeats`` rounds, models interleaved per image;
    ``check(name, instances, first model's instances or None)`` vets each output.
    Returns seconds ``[model][image] -> [per round]``, detections and mean box size per image."""
    n = len(predictors)
    times = [[[] for _ in images] for _ in predictors]
    dets = [[0] * len(images) for _ in predictors]
    box_px = [[0.0] * len(images) for _ in predictors]
    for r in range(repeats):
        for i, image in enumerate(images):
            outputs = [None] * n
            for m in ((r + i + k) % n for k in range(n)):  # rotate which model goes first
                t0 = time.perf_counter()
                outputs[m] = predictors[m][1](image)["instances"]
                times[m][i].append(time.perf_counter() - t0)
            for m, instances in enumerate(outputs):
                check(predictors[m][0], instances, outputs[0] if m else None)
                dets[m][i] = len(instances)
                box_px[m][i] = (
                    instances.pred_boxes.area().sqrt().mean().item() if len(instances) else 0.0
                )
    return times, dets, box_px


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    files = [d["file_name"] for d in DatasetCatalog.get("coco_person_sample")][: args.images]
    images = [
        np.ascontiguousarray(read_image(f, format="BGR")) for f in files
    ]  # as cv2.imread gives
    configs, aligned = build_configs(args)

    predictors = []
    for name, cfg in configs:
        torch.manual_seed(args.seed)
        predictor = DefaultPredictor(cfg)
        calibrate_norms(predictor, images[0])
        for _ in range(args.warmup - 1):
            predictor(images[0])
        predictors.append((name, predictor))
    start = time.perf_counter()
    times, dets, box_px = run_rounds(predictors, images, args.repeats)
    timed = time.perf_counter() - start

    medians = [[statistics.median(t) for t in per_image] for per_image in times]
    ms = [1000 * statistics.mean(per_image) for per_image in medians]
    best = [1000 * statistics.mean(min(t) for t in per_image) for per_image in times]
    jitter = max(max(t) / min(t) for per_image in times for t in per_image) - 1
    backbone = f"R{configs[0][1].MODEL.RESNETS.DEPTH}-FPN"
    size = configs[0][1].INPUT.MIN_SIZE_TEST
    machine = f"{cpu_model()}, {torch.get_num_threads()} threads"

    print(
        f"bench_inference: {backbone}, DefaultPredictor on {len(images)} COCO images @{size}px, "
        f"{args.dets} dets/img, {args.repeats} rounds, {machine}"
    )
    print(
        f"stock = detectron2 model zoo {STOCK_CONFIG}"
        + (f" given ours' {', '.join(aligned)}" if aligned else " (unchanged)")
    )
    print(
        f"{'model':<22}{'ROI heads':<19}{'ms/img':>7}{'x stock':>9}{'per image':>12}"
        f"{'min ms':>8}{'x stock':>9}{'dets/img':>10}{'box px':>8}"
    )
    for m, (name, predictor) in enumerate(predictors):
        per_image = [a / b for a, b in zip(medians[m], medians[0])]
        print(
            f"{name:<22}{type(predictor.model.roi_heads).__name__:<19}"
            f"{ms[m]:>7.0f}{ms[m] / ms[0]:>8.2f}x"
            f"{min(per_image):>6.2f}-{max(per_image):.2f}{best[m]:>8.0f}{best[m] / best[0]:>8.2f}x"
            f"{statistics.mean(dets[m]):>10.1f}{statistics.mean(box_px[m]):>8.0f}"
        )
    print(
        "(ms/img: mean over images of the median over rounds; per image: range of the per-image"
        " ratio; min ms: same with the fastest round; box px: mean sqrt(box area) in the original"
        " image)"
    )
    noisy = jitter > NOISY
    if args.repeats == 1:
        print(f"timed part {timed:.0f} s; 1 round, so no measure of the noise")
    else:
        print(
            f"timed part {timed:.0f} s; the same call varied by up to {100 * jitter:.0f}% between"
            " rounds"
            + (
                ": other load on the machine? the median ratios are uncertain (the min ones less"
                " so); run again or raise --repeats"
                if noisy
                else ""
            )
        )
    print(
        f"bench_inference: multitask(mask+kp) {backbone} {ms[2]:.0f} ms/img ="
        f" {ms[2] / ms[0]:.2f}x stock Keypoint R-CNN ({ms[0]:.0f} ms/img); kp-only"
        f" {ms[1] / ms[0]:.2f}x; {len(images)} COCO images "
        f"@{size}px, {args.dets} dets/img, {machine}"
        + (f"; NOISY: a call varied by up to {100 * jitter:.0f}%" if noisy else "")
    )


if __name__ == "__main__":
    main()
