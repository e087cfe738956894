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

from ...shared.atomic_io import write_json_atomic
from ..converters import aic_raw_from_coco, convert_aic
from ..keypoints import LAYOUTS
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
    # "coco" (COCO's 17 keypoints) or "aic": AI Challenger's 14 (head top and neck added), and
    # published in AI Challenger's raw release format, read back by its converter.
    layout: str = "coco"
    # What the registered dataset shows of the generated annotations: "" all of them;
    # "unlabelled" none (images to pseudo-label; the annotation file stays for measuring the
    # pseudo-labels); "inconsistent" a seeded INCONSISTENT_FRACTION of the persons with their
    # keypoints displaced from their box (data selection's target, make_inconsistent).
    view: str = ""


INCONSISTENT_FRACTION = 0.3

SPLITS: Dict[str, SynthSplit] = {
    "synth_people_train": SynthSplit(num_images=2000, seed=0),
    "synth_people_val": SynthSplit(num_images=200, seed=1),
    "synth_people_crowd_val": SynthSplit(num_images=100, seed=2, crowded=True),
    # The basic level: what a from-scratch model learns in minutes on a CPU (tools/
    # synth_people_stats.py prints each split's statistics; the README table comes from it).
    "synth_people_basic_train": SynthSplit(num_images=2000, seed=10, basic=True),
    "synth_people_basic_val": SynthSplit(num_images=200, seed=11, basic=True),
    # The data-strategy study's extra training data (tools/data_study.py), all at the basic level:
    # another dataset in AI Challenger's layout and format, unlabelled images, and annotations
    # partly inconsistent.
    "synth_people_aic_train": SynthSplit(num_images=2000, seed=12, basic=True, layout="aic"),
    "synth_people_basic_unlabelled": SynthSplit(2000, seed=13, basic=True, view="unlabelled"),
    "synth_people_basic_inconsistent": SynthSplit(2000, seed=14, basic=True, view="inconsistent"),
    # Test-sized splits (the test suite's short training runs; also handy for smoke runs).
    "synth_people_mini_train": SynthSplit(num_images=240, seed=100, image_size=256),
    "synth_people_mini_val": SynthSplit(num_images=60, seed=101, image_size=256),
}


def _split(name: str) -> SynthSplit:
    try:
        return SPLITS[name]
    except KeyError:
        raise KeyError(
            f"unknown SynthPeople split {name!r}; known splits: {sorted(SPLITS)}"
        ) from None


def split_dir(name: str, cache_root: str) -> str:
    """The cache folder of split ``name``: ``cache_root/<name>-<hash of the split parameters and
    generator version>``. It holds ``annotations.json`` and ``images/`` once generated."""
    split = _split(name)
    fields = asdict(split)
    for key, default in (("layout", "coco"), ("view", "")):  # (the keys of the first splits)
        if fields[key] == default:
            del fields[key]
    params = json.dumps(
        {
            "split": fields,
            "version": GENERATOR_VERSION,
            "keypoints": list(LAYOUTS[split.layout].keypoint_names),
        },
        sort_keys=True,
    )
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
                logger.warning(
                    "SynthPeople cache %s is damaged (%s): generating it again", out, problem
                )
            logger.info(
                "Generating SynthPeople split %s (%d images) into %s", name, split.num_images, out
            )
            # Leftovers of interrupted runs (no json; we hold the lock, so nobody is writing them).
            stale = [out] + [
                os.path.join(cache_root, d)
                for d in os.listdir(cache_root)
                if d.startswith(os.path.basename(out) + ".tmp-")
            ]
            for d in stale:
                if os.path.isdir(d):
                    shutil.rmtree(d, ignore_errors=True)
            gen = SynthPeople(
                split.seed,
                image_size=split.image_size,
                crowded=split.crowded,
                basic=split.basic,
                spec=LAYOUTS[split.layout],
            )
            gen.write(out, split.num_images, progress=progress)
    return json_path, image_root


def ensure_aic_split(name: str, cache_root: str, progress: bool = True) -> Tuple[str, str]:
    """An "aic" layout split as AI Challenger publishes it, then converted back: generated
    (:func:`ensure_split`), written in the raw release format (``aic_raw.json``,
    :func:`~multitask_pose.data.converters.aic_raw_from_coco`) and read by the converter as it
    reads the real release (``aic_converted.json``, its own 14 keypoints). Each file is written
    atomically and once. Returns ``(converted json, image_root)``."""
    if _split(name).layout != "aic":
        raise ValueError(f"SynthPeople split {name!r} is not in AI Challenger's layout")
    json_path, image_root = ensure_split(name, cache_root, progress)
    out = os.path.dirname(json_path)
    raw, converted = os.path.join(out, "aic_raw.json"), os.path.join(out, "aic_converted.json")
    if not os.path.isfile(raw):
        with open(json_path) as f:
            write_json_atomic(raw, aic_raw_from_coco(json.load(f)))
    if not os.path.isfile(converted):
        convert_aic(raw, image_root, converted, layout="own")
    return converted, image_root


def view_dicts(dicts, split: SynthSplit):
    """The registered dataset's dicts of ``split`` (its ``view``)."""
    if split.view == "unlabelled":
        return [
            {k: v for k, v in d.items() if k != "annotations"} | {"annotations": []} for d in dicts
        ]
    if split.view == "inconsistent":
        return make_inconsistent(dicts, INCONSISTENT_FRACTION, split.seed)
    return dicts


def make_inconsistent(dicts, fraction: float, seed: int):
    """Copies of detectron2 dataset dicts in which a seeded ``fraction`` of the persons with
    labelled keypoints have them all moved together, away from their box, by 1.3-2 times the
    square root of the box area in a random direction (points leaving the image unlabelled):
    box and keypoints disagree as in the annotations the OKS team's data selection removes.
    Every annotation gets ``inconsistent`` True or False."""
    import numpy as np
    from detectron2.structures import BoxMode

    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(7,)))
    out = []
    for d in dicts:
        anns = []
        for a in d.get("annotations", []):
            a = dict(a, inconsistent=False)
            kp = np.asarray(a.get("keypoints", ()), dtype=np.float64).reshape(-1, 3)
            draw = rng.random(3)  # always three draws per person: the choice stays per person
            if len(kp) and (kp[:, 2] > 0).any() and draw[0] < fraction:
                x, y, w, h = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYWH_ABS)
                angle, length = 2 * np.pi * draw[1], (1.3 + 0.7 * draw[2]) * np.sqrt(w * h)
                lab = kp[:, 2] > 0
                kp[lab, :2] += length * np.array([np.cos(angle), np.sin(angle)])
                inside = ((kp[:, 0] >= 0) & (kp[:, 0] < d["width"]) & (kp[:, 1] >= 0)
                          & (kp[:, 1] < d["height"]))  # fmt: skip
                kp[~inside] = 0
                a["keypoints"], a["inconsistent"] = kp.reshape(-1).tolist(), True
            anns.append(a)
        out.append({**d, "annotations": anns})
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description="Generate a SynthPeople split (COCO person keypoints)."
    )
    ap.add_argument("--split", default="synth_people_val", help=f"one of {sorted(SPLITS)}")
    ap.add_argument(
        "--out", required=True, help="output folder (gets images/ and annotations.json)"
    )
    ap.add_argument("--num-images", type=int, default=None, help="override the split's image count")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    split = _split(args.split)
    n = split.num_images if args.num_images is None else args.num_images
    t0 = time.perf_counter()
    path = SynthPeople(split.seed, split.image_size, split.crowded, basic=split.basic).write(
        args.out, n, progress=not args.no_progress
    )
    dt = time.perf_counter() - t0
    with open(path) as f:
        data = json.load(f)
    kps = sum(a["num_keypoints"] for a in data["annotations"])
    print(
        f"{args.split}: {len(data['images'])} images, {len(data['annotations'])} persons, "
        f"{kps} keypoints labelled, {dt:.1f} s -> {path}"
    )
    return 0
