"""Resumable person detection over many images into a COCO detection-results file: the runner of
``tools/detect_persons.py`` (and of any tool that must run a detector over a dataset and survive
a kill, such as pseudo-labelling).

Each finished image is appended to ``<output>.partial<rank>.jsonl`` (one line per image, flushed
and fsynced), so a killed run continues where it stopped (``resume=True`` skips the images already
there; a line cut short by the kill is dropped and its image redone; each line names its file,
so a resume over a changed input is refused rather than mixing images). ``overwrite=True`` starts
again whatever an earlier run left (the output, partial files, or neither). An image that
``read_image`` returns as None (a damaged file the caller skips) is done with no detections and
counted. Several processes share the images (every world-size-th one each). At the end the
detections of every image are written to ``<output>`` atomically, in the order of the input, and
the partial files are removed.
"""

import glob
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tqdm
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from ..shared.atomic_io import write_json_atomic
from ..shared.person_boxes import filter_person_boxes

__all__ = [
    "DetectionItem",
    "OutputExistsError",
    "check_output",
    "filter_detections",
    "run_person_detection",
]

logger = logging.getLogger(__name__)


class OutputExistsError(FileExistsError):
    """The output (or an unfinished run's partial file) exists and neither resume nor overwrite
    was asked for."""


@dataclass(frozen=True)
class DetectionItem:
    image_id: int
    file_name: str


def filter_detections(instances, person_class: int, score_thresh: float, min_size: float,
                      topk: int, masks: bool):  # fmt: skip
    """The person instances (class ``person_class``) that :func:`filter_person_boxes` keeps:
    scoring at least ``score_thresh``, the box's shorter side at least ``min_size`` pixels, the
    ``topk`` best (0: all), best first; masks dropped unless ``masks``."""
    people = instances[instances.pred_classes == person_class]
    *_, idx = filter_person_boxes(people.pred_boxes.tensor, people.scores, people.image_size,
                                  score_thresh, topk, min_size, return_index=True)  # fmt: skip
    out = people[idx]
    if not masks and out.has("pred_masks"):
        out.remove("pred_masks")
    return out


def _read_partials(output: str) -> Dict[int, Dict]:
    """The rows of the images finished by any process of earlier or current runs
    (``output.partial*.jsonl``), by image id."""
    done = {}
    for path in sorted(glob.glob(glob.escape(output) + ".partial*.jsonl")):
        with open(path) as f:
            for n, line in enumerate(f):
                try:
                    row = json.loads(line)
                    if not isinstance(row.get("detections"), list):
                        raise KeyError("detections")
                    done[int(row["image_id"])] = row
                except (json.JSONDecodeError, KeyError, TypeError):
                    logger.warning("%s: line %d is incomplete (cut by a kill?); its image is"
                                   " redone", path, n + 1)  # fmt: skip
    return done


def check_output(output: str, resume: bool, overwrite: bool) -> None:
    """:class:`OutputExistsError` when ``output`` or an unfinished run's partial files exist and
    neither ``resume`` nor ``overwrite`` is asked for."""
    existing = [output] if os.path.exists(output) else []
    existing += glob.glob(glob.escape(output) + ".partial*.jsonl")
    if existing and not (resume or overwrite):
        raise OutputExistsError(
            f"{existing[0]} exists: pass --resume to finish an interrupted run or --overwrite to"
            " start again"
        )


def run_person_detection(
    detect: Callable,
    items: Sequence[DetectionItem],
    output: str,
    *,
    read_image: Callable,
    person_class: int = 0,
    score_thresh: float = 0.0,
    min_size: float = 0.0,
    topk: int = 100,
    masks: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_image: Optional[Callable[[int], None]] = None,
) -> Dict:
    """Detect persons in ``items`` and write the COCO detection-results list to ``output``.

    In a process group (detectron2's ``comm``; ``tools/detect_persons.py --num-gpus``) every
    process takes every world-size-th image still to do, writes ``output.partial<rank>.jsonl``,
    and the first process merges them; a resumed run reads the partial files of any earlier
    processes, so it may use another number of processes. The processes need one file system.

    Args:
        detect: image (as ``read_image`` returns it) -> detectron2 ``Instances`` (a predictor).
        items: the images, each with the image id its detections carry.
        output: the results json.
        read_image: file name -> image, or None for an image to skip (no detections).
        person_class, score_thresh, min_size, topk, masks: see :func:`filter_detections`.
        resume, overwrite: what to do when ``output`` or partial files exist (neither:
            :class:`OutputExistsError`); resume finishes an unfinished run.
        progress: a progress bar (the first process's share).
        on_image: called with the number of images this process did after each (tests
            interrupt with it).

    Returns:
        {"images", "detections", "resumed", "skipped" (the ids of the images read_image gave
        as None; the first process's list), "seconds"}.
    """
    from detectron2.utils import comm

    rank, world = comm.get_rank(), comm.get_world_size()
    ids = [it.image_id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids repeat in the input: each image needs its own id")
    check_output(output, resume, overwrite)  # every process, before any of them writes
    comm.synchronize()
    if overwrite and rank == 0:  # whatever an earlier run left: the output, partials, or neither
        for p in [output, *glob.glob(glob.escape(output) + ".partial*.jsonl")]:
            if os.path.exists(p):
                os.remove(p)
    comm.synchronize()
    partials = glob.glob(glob.escape(output) + ".partial*.jsonl")
    if resume and os.path.exists(output) and not partials:
        with open(output) as f:
            results = json.load(f)
        logger.info("%s is complete (%d detections); nothing to do", output, len(results))
        return {"images": len(items), "detections": len(results), "resumed": len(items),
                "skipped": [], "seconds": 0.0}  # fmt: skip
    done = _read_partials(output) if resume else {}
    unknown = set(done) - set(ids)
    if unknown:
        raise ValueError(
            f"{output}.partial*.jsonl hold images that are not in this input (e.g."
            f" {sorted(unknown)[:5]}): they belong to another run; use --overwrite"
        )
    files = {it.image_id: os.path.abspath(it.file_name) for it in items}
    moved = [i for i, row in done.items()
             if "file_name" in row and os.path.abspath(row["file_name"]) != files[i]]  # fmt: skip
    if moved:
        i = moved[0]
        raise ValueError(
            f"{output}.partial*.jsonl: image {i} was {done[i]['file_name']} in the earlier run but"
            f" is {files[i]} now ({len(moved)} images differ): the input changed; use --overwrite"
        )
    resumed = len(done)
    if resumed and rank == 0:
        logger.info("resuming: %d of %d images done in %s.partial*.jsonl", resumed, len(items),
                    output)  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    start = time.perf_counter()
    mine = [it for it in items if it.image_id not in done][rank::world]
    count = 0
    own = f"{output}.partial{rank}.jsonl"
    if os.path.exists(own) and os.path.getsize(own):
        with open(own, "rb+") as f:  # a line cut by a kill: end it, the next line starts clean
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
    with open(own, "a") as log:
        bar = tqdm.tqdm(mine, desc="detect_persons", unit="img",
                        disable=not progress or rank != 0)  # fmt: skip
        for it in bar:
            row = {"image_id": it.image_id, "file_name": it.file_name, "detections": []}
            image = read_image(it.file_name)
            if image is None:
                row["skipped"] = True
            else:
                inst = detect(image)["instances"].to("cpu")
                inst = filter_detections(inst, person_class, score_thresh, min_size, topk, masks)
                row["detections"] = instances_to_coco_json(inst, it.image_id)
                for d in row["detections"]:
                    d["category_id"] = 1  # person, in COCO's numbering
            log.write(json.dumps(row) + "\n")
            log.flush()
            os.fsync(log.fileno())
            count += 1
            if on_image is not None:
                on_image(count)
    comm.synchronize()
    if rank == 0:
        done = _read_partials(output)
        missing = [i for i in ids if i not in done]
        if missing:
            raise RuntimeError(f"images {missing[:5]} were not detected (a process failed?)")
        results = [d for i in ids for d in done[i]["detections"]]
        skipped = [i for i in ids if done[i].get("skipped")]
        write_json_atomic(output, results)
        for p in glob.glob(glob.escape(output) + ".partial*.jsonl"):
            os.remove(p)
    else:
        skipped = []
    comm.synchronize()
    with open(output) as f:
        n = len(json.load(f))
    return {"images": len(items), "detections": n, "resumed": resumed, "skipped": skipped,
            "seconds": time.perf_counter() - start}  # fmt: skip


def scores_summary(results: List[Dict]) -> str:
    """Detections per image and the score range, for the summary line."""
    if not results:
        return "no detections"
    s = np.array([r["score"] for r in results])
    return f"scores {s.min():.2f}-{s.max():.2f}"
