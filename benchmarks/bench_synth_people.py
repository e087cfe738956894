"""Benchmark of the SynthPeople generator: render and write 1,000 images of 320 px (JPEG +
COCO json) into a temporary folder, single process, and print one summary line.

    python benchmarks/bench_synth_people.py [--num-images 1000] [--image-size 320] [--crowded]
"""
import argparse
import json
import os
import tempfile
import time

import cv2

from multitask_pose.data.synth_people import SynthPeople
from multitask_pose.env import cpu_model




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-images", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=320)
    ap.add_argument("--crowded", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()

    gen = SynthPeople(args.seed, image_size=args.image_size, crowded=args.crowded)
    with tempfile.TemporaryDirectory(prefix="bench_synth_people-") as tmp:
        t0 = time.perf_counter()
        json_path = gen.write(os.path.join(tmp, "ds"), args.num_images, progress=args.progress)
        dt = time.perf_counter() - t0
        with open(json_path) as f:
            data = json.load(f)
        size_mb = sum(e.stat().st_size for e in os.scandir(os.path.join(tmp, "ds", "images"))) / 1e6
    n = len(data["images"])
    persons = len(data["annotations"])
    print(f"synth_people{'_crowd' if args.crowded else ''}: {n} images ({persons} persons) in {dt:.1f} s = "
          f"{n / dt:.1f} img/s on {cpu_model()}, single process ({os.cpu_count()} CPUs, "
          f"cv2 {cv2.getNumThreads()} threads); {size_mb:.1f} MB of JPEG")


if __name__ == "__main__":
    main()
