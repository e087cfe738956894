#!/usr/bin/env python
"""How the top-down stage's time grows with persons per image and with images.

    python benchmarks/bench_topdown_scaling.py [--config hrnet_w18_small_synth_basic.yaml]
                                               [--persons 1 5 20 50] [--images 10 100 1000]
                                               [--repeats N] [--weights model.pth] [--quick]

The network is the small CPU recipe's (HRNet-W18-small, 96x64 crops; random weights unless
--weights: the time does not depend on the values), with the recipe's test settings (flip test,
its TEST.TOPDOWN.BACKEND default).
1. Persons: ``TopDownPredictor(image, boxes=...)`` on one SynthPeople basic-level image with 1, 5,
   20 and 50 boxes (random boxes of 60-300 px inside the image; the same boxes at every repeat):
   ms per image, median of --repeats calls after one warm-up, and how much of it the pose
   network takes (``pose_topdown.runtime.StageTimes``, one more pass).
2. Images: the evaluator (``TopDownTrainer.test``: data loader, ground-truth boxes, the model,
   PoseCOCOEvaluator with COCO evaluation) on the first 10, 100 and 1,000 images of
   ``synth_people_basic_train`` (1-4 persons each), each a registered subset: seconds and ms per
   image. One warm-up evaluation of 10 images first, so the one-time build of the inference
   backend (an ONNX export on the CPU; printed) is not counted in the smallest set.
The persons series gets a least-squares line ``time = fixed + slope * persons``; the images
series the spread of its ms per image (largest / smallest). The goal: linear curves, with no
per-image set-up cost that dominates small images. Prints tables and a last line to paste into
a note. About 2 minutes on a quiet 2-core CPU; --quick: 1, 5, 20 persons and 10, 100 images,
1 repeat.
"""

import argparse
import json
import os
import tempfile
import time
import warnings

warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import multitask_pose  # noqa: E402,F401  (registers the datasets)
from multitask_pose.env import cpu_model  # noqa: E402
from multitask_pose.shared.timing import median_seconds  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIGS = os.path.join(ROOT, "projects", "TopDown", "configs", "Synthetic")
SOURCE = "synth_people_basic_train"


def line_fit(ns, ts):
    """Least-squares ``t = fixed + slope * n``; returns fixed and slope."""
    slope, fixed = np.polyfit(np.asarray(ns, float), np.asarray(ts, float), 1)
    return fixed, slope


def build_cfg(config, weights, out):
    from pose_topdown import get_topdown_cfg

    cfg = get_topdown_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, config) if not os.path.isfile(config) else config)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.ALLOW_RANDOM_WEIGHTS = True  # the timing holds for random weights too
    cfg.OUTPUT_DIR = out
    return cfg


def bench_persons(cfg, counts, repeats, rng):
    from detectron2.data import DatasetCatalog

    from pose_topdown.predictor import TopDownPredictor
    from pose_topdown.runtime import StageTimes

    predictor = TopDownPredictor(cfg)
    record = DatasetCatalog.get("synth_people_basic_val")[0]
    image = cv2.imread(record["file_name"])
    h, w = image.shape[:2]
    t0 = time.perf_counter()
    predictor(image, boxes=[[0, 0, w / 2, h]])  # the backend's one-time build
    build_s = time.perf_counter() - t0
    print(f"\n| persons per image ({w}x{h} image) | ms per image | ms per person | pose network |"
          "\n|---|---|---|---|")  # fmt: skip
    times, network = [], []
    for n in counts:
        size = rng.uniform(60, min(300, h), (n, 1))
        lo = rng.uniform(0, 1, (n, 2)) * (np.array([w, h]) - size * np.array([0.5, 1.0]))
        boxes = np.concatenate([lo, lo + size * np.array([0.5, 1.0])], 1)
        t = median_seconds(lambda: predictor(image, boxes=boxes), repeats)
        with StageTimes() as st:
            for _ in range(repeats):
                predictor(image, boxes=boxes)
        share = st.seconds["pose network"] / sum(st.seconds.values())
        times.append(t)
        network.append(share)
        print(f"| {n} | {1000 * t:.1f} | {1000 * t / n:.2f} | {100 * share:.0f}% |", flush=True)
    return times, network, build_s


def register_subset(n, out):
    """The first ``n`` images of SOURCE (with their annotations) as ``bench_scaling_<n>``."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from multitask_pose.data.datasets import register_coco_person

    DatasetCatalog.get(SOURCE)  # generates the split when its cache is missing
    meta = MetadataCatalog.get(SOURCE)
    with open(meta.json_file) as f:
        data = json.load(f)
    if n > len(data["images"]):
        raise SystemExit(
            f"bench_topdown_scaling: {SOURCE} has {len(data['images'])} images, not {n}"
        )
    data["images"] = data["images"][:n]
    ids = {im["id"] for im in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    name = f"bench_scaling_{n}"
    path = os.path.join(out, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f)
    if name not in DatasetCatalog.list():
        register_coco_person(name, path, meta.image_root)
    return name, len(data["annotations"])


def bench_images(cfg, counts, out):
    from pose_topdown.engine import TopDownTrainer

    model = TopDownTrainer.build_model(cfg)
    model.eval()
    print("\n| images | persons | evaluation s | ms per image |\n|---|---|---|---|")
    times = []
    for i, n in enumerate([counts[0]] + list(counts)):
        name, persons = register_subset(n, out)
        c = cfg.clone()
        c.DATASETS.TEST = (name,)
        t = time.perf_counter()
        TopDownTrainer.test(c, model)
        t = time.perf_counter() - t
        if i == 0:
            print(f"(warm-up on {n} images, the backend's build included: {t:.1f} s)")
            continue
        times.append(t)
        print(f"| {n} | {persons} | {t:.1f} | {1000 * t / n:.1f} |", flush=True)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="hrnet_w18_small_synth_basic.yaml")
    ap.add_argument("--persons", type=int, nargs="+", default=[1, 5, 20, 50])
    ap.add_argument("--images", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--weights", default="", help="a checkpoint (default: random weights)")
    ap.add_argument("--quick", action="store_true", help="1 5 20 persons, 10 100 images, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.persons, args.images, args.repeats = [1, 5, 20], [10, 100], 1
    counts = (args.persons, args.images)
    if any(min(c) < 1 or len(c) < 2 for c in counts):
        ap.error("--persons and --images need at least two counts, each at least 1")
    torch.manual_seed(0)
    import logging

    logging.getLogger("detectron2").setLevel(logging.WARNING)  # the per-image progress lines
    with tempfile.TemporaryDirectory() as out:
        cfg = build_cfg(args.config, args.weights, out)
        rng = np.random.default_rng(0)
        p_times, p_network, build_s = bench_persons(cfg, args.persons, args.repeats, rng)
        i_times = bench_images(cfg, args.images, out)
    p_fixed, p_slope = line_fit(args.persons, p_times)
    per_image = [t / n for n, t in zip(args.images, i_times)]
    size = "x".join(map(str, cfg.MODEL.TOPDOWN.INPUT_SIZE))
    print(
        f"bench_topdown_scaling: {cfg.MODEL.TOPDOWN.POSE_NET} {size}"
        f" ({cfg.TEST.TOPDOWN.BACKEND} backend, built in {build_s:.1f} s), flip test"
        f" {cfg.TEST.TOPDOWN.FLIP_TEST}: per image with "
        + ", ".join(f"{n} persons {1000 * t:.0f} ms" for n, t in zip(args.persons, p_times))
        + f" (line: {1000 * p_fixed:.1f} ms + {1000 * p_slope:.2f} ms/person; the pose network"
        f" {100 * p_network[0]:.0f}% of the {args.persons[0]}-person time,"
        f" {100 * p_network[-1]:.0f}% at {args.persons[-1]}); evaluator "
        + ", ".join(
            f"{n} images {t:.1f} s ({1000 * t / n:.0f} ms/image)"
            for n, t in zip(args.images, i_times)
        )
        + f" (ms per image within {max(per_image) / min(per_image):.2f}x across sizes);"
        f" {cpu_model()}, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
