"""SynthPeople cached splits: the registered splits, their cache folders, on-demand generation and
the command line (``python -m multitask_pose.data.synth_people``)."""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

from ..keypoints import COCO_PERSON
from .generator import GENERATOR_VERSION, SynthPeople

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthSplit:
    """Parameters of one generated split."""

    num_images: int
    seed: int
    crowded: bool = False
    image_size: int = 320
    basic: bool = False  # the learnable level (see SynthPeople)


SPLITS: Dict[str, SynthSplit] = {
    "synth_people_train": SynthSplit(num_images=2000, seed=0),
    "synth_people_val": SynthSplit(num_images=200, seed=1),
    "synth_people_crowd_val": SynthSplit(num_images=100, seed=2, crowded=True),
    # The basic level: what a from-scratch model learns in minutes on a CPU (tools/
    # synth_people_stats.py prints each split's statistics; the README table comes from it).
    "synth_people_basic_train": SynthSplit(num_images=2000, seed=10, basic=True),
    "synth_people_basic_val": SynthSplit(num_images=200, seed=11, basic=True),
    # Test-sized splits (the test suite's short training runs; also handy for smoke runs).
    "synth_people_mini_train": SynthSplit(num_images=240, seed=100, image_size=256),
    "synth_people_mini_val": SynthSplit(num_images=60, seed=101, image_size=256),
}


def _split(name: str) -> SynthSplit:
    try:
        return SPLITS[name]
    except KeyError:
        raise KeyError(f"unknown SynthPeople split {name!r}; "
                       f"known splits: {sorted(SPLITS)}") from None


def split_dir(name: str, cache_root: str) -> str:
    """The cache folder of split ``name``: ``cache_root/<name>-<hash of the split parameters and
    generator version>``. It holds ``annotations.json`` and ``images/`` once generated."""
    params = json.dumps({"split": asdict(_split(name)), "version": GENERATOR_VERSION,
                         "keypoints": list(COCO_PERSON.keypoint_names)}, sort_keys=True)
    return os.path.join(cache_root, f"{name}-{hashlib.sha1(params.encode()).hexdigest()[:10]}")


def _cache_problem(json_path: str, image_root: str, num_images: int) -> Optional[str]:
    """None when a generated split is complete: its json (written last, atomically) loads, lists
    ``num_images`` images, and each image file is there and not empty; else what is wrong. A
    killed generation never publishes a json, so this finds damage done to the cache later
    (deleted or emptied files, a partial copy)."""
    if not os.path.isfile(json_path):
        return "no annotations.json"
    try:
        with open(json_path) as f:
            images = json.load(f)["images"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"annotations.json does not load: {e}"
    if len(images) != num_images:
        return f"annotations.json lists {len(images)} images, the split has {num_images}"
    for im in images:
        path = os.path.join(image_root, im["file_name"])
        try:
            if os.path.getsize(path) == 0:
                return f"{path} is empty"
        except OSError:
            return f"{path} is missing"
    return None


def ensure_split(name: str, cache_root: str, progress: bool = True) -> Tuple[str, str]:
    """Generate split ``name`` into its cache folder unless it is already there.
    Returns ``(json_path, image_root)``. Concurrent callers wait on a lock file instead of
    generating twice. Unknown names raise KeyError."""
    split = _split(name)
    out = split_dir(name, cache_root)
    json_path, image_root = os.path.join(out, "annotations.json"), os.path.join(out, "images")
    if _cache_problem(json_path, image_root, split.num_images) is None:
        return json_path, image_root
    os.makedirs(cache_root, exist_ok=True)
    lock_path = out + ".lock"
    with open(lock_path, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no cross-process lock, the atomic rename still protects us
            pass
        problem = _cache_problem(json_path, image_root, split.num_images)
        if problem:
            if os.path.exists(json_path):
                logger.warning("SynthPeople cache %s is damaged (%s): generating it again", out,
                               problem)
            logger.info("Generating SynthPeople split %s (%d images) into %s", name,
                        split.num_images, out)
            # Leftovers of interrupted runs (no json; we hold the lock, so nobody is writing them).
            stale = [out] + [os.path.join(cache_root, d) for d in os.listdir(cache_root)
                             if d.startswith(os.path.basename(out) + ".tmp-")]
            for d in stale:
                if os.path.isdir(d):
                    shutil.rmtree(d, ignore_errors=True)
            gen = SynthPeople(split.seed, image_size=split.image_size, crowded=split.crowded,
                              basic=split.basic)
            gen.write(out, split.num_images, progress=progress)
    return json_path, image_root


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description="Generate a SynthPeople split (COCO person keypoints).")
    ap.add_argument("--split", default="synth_people_val", help=f"one of {sorted(SPLITS)}")
    ap.add_argument("--out", required=True,
                    help="output folder (gets images/ and annotations.json)")
    ap.add_argument("--num-images", type=int, default=None, help="override the split's image count")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    split = _split(args.split)
    n = split.num_images if args.num_images is None else args.num_images
    t0 = time.perf_counter()
    path = SynthPeople(split.seed, split.image_size, split.crowded, basic=split.basic).write(
        args.out, n, progress=not args.no_progress)
    dt = time.perf_counter() - t0
    with open(path) as f:
        data = json.load(f)
    kps = sum(a["num_keypoints"] for a in data["annotations"])
    print(f"{args.split}: {len(data['images'])} images, {len(data['annotations'])} persons, "
          f"{kps} keypoints labelled, {dt:.1f} s -> {path}")
    return 0
