#!/usr/bin/env python
"""Top-down stage speed: HRNet-W32 crops per second, OKS-NMS against a per-pair loop, and the
whole two-stage pipeline per image with and without flip test.

    python benchmarks/bench_topdown.py [--batches 1 8 32] [--candidates 100 1000] [--repeats N]
                                       [--threads N] [--quick]

1. HRNet-W32 at 256x192 (random weights; speed does not depend on them), forward only, at each
   batch size: crops per second (median of --repeats runs after one warm-up).
2. OKS-NMS (multitask_pose.evaluation.oks.oks_nms, threshold 0.5, COCO sigmas) on N candidate
   poses (clusters of jittered copies of random poses, as detections of one image look) against a
   straightforward implementation that computes each pair's OKS in a Python loop over candidates
   (the official HRNet oks_nms shape, one numpy call per pair); both must keep the same poses.
3. Two-stage pipeline on the real COCO sample (4 images): detectron2's Faster R-CNN R-50-FPN at
   800 px (random weights: the first stage's cost) then HRNet-W32 256x192 on the sample's real
   person detections (test_coco_det_AP_H_56.json, all 118 boxes, as the official test uses every
   box), through TopDownPredictor (its default TEST.TOPDOWN.BACKEND), with and without flip test:
   ms per image; then, with flip test, ms per image of each stage (reading the JPEG, the detector,
   crops, the pose network, flip, decoding, rescoring + NMS, the rest of the predictor call) and
   the share of everything outside the two networks (the goal: at most 10%).

Prints a table and a last line to paste into a note. About 4 minutes on a quiet 2-core CPU;
--quick (batches 1 and 8, 100 and 300 candidates, 1 repeat) about 1 minute.
"""

import argparse
import os
import time
import warnings

warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning
)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import multitask_pose  # noqa: E402,F401  (registers the datasets)
from multitask_pose.data.keypoints import COCO_PERSON  # noqa: E402
from multitask_pose.env import cpu_model  # noqa: E402
from multitask_pose.shared import oks_nms  # noqa: E402
from multitask_pose.shared.timing import median_seconds  # noqa: E402

SIGMAS = np.array(COCO_PERSON.oks_sigmas)


def bench_hrnet(batches, repeats):
    from pose_topdown.modeling import PoseHighResolutionNet

    model = PoseHighResolutionNet(width=32).eval()
    rows = {}
    for b in batches:
        x = torch.randn(b, 3, 256, 192)
        with torch.no_grad():
            t = median_seconds(lambda: model(x), repeats)
        rows[b] = b / t
        print(
            f"HRNet-W32 256x192 batch {b:3d}: {rows[b]:7.1f} crops/s ({1000 * t / b:.1f} ms/crop)",
            flush=True,
        )
    return rows


def oks_nms_loop(kpts, scores, areas, thresh):
    """The straightforward reference: greedy NMS, one OKS computation per pair in Python."""
    var = (SIGMAS * 2) ** 2
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order[0]
        keep.append(i)
        rest = []
        for j in order[1:]:
            d2 = ((kpts[j, :, :2] - kpts[i, :, :2]) ** 2).sum(-1)
            oks = np.exp(-d2 / var / ((areas[i] + areas[j]) / 2 + np.spacing(1)) / 2).mean()
            if oks <= thresh:
                rest.append(j)
        order = rest
    return keep


def bench_oks_nms(counts, repeats):
    rng = np.random.default_rng(0)
    rows = {}
    for n in counts:
        people = max(1, n // 10)
        base = rng.uniform(0, 600, (people, 1, 17, 2))
        kpts = (base + rng.normal(0, 6, (people, n // people + 1, 17, 2))).reshape(-1, 17, 2)[:n]
        kpts = np.concatenate([kpts, rng.uniform(0, 1, (n, 17, 1))], -1)
        areas = rng.uniform(2000, 40000, n)
        scores = rng.uniform(0, 1, n)
        t_kpts, t_scores, t_areas = map(torch.from_numpy, (kpts, scores, areas))
        ours = oks_nms(t_kpts, t_scores, t_areas, SIGMAS, 0.5).tolist()
        ref = oks_nms_loop(kpts, scores, areas, 0.5)
        if ours != [int(i) for i in ref]:
            raise AssertionError(f"oks_nms and the loop keep different poses for {n} candidates")
        t_ours = median_seconds(lambda: oks_nms(t_kpts, t_scores, t_areas, SIGMAS, 0.5), repeats)
        loop_repeats = max(1, repeats // 2)
        t_loop = median_seconds(lambda: oks_nms_loop(kpts, scores, areas, 0.5), loop_repeats)
        rows[n] = (t_ours, t_loop, len(ours))
        print(
            f"OKS-NMS {n:5d} candidates ({len(ours)} kept): {1000 * t_ours:8.2f} ms"
            f" vs loop {1000 * t_loop:9.1f} ms ({t_loop / t_ours:.0f}x faster)",
            flush=True,
        )
    return rows


def bench_pipeline(repeats):
    from detectron2 import model_zoo
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.engine import DefaultPredictor

    from pose_topdown import get_topdown_cfg
    from pose_topdown.data import load_detection_file
    from pose_topdown.predictor import TopDownPredictor

    dicts = DatasetCatalog.get("coco_person_sample")
    dets = load_detection_file(
        MetadataCatalog.get("coco_person_sample").detections_file, [d["image_id"] for d in dicts]
    )
    images = [cv2.imread(d["file_name"]) for d in dicts]
    det_cfg = get_cfg()
    det_cfg.merge_from_file(
        model_zoo.get_config_file("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml")
    )
    det_cfg.MODEL.DEVICE, det_cfg.MODEL.WEIGHTS = "cpu", ""
    torch.manual_seed(0)
    detector = DefaultPredictor(det_cfg)
    cfg = get_topdown_cfg()
    cfg.merge_from_file(
        os.path.join(
            os.path.dirname(__file__),
            "..",
            "projects",
            "TopDown",
            "configs",
            "COCO",
            "hrnet_w32_256x192.yaml",
        )
    )
    cfg.merge_from_list(
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            "",
            "MODEL.ALLOW_RANDOM_WEIGHTS",  # timed with random weights, by design
            "True",
            "DATASETS.TRAIN",
            "('coco_person_sample',)",
            "DATASETS.TEST",
            "('coco_person_sample',)",
        ]
    )
    pose = TopDownPredictor(cfg)
    boxes = [dets[d["image_id"]] for d in dicts]
    n_boxes = sum(len(b) for b, _ in boxes)

    def run_detector():
        for im in images:
            detector(im)

    def run_pose(flip):
        pose.model.flip_test = flip
        for im, (b, s) in zip(images, boxes):
            pose(im, boxes=b, scores=s)

    t_det = median_seconds(run_detector, repeats) / len(images)
    t_pose = {
        flip: median_seconds(lambda: run_pose(flip), repeats) / len(images)
        for flip in (False, True)
    }
    breakdown = pipeline_breakdown(dicts, detector, pose, boxes, repeats)
    for flip in (False, True):
        print(
            f"two-stage, flip test {'on ' if flip else 'off'}: detector {1000 * t_det:.0f} + poses"
            f" {1000 * t_pose[flip]:.0f} = {1000 * (t_det + t_pose[flip]):.0f} ms/img"
            f" ({n_boxes / len(images):.1f} persons/img)",
            flush=True,
        )
    return t_det, t_pose, n_boxes / len(images), breakdown


def pipeline_breakdown(dicts, detector, pose, boxes, repeats):
    """ms per image of each stage of the two-stage pipeline with flip test (the official test
    setting): reading and decoding the JPEG, the detector, then the pose stage's own marks
    (pose_topdown.runtime.StageTimes: crop, pose network, flip, decode, rescore + NMS) and the rest
    of the predictor call ("other": array checks, image to tensor, box filters, Instances). The
    sum of the mean over ``repeats`` passes; prints the table, returns {stage: ms per image}."""
    from pose_topdown.runtime import StageTimes

    pose.model.flip_test = True
    totals = {}

    def add(name, seconds):
        totals[name] = totals.get(name, 0.0) + seconds

    for _ in range(repeats):
        for d, (b, s) in zip(dicts, boxes):
            t = time.perf_counter()
            im = cv2.imread(d["file_name"])
            add("read + decode image", time.perf_counter() - t)
            t = time.perf_counter()
            detector(im)
            add("detector", time.perf_counter() - t)
            t = time.perf_counter()
            with StageTimes() as st:
                pose(im, boxes=b, scores=s)
            whole = time.perf_counter() - t
            for name, sec in st.seconds.items():
                add(name, sec)
            add("other", whole - sum(st.seconds.values()))
    n = repeats * len(dicts)
    ms = {k: 1000 * v / n for k, v in totals.items()}
    total = sum(ms.values())
    outside = total - ms["detector"] - ms["pose network"]
    for k, v in ms.items():
        print(f"  {k:20s} {v:8.1f} ms/img  {100 * v / total:5.1f}%", flush=True)
    print(f"  outside the two networks: {outside:.1f} ms/img ({100 * outside / total:.1f}%)")
    return ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--candidates", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--quick", action="store_true", help="batches 1 8, candidates 100 300, 1 repeat"
    )
    args = ap.parse_args()
    if args.quick:
        args.batches, args.candidates, args.repeats = [1, 8], [100, 300], 1
    if args.threads:
        torch.set_num_threads(args.threads)
    hr = bench_hrnet(args.batches, args.repeats)
    nms_rows = bench_oks_nms(args.candidates, args.repeats)
    t_det, t_pose, per_img, breakdown = bench_pipeline(args.repeats)
    crops = ", ".join(f"batch {b} {v:.1f}" for b, v in hr.items())
    outside = sum(breakdown.values()) - breakdown["detector"] - breakdown["pose network"]
    nms_txt = ", ".join(
        f"{n}: {1000 * a:.2f} ms vs {1000 * b:.0f} ms ({b / a:.0f}x)"
        for n, (a, b, _) in nms_rows.items()
    )
    print(
        f"bench_topdown: HRNet-W32 256x192 crops/s {crops}; OKS-NMS {nms_txt};"
        f" two-stage (R-50 Faster R-CNN 800px + HRNet-W32, {per_img:.1f} persons/img)"
        f" {1000 * (t_det + t_pose[False]):.0f} ms/img,"
        f" flip test {1000 * (t_det + t_pose[True]):.0f} ms/img"
        f" ({(t_det + t_pose[True]) / (t_det + t_pose[False]):.2f}x); breakdown with flip test"
        f" ({', '.join(f'{k} {v:.0f}' for k, v in breakdown.items())} ms/img):"
        f" {100 * outside / sum(breakdown.values()):.1f}% outside the two networks;"
        f" {cpu_model()}, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
