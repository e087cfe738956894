#!/usr/bin/env python
"""OKS-NMS speed against the official HRNet / SimpleBaseline algorithm, in one run.

    python benchmarks/bench_oks_nms.py [--repeats N] [--quick]

References written here, both exact:
- "official": the official greedy ``oks_nms`` as published (sort by score; for the best remaining
  pose, ``oks_iou`` with a Python loop over the remaining candidates and numpy over keypoints;
  drop those above the threshold; repeat), with two exceptions that make the keep lists
  comparable: equal scores in input order (the official ``argsort()[::-1]`` leaves their order to
  numpy's sort), and with a visibility threshold the keypoints above it in both poses (as
  published, ``list(vg > t) and list(vd > t)`` is the candidate's mask alone: Python's ``and``
  returns its second list; the official evaluation never passes a threshold);
- "per kept": the same greedy loop with numpy vectorised over the remaining candidates for each
  kept pose (the straightforward vectorisation, for honesty about where the speed comes from).
Ours: ``multitask_pose.shared.oks_nms`` (pruning bound, and all pairs at once when few poses are
duplicates). Candidate sets:
- random: persons (a random 17-point template scaled to 50-300 px, anywhere in 800x800) each with
  D duplicates jittered by 3% of their height, 100 and 1,000 candidates, D = 4 and 20-50;
- real: the 14 annotated persons of the four COCO sample images, each as 8 jittered duplicates
  (their visibility flags as the keypoint scores), per image as the pipeline runs it;
- each at OKS thresholds 0.9 (the official HRNet test setting) and 0.5, without and with a
  visibility threshold of 0.2.
Then the pipeline's duplicate removal (``pose_topdown.modeling.meta_arch.nms_poses``: box IoU-NMS at
0.6, then OKS-NMS at 0.5, TEST.TOPDOWN's defaults; one pose per box, the box around its keypoints
with a 10% margin) against the same two stages done the official way: the classic greedy
IoU-NMS (Fast R-CNN's ``py_cpu_nms``: for each kept box numpy over the remaining ones; IoU
without its +1 pixel, as torchvision's) then the official ``oks_nms`` above, on the same sets.
Every keep list is checked equal to the official one; times are medians. Prints a table and a last
line to paste into a note. About 2 minutes on a quiet 2-core CPU (--quick: 1 repeat).
"""

import argparse

import numpy as np

import multitask_pose  # noqa: F401  (registers the datasets)
from multitask_pose.env import cpu_model
from multitask_pose.shared import oks_nms
from multitask_pose.shared.timing import median_ms

SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87,
     0.89, 0.89]
) / 10.0  # fmt: skip


def official_oks_iou(g, d, a_g, a_d, sigmas, in_vis_thre=None):
    """The official ``oks_iou``: one candidate at a time, numpy over keypoints."""
    vars = (sigmas * 2) ** 2
    xg, yg, vg = g[0::3], g[1::3], g[2::3]
    ious = np.zeros(d.shape[0])
    for n_d in range(0, d.shape[0]):
        xd, yd, vd = d[n_d, 0::3], d[n_d, 1::3], d[n_d, 2::3]
        dx = xd - xg
        dy = yd - yg
        e = (dx**2 + dy**2) / vars / ((a_g + a_d[n_d]) / 2 + np.spacing(1)) / 2
        if in_vis_thre is not None:
            ind = (vg > in_vis_thre) & (vd > in_vis_thre)
            e = e[ind]
        ious[n_d] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
    return ious


def official_oks_nms(kpts, scores, areas, thresh, in_vis_thre=None):
    """The official greedy ``oks_nms`` (equal scores in input order, as ours)."""
    flat = kpts.reshape(len(kpts), -1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        oks_ovr = official_oks_iou(
            flat[i], flat[order[1:]], areas[i], areas[order[1:]], SIGMAS, in_vis_thre
        )
        inds = np.where(oks_ovr <= thresh)[0]
        order = order[inds + 1]
    return keep


def per_kept_oks_nms(kpts, scores, areas, thresh, in_vis_thre=None):
    """The greedy loop with numpy over all remaining candidates per kept pose."""
    var = (2 * SIGMAS) ** 2
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        d = kpts[rest, :, :2] - kpts[i, :, :2]
        e = (d**2).sum(-1) / var / ((areas[i] + areas[rest]) / 2 + np.spacing(1))[:, None] / 2
        if in_vis_thre is None:
            oks = np.exp(-e).mean(-1)
        else:
            both = (kpts[rest, :, 2] > in_vis_thre) & (kpts[i, :, 2] > in_vis_thre)
            n = both.sum(-1)
            oks = np.where(n > 0, (np.exp(-e) * both).sum(-1) / np.maximum(n, 1), 0.0)
        order = rest[oks <= thresh]
    return keep


def official_box_nms(boxes, scores, thresh):
    """The classic greedy IoU-NMS (``py_cpu_nms``): per kept box, numpy over the remaining."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        order = rest[inter / (area[i] + area[rest] - inter) <= thresh]
    return keep


def official_pipeline_nms(boxes, kpts, scores, areas, iou_thresh, oks_thresh):
    """Box IoU-NMS, then the official ``oks_nms`` of the surviving poses."""
    survivors = np.array(official_box_nms(boxes, scores, iou_thresh), dtype=np.int64)
    kept = official_oks_nms(kpts[survivors], scores[survivors], areas[survivors], oks_thresh)
    return survivors[kept].tolist()


def boxes_around(kpts):
    """(N, 4) XYXY boxes around each pose's keypoints with a 10% margin."""
    lo, hi = kpts[..., :2].min(1), kpts[..., :2].max(1)
    pad = 0.1 * (hi - lo)
    return np.concatenate([lo - pad, hi + pad], 1)


def bench_pipeline_nms(cases, repeats, iou_thresh=0.6, oks_thresh=0.5):
    """The pipeline's IoU-NMS + OKS-NMS (nms_poses, torch tensors as the pipeline holds them)
    against the official two stages; prints table rows, returns summary items."""
    import torch

    from pose_topdown.modeling.meta_arch import nms_poses

    sigmas_t = tuple(SIGMAS)  # the pipeline holds them as floats
    print(f"\n| candidates (IoU-NMS {iou_thresh} + OKS-NMS {oks_thresh}) | kept | official ms | "
          "ours ms | vs official |\n|---|---|---|---|---|")  # fmt: skip
    summary = []
    for name, sets in cases:
        ours_in, ref_in, kept = [], [], 0
        for kp, sc, ar in sets:
            # float32 as the pipeline holds them; the official code gets the same values.
            kp, sc, ar = (x.astype(np.float32).astype(np.float64) for x in (kp, sc, ar))
            boxes = boxes_around(kp).astype(np.float32).astype(np.float64)
            t = [torch.as_tensor(x, dtype=torch.float32) for x in (boxes, sc, kp, ar)]
            t.insert(1, torch.arange(len(kp)))
            ref = official_pipeline_nms(boxes, kp, sc, ar, iou_thresh, oks_thresh)
            ours = nms_poses(*t, sigmas_t, iou_thresh, oks_thresh).tolist()
            if ours != ref:
                raise SystemExit(f"bench_oks_nms: pipeline keep lists differ on {name}")
            kept += len(ref)
            ours_in.append(t)
            ref_in.append((boxes, kp, sc, ar))
        t_off = median_ms(
            lambda: [official_pipeline_nms(*a, iou_thresh, oks_thresh) for a in ref_in],
            max(1, repeats // 3),
        )
        t_our = median_ms(
            lambda: [nms_poses(*t, sigmas_t, iou_thresh, oks_thresh) for t in ours_in], repeats
        )
        ratio = t_off / t_our
        ratio = f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"
        print(f"| {name} | {kept} | {t_off:.1f} | {t_our:.2f} | {ratio} |", flush=True)
        summary.append(f"{name} {ratio}")
    return summary


def random_set(rng, n, dup):
    persons = n // dup
    template = rng.uniform(-0.5, 0.5, (17, 2)) * np.array([0.5, 1.0])
    centre = rng.uniform(0, 800, (persons, 1, 1, 2))
    height = rng.uniform(50, 300, (persons, 1, 1, 1))
    jitter = rng.normal(0, 1, (persons, dup, 17, 2)) * height * 0.03
    xy = (centre + height * template + jitter).reshape(-1, 17, 2)
    kpts = np.concatenate([xy, rng.uniform(0, 1, (len(xy), 17, 1))], -1)
    areas = np.repeat(height.reshape(-1), dup) ** 2 / 2
    return kpts, rng.uniform(0, 1, len(kpts)), areas


def real_sets(rng, dup=8):
    """Per COCO sample image: its annotated persons, each ``dup`` times jittered by 3% of its
    box height."""
    from detectron2.data import DatasetCatalog

    sets = []
    for record in DatasetCatalog.get("coco_person_sample"):
        anns = [a for a in record["annotations"] if sum(a["keypoints"][2::3]) > 0]
        if not anns:
            continue
        kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, 17, 3)
        h = np.array([a["bbox"][3] for a in anns], dtype=np.float64)  # XYWH
        kp = np.repeat(kp, dup, axis=0)
        kp[..., :2] += rng.normal(0, 1, kp[..., :2].shape) * np.repeat(h, dup)[:, None, None] * 0.03
        areas = np.repeat(h * np.array([a["bbox"][2] for a in anns]), dup)
        sets.append((kp, rng.uniform(0, 1, len(kp)), areas))
    return sets


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    cases = [
        (f"random {n} (x{dup})", [random_set(rng, n, dup)])
        for n, dup in ((100, 4), (100, 20), (1000, 4), (1000, 50))
    ]
    cases.append(("COCO sample, 4 images (x8)", real_sets(rng)))
    print("| candidates | OKS thresh | vis thresh | kept | official ms | per kept ms | ours ms | "
          "vs official | vs per kept |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    summary = []
    for name, sets in cases:
        for thresh in (0.9, 0.5):
            for vis in (None, 0.2):
                kept = 0
                for kp, sc, ar in sets:
                    ours = oks_nms(kp, sc, ar, SIGMAS, thresh, vis).tolist()
                    ref = official_oks_nms(kp, sc, ar, thresh, vis)
                    if ours != ref or per_kept_oks_nms(kp, sc, ar, thresh, vis) != ref:
                        raise SystemExit(f"bench_oks_nms: keep lists differ on {name}, {thresh}")
                    kept += len(ref)

                def run(f):
                    return lambda: [f(kp, sc, ar) for kp, sc, ar in sets]

                t_off = median_ms(run(lambda k, s, a: official_oks_nms(k, s, a, thresh, vis)),
                                  max(1, repeats // 3))  # fmt: skip
                t_vec = median_ms(run(lambda k, s, a: per_kept_oks_nms(k, s, a, thresh, vis)),
                                  repeats)  # fmt: skip
                t_our = median_ms(run(lambda k, s, a: oks_nms(k, s, a, SIGMAS, thresh, vis)),
                                  repeats)  # fmt: skip
                ratios = f"{t_off / t_our:.0f}x | {t_vec / t_our:.1f}x"
                print(f"| {name} | {thresh} | {vis} | {kept} | {t_off:.1f} | {t_vec:.2f} | "
                      f"{t_our:.2f} | {ratios} |", flush=True)  # fmt: skip
                if vis is None:
                    summary.append(f"{name} @{thresh} {t_off / t_our:.0f}x")
    pipeline = bench_pipeline_nms(cases, repeats)
    print(
        "bench_oks_nms: ours vs the official oks_nms (identical keep lists): "
        + ", ".join(summary)
        + "; the pipeline's IoU-NMS 0.6 + OKS-NMS 0.5 vs py_cpu_nms + the official oks_nms: "
        + ", ".join(pipeline)
        + f"; {cpu_model()}, numpy single thread"
    )


if __name__ == "__main__":
    main()
