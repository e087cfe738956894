#!/usr/bin/env python
"""Inference speed of the person detectors against Faster R-CNN, in one run.

    python benchmarks/bench_detectors.py [--min-size 800] [--repeats N] [--threads N] [--quick]

R-50-FPN person detectors from configs/COCO-PersonDetection at one input size (shorter side
--min-size, longer at most 1333/800 of it, detectron2's resizing), through detectron2's
DefaultPredictor on the four real COCO sample images: Faster R-CNN (the cascade recipe with
detectron2's StandardROIHeads and no mask head; the reference, timed first and last), Cascade
Mask R-CNN, HTC without its semantic branch, HTC, and HTC + keypoints. Random weights (speed does
not depend on them), with the backbone's frozen BatchNorm statistics set from one image, layer by
layer (with identity statistics a random R-50's features overflow and every box is dropped), and
the score threshold at 0, so every model returns its full 100 boxes per image and the mask and
keypoint heads run on the same number of boxes. Prints ms/image, each as
a ratio to Faster R-CNN, and a last line to paste into a note. About 4 minutes on a quiet 2-core
CPU at 800; --quick (shorter side 512, 1 repeat) about a minute.
"""

import argparse
import os
import warnings

warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
)

import torch  # noqa: E402

import multitask_pose  # noqa: E402,F401  (registers the datasets)
from multitask_pose.env import cpu_model  # noqa: E402
from multitask_pose.shared.timing import median_seconds  # noqa: E402

SAMPLE = "coco_person_sample"
RECIPES = os.path.join(os.path.dirname(__file__), "..", "configs", "COCO-PersonDetection")
# name -> (recipe, overrides)
DETECTORS = {
    "Faster R-CNN": (
        "cascade_mask_rcnn_R_50_FPN_1x.yaml",
        ["MODEL.ROI_HEADS.NAME", "StandardROIHeads", "MODEL.MASK_ON", "False"],
    ),
    "Cascade Mask R-CNN": ("cascade_mask_rcnn_R_50_FPN_1x.yaml", []),
    "HTC without semantic": ("htc_R_50_FPN_1x.yaml", ["MODEL.HTC.SEMANTIC_ON", "False"]),
    "HTC": ("htc_R_50_FPN_1x.yaml", []),
    "HTC + keypoints": ("htc_keypoint_R_50_FPN_1x.yaml", []),
}


def normalise_backbone(run, image):
    """Set every FrozenBatchNorm2d's statistics to its input's on ``image``, in forward order, so
    a random-weight backbone gives finite, unit-scale features."""
    from detectron2.layers import FrozenBatchNorm2d

    def set_stats(module, inputs):
        x = inputs[0]
        module.running_mean = x.mean(dim=(0, 2, 3))
        module.running_var = x.var(dim=(0, 2, 3))

    hooks = [
        m.register_forward_pre_hook(set_stats)
        for m in run.model.backbone.modules()
        if isinstance(m, FrozenBatchNorm2d)
    ]
    run(image)
    for h in hooks:
        h.remove()


def predictor(recipe, opts, min_size):
    from detectron2.engine import DefaultPredictor

    cfg = multitask_pose.get_multitask_cfg()
    cfg.merge_from_file(os.path.join(RECIPES, recipe))
    cfg.merge_from_list(opts)
    cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = "", "cpu"
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.INPUT.MIN_SIZE_TEST = min_size
    cfg.INPUT.MAX_SIZE_TEST = round(min_size * 1333 / 800)
    torch.manual_seed(0)
    return DefaultPredictor(cfg)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min-size", type=int, default=800, help="shorter image side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="shorter side 512, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.min_size, args.repeats = 512, 1
    torch.set_num_threads(args.threads)
    from detectron2.data import DatasetCatalog
    from detectron2.data.detection_utils import read_image

    images = [read_image(r["file_name"], format="BGR") for r in DatasetCatalog.get(SAMPLE)]
    times = {}
    order = [*DETECTORS, "Faster R-CNN"]  # the reference first and last: the CPU's state drifts
    for name in order:
        run = predictor(*DETECTORS[name], args.min_size)
        normalise_backbone(run, images[0])
        boxes = []

        def all_images():
            boxes.append(sum(len(run(im)["instances"]) for im in images))

        t = median_seconds(all_images, args.repeats) / len(images) * 1000
        times.setdefault(name, []).append(t)
        print(
            f"{name:22s} {t:8.0f} ms/image ({boxes[-1] / len(images):.0f} boxes/image)", flush=True
        )
    ms = {name: sum(v) / len(v) for name, v in times.items()}
    base = ms["Faster R-CNN"]
    first_last = " / ".join(f"{t:.0f}" for t in times["Faster R-CNN"])
    print(f"\nFaster R-CNN timed first and last: {first_last} ms")
    print("| detector | ms/image | vs Faster R-CNN |\n|---|---|---|")
    for name in DETECTORS:
        print(f"| {name} | {ms[name]:.0f} | {ms[name] / base:.2f}x |")
    print(
        f"bench_detectors: R-50-FPN person detectors, shorter side {args.min_size}, "
        "100 boxes/image: "
        + ", ".join(f"{name} {ms[name]:.0f} ms ({ms[name] / base:.2f}x)" for name in DETECTORS)
        + f"; {cpu_model()}, {args.threads} threads"
    )


if __name__ == "__main__":
    main()
