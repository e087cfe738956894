#!/usr/bin/env python
"""Speed of the report models of the top-down stage against HRNet-W32, in one run.

    python benchmarks/bench_report_models.py [--batch 8] [--repeats N] [--threads N] [--quick]

1. Forward passes at 256x192 (random weights; speed does not depend on them), batch --batch:
   crops per second of HRNet-W32 (the reference, timed first and last), PCR-ResNet-50 (3 CAMs
   of 256), PCR-HRNet-W32 (1 CAM of 48), HintPose-W32 with 1 and with 3 hops (cue channel on),
   PoseFix-W32; each also as a ratio to HRNet-W32 measured in the same run.
2. Per image on the real COCO sample (4 images, their 14 annotated persons' boxes), flip test
   on, through TopDownPredictor: one HRNet-W32; a heatmap ensemble of three HRNet-W32
   (MODEL.ENSEMBLE, members written to a temporary folder); a PoseFix-W32 refinement of the one
   model's poses (PoseCue + PoseFixHRNet on the same boxes). ms per image and the ratios to one
   model.

Prints a table and a last line to paste into a note. About 3 minutes on a quiet 2-core CPU;
--quick (batch 4, 1 repeat) about a minute.
"""

import argparse
import os
import tempfile
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

SAMPLE = "coco_person_sample"
TOPDOWN = os.path.join(os.path.dirname(__file__), "..", "projects", "TopDown")


def bench_networks(batch, repeats):
    from pose_topdown.modeling import HintPoseHRNet, PCRHRNet, PCRResNet, PoseHighResolutionNet
    from pose_topdown.posefix import PoseFixHRNet

    nets = {
        "HRNet-W32": (PoseHighResolutionNet(width=32), 0),
        "PCR-ResNet-50": (PCRResNet(depth=50, channels=(256, 256, 256)), 0),
        "PCR-HRNet-W32": (PCRHRNet(width=32, channels=(48,)), 0),
        "HintPose-W32 1 hop": (HintPoseHRNet(width=32, hops=1, cue_on=True), 1),
        "HintPose-W32 3 hops": (HintPoseHRNet(width=32, hops=3, cue_on=True), 1),
        "PoseFix-W32": (PoseFixHRNet(width=32), 17),
    }
    x = torch.randn(batch, 3, 256, 192)
    rows = {}
    # The reference is timed first and last (the CPU's state drifts); its mean is the ratios' base.
    order = [*nets, "HRNet-W32"]
    for i, name in enumerate(order):
        net, cue = nets[name]
        net.eval()
        cues = torch.rand(batch, cue, 256, 192) if cue else None
        with torch.no_grad():
            t = median_seconds(lambda: net(x, cues), repeats)
        if i == len(order) - 1:
            print(f"{name:22s} {batch / t:7.1f} crops/s again (first: {rows[name]:.1f})")
            rows[name] = (rows[name] + batch / t) / 2
        else:
            rows[name] = batch / t
            print(f"{name:22s} {rows[name]:7.1f} crops/s ({1000 * t / batch:6.1f} ms/crop)",
                  flush=True)  # fmt: skip
    ref = rows["HRNet-W32"]
    print("ratios to HRNet-W32 (mean of its two timings): "
          + ", ".join(f"{k} {v / ref:.2f}x" for k, v in rows.items()))  # fmt: skip
    return rows


def bench_per_image(repeats):
    from detectron2.data import DatasetCatalog

    from pose_topdown import get_topdown_cfg
    from pose_topdown.predictor import TopDownPredictor

    dicts = DatasetCatalog.get(SAMPLE)
    images = [cv2.imread(d["file_name"]) for d in dicts]
    boxes = []
    for d in dicts:
        anns = [a for a in d["annotations"] if not a.get("iscrowd")]
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes.append(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))
    persons = sum(len(b) for b in boxes) / len(images)
    base = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ALLOW_RANDOM_WEIGHTS", "True",
            "DATASETS.TRAIN", f"('{SAMPLE}',)", "DATASETS.TEST", f"('{SAMPLE}',)",
            "TEST.TOPDOWN.FLIP_TEST", "True"]  # fmt: skip (random weights: timed by design)

    def cfg_of(*opts):
        cfg = get_topdown_cfg()
        cfg.merge_from_file(os.path.join(TOPDOWN, "configs", "COCO", "hrnet_w32_256x192.yaml"))
        cfg.merge_from_list([*base, *opts])
        return cfg

    torch.manual_seed(0)
    one = TopDownPredictor(cfg_of())
    with tempfile.TemporaryDirectory() as tmp:
        configs, weights = [], []
        for i in range(3):
            torch.manual_seed(i)
            member = TopDownPredictor(cfg_of())
            configs.append(os.path.join(tmp, f"m{i}.yaml"))
            weights.append(os.path.join(tmp, f"m{i}.pth"))
            with open(configs[-1], "w") as f:
                f.write(member.cfg.dump())
            torch.save({"model": member.model.state_dict()}, weights[-1])
        ensemble = TopDownPredictor(cfg_of("MODEL.TOPDOWN.POSE_NET", "HeatmapEnsemble",
                                           "MODEL.ENSEMBLE.CONFIGS", str(configs),
                                           "MODEL.ENSEMBLE.WEIGHTS", str(weights)))  # fmt: skip
    # PoseFix as the recipe runs it: its estimator (pose-extent crop, coordinate flip test) and
    # soft-argmax head and codec, every input keypoint drawn.
    refiner = TopDownPredictor(cfg_of("MODEL.META_ARCHITECTURE", "PoseFixEstimator",
                                      "MODEL.TOPDOWN.POSE_NET", "PoseFixHRNet",
                                      "MODEL.TOPDOWN.HEAD.NAME", "SoftArgmaxHead",
                                      "MODEL.TOPDOWN.CUE", "PoseCue",
                                      "MODEL.TOPDOWN.LOSS_NAME", "PoseFixLoss",
                                      "MODEL.TOPDOWN.CODEC.NAME", "SoftArgmaxCodec",
                                      "TEST.TOPDOWN.HINT.SOURCE", "keypoints",
                                      "TEST.TOPDOWN.HINT.SCORE_THRESH", "0.0",
                                      "TEST.TOPDOWN.IOU_NMS_THRESH", "1.0",
                                      "TEST.TOPDOWN.OKS_NMS_THRESH", "1.0"))  # fmt: skip
    first = [one(im, boxes=b) for im, b in zip(images, boxes)]

    def run(predictor, refine=False):
        def go():
            for im, b, out in zip(images, boxes, first):
                if refine:  # the poses to refine, one per box (NMS may have merged some)
                    predictor(im, boxes=out["instances"].pred_boxes.tensor.numpy(),
                              keypoints=out["instances"].pred_keypoints.numpy())  # fmt: skip
                else:
                    predictor(im, boxes=b)

        return median_seconds(go, repeats) / len(images)

    t = {"one HRNet-W32": run(one), "ensemble of 3": run(ensemble),
         "PoseFix refinement": run(refiner, refine=True)}  # fmt: skip
    for name, v in t.items():
        print(f"{name:22s} {1000 * v:7.0f} ms/img ({v / t['one HRNet-W32']:.2f}x one model,"
              f" {persons:.1f} persons/img, flip test)", flush=True)  # fmt: skip
    return t, persons


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="batch 4, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.repeats = 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = bench_networks(args.batch, args.repeats)
    t, persons = bench_per_image(args.repeats)
    ref = rows["HRNet-W32"]
    nets = ", ".join(f"{k} {v:.1f} ({v / ref:.2f}x)" for k, v in rows.items())
    one = t["one HRNet-W32"]
    print(
        f"bench_report_models: 256x192 crops/s at batch {args.batch}: {nets}; per image"
        f" ({persons:.1f} persons, flip test): one HRNet-W32 {1000 * one:.0f} ms, ensemble of 3"
        f" {1000 * t['ensemble of 3']:.0f} ms ({t['ensemble of 3'] / one:.2f}x), PoseFix"
        f" refinement {1000 * t['PoseFix refinement']:.0f} ms"
        f" ({t['PoseFix refinement'] / one:.2f}x); {cpu_model()}, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
