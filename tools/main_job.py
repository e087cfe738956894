#!/usr/bin/env python
"""The main job (`make demo`): SynthPeople data, CPU training with periodic evaluation, evaluation,
demo images, and a one-line summary.

Steps, each printed as the command a user would run:
  1. generate (or reuse from the cache) synth_people_train / _val / _crowd_val;
  2. train configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml with tools/train_net.py, which
     evaluates on synth_people_val during and after training (--resume: a killed run continues
     from its last checkpoint; a finished one is only re-evaluated; --fresh starts over), and
     draw its learning curves (tools/plot_curves.py -> learning_curves.png);
  3. evaluate the final model on the crowded split;
  4. run tools/demo.py on val images and on the real COCO sample images;
  5. print `main_job: box AP .., mask AP .., keypoint AP .., N min`.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth.yaml"
TARGETS = {"bbox": 0.5, "keypoints": 0.3}  # the goals on synth_people_val


def run(cmd):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def set_aside_if_recipe_changed(train_dir: Path) -> None:
    """``--resume`` must not continue (or call finished) a run of an older recipe: if the recipe
    changed since ``train_dir`` was trained, move that run aside (kept, not deleted) and start
    over."""
    import hashlib

    import multitask_pose

    cfg = multitask_pose.get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    fingerprint = hashlib.sha256(cfg.dump().encode()).hexdigest()[:16]
    stamp = train_dir / "recipe_fingerprint.txt"
    if train_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
        aside = train_dir.with_name(f"{train_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        train_dir.rename(aside)
        print(
            f"the recipe changed since {train_dir} was trained: moved it to {aside}, training anew",
            flush=True,
        )
    train_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default=str(ROOT / "output" / "main_job"))
    parser.add_argument(
        "--fresh", action="store_true", help="delete --output first and train from scratch"
    )
    parser.add_argument("--demo-images", type=int, default=8, help="val images to draw")
    args = parser.parse_args()

    start = time.perf_counter()
    out = Path(args.output)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    train_dir = out / "train"

    from detectron2.data import DatasetCatalog

    import multitask_pose  # noqa: F401  (registers the datasets)
    from multitask_pose.engine.trainer import summary_line

    print("== 1/4 data", flush=True)
    val = None
    for split in ("synth_people_train", "synth_people_val", "synth_people_crowd_val"):
        dicts = DatasetCatalog.get(split)
        print(
            f"{split}: {len(dicts)} images, {sum(len(d['annotations']) for d in dicts)} persons",
            flush=True,
        )
        val = dicts if split == "synth_people_val" else val

    set_aside_if_recipe_changed(train_dir)
    print("== 2/4 train (evaluates on synth_people_val)", flush=True)
    t_train = time.perf_counter()
    run(
        [
            sys.executable,
            "tools/train_net.py",
            "--config-file",
            RECIPE,
            "--resume",
            "OUTPUT_DIR",
            train_dir,
        ]
    )
    train_min = (time.perf_counter() - t_train) / 60
    weights = train_dir / "model_final.pth"
    run(
        [sys.executable, "tools/plot_curves.py", train_dir, "--output", out / "learning_curves.png"]
    )

    print("== 3/4 evaluate on the crowded split", flush=True)
    crowd_dir = out / "eval_crowd"
    run(
        [
            sys.executable,
            "tools/train_net.py",
            "--config-file",
            RECIPE,
            "--eval-only",
            "MODEL.WEIGHTS",
            weights,
            "DATASETS.TEST",
            "('synth_people_crowd_val',)",
            "OUTPUT_DIR",
            crowd_dir,
        ]
    )

    print("== 4/4 demo", flush=True)
    val_images = [d["file_name"] for d in val[: args.demo_images]]
    run(
        [
            sys.executable,
            "tools/demo.py",
            "--config-file",
            RECIPE,
            "--input",
            *val_images,
            "--output",
            out / "demo_synth",
            "--dataset",
            "synth_people_val",
            "MODEL.WEIGHTS",
            weights,
        ]
    )
    run(
        [
            sys.executable,
            "tools/demo.py",
            "--config-file",
            RECIPE,
            "--input",
            ROOT / "datasets" / "samples" / "coco",
            "--output",
            out / "demo_coco_sample",
            "--dataset",
            "coco_person_sample",
            "MODEL.WEIGHTS",
            weights,
        ]
    )

    results = json.loads((train_dir / "results_synth_people_val.json").read_text())
    crowd = json.loads((crowd_dir / "results_synth_people_crowd_val.json").read_text())
    minutes = (time.perf_counter() - start) / 60
    print(f"demo images: {out / 'demo_synth'}, {out / 'demo_coco_sample'}")
    missed = [
        f"{t} AP {results[t]['AP'] / 100:.3f} < {goal}"
        for t, goal in TARGETS.items()
        if results[t]["AP"] / 100 < goal
    ]
    if missed:
        print("below the issue's targets: " + "; ".join(missed))
    print(
        summary_line(results, prefix="main_job synth_people_val")
        + f", crowd keypoint AP {crowd['keypoints']['AP'] / 100:.3f}"
        + f", train {train_min:.1f} min, total {minutes:.1f} min"
    )


if __name__ == "__main__":
    main()
