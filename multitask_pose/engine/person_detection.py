"""Resumable person detection over many images into a COCO detection-results file: the runner of
``tools/detect_persons.py`` (and of any tool that must run a detector over a dataset and survive
a kill, such as pseudo-labelling).

Each finished image is appended to ``<output>.partial.jsonl`` (one line per image, flushed and
fsynced), so a killed run continues where it stopped (``resume=True`` skips the images already
there; a line cut short by the kill is dropped and its image redone). At the end the detections of
every image are written to ``<output>`` atomically, in the order of the input, and the partial
file is removed. Sharding across processes: not yet (issue 15).
"""

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import tqdm
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from ..shared.atomic_io import write_json_atomic

__all__ = ["DetectionItem", "OutputExistsError", "filter_detections", "run_person_detection"]

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
    """The person instances scoring at least ``score_thresh`` whose box's shorter side is at least
    ``min_size`` pixels, the ``topk`` best (0: all), best first; masks dropped unless ``masks``."""
    keep = (instances.pred_classes == person_class) & (instances.scores >= score_thresh)
    boxes = instances.pred_boxes.tensor
    side = (boxes[:, 2:] - boxes[:, :2]).min(1).values
    keep &= side >= min_size
    idx = keep.nonzero().flatten()
    idx = idx[instances.scores[idx].argsort(descending=True, stable=True)]
    if topk > 0:
        idx = idx[:topk]
    out = instances[idx]
    if not masks and out.has("pred_masks"):
        out.remove("pred_masks")
    return out


def _read_partial(path: str) -> Dict[int, List[Dict]]:
    done = {}
    if not os.path.exists(path):
        return done
    with open(path) as f:
        for n, line in enumerate(f):
            try:
                row = json.loads(line)
                done[int(row["image_id"])] = row["detections"]
            except (json.JSONDecodeError, KeyError, TypeError):
                logger.warning("%s: line %d is incomplete (cut by a kill?); its image is redone",
                               path, n + 1)  # fmt: skip
    return done


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

    Args:
        detect: image (as ``read_image`` returns it) -> detectron2 ``Instances`` (a predictor).
        items: the images, each with the image id its detections carry.
        output: the results json; ``output + ".partial.jsonl"`` holds an unfinished run.
        read_image: file name -> image.
        person_class, score_thresh, min_size, topk, masks: see :func:`filter_detections`.
        resume, overwrite: what to do when ``output`` or the partial file exists (neither:
            :class:`OutputExistsError`); resume finishes an unfinished run.
        progress: a progress bar.
        on_image: called with the number of images done after each (tests interrupt with it).

    Returns:
        {"images", "detections", "resumed", "seconds"}.
    """
    partial = output + ".partial.jsonl"
    ids = [it.image_id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids repeat in the input: each image needs its own id")
    if not (resume or overwrite) and (os.path.exists(output) or os.path.exists(partial)):
        which = output if os.path.exists(output) else partial
        raise OutputExistsError(
            f"{which} exists: pass --resume to finish an interrupted run or --overwrite to start"
            " again"
        )
    if overwrite:
        for p in (output, partial):
            if os.path.exists(p):
                os.remove(p)
    done = _read_partial(partial) if resume else {}
    if resume and os.path.exists(output) and not os.path.exists(partial):
        with open(output) as f:
            results = json.load(f)
        logger.info("%s is complete (%d detections); nothing to do", output, len(results))
        return {"images": len(items), "detections": len(results), "resumed": len(items),
                "seconds": 0.0}  # fmt: skip
    unknown = set(done) - set(ids)
    if unknown:
        raise ValueError(
            f"{partial} holds images that are not in this input (e.g. {sorted(unknown)[:5]}):"
            " it belongs to another run; use --overwrite"
        )
    resumed = len(done)
    if resumed:
        logger.info("resuming: %d of %d images done in %s", resumed, len(items), partial)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    start = time.perf_counter()
    todo: Iterable[DetectionItem] = [it for it in items if it.image_id not in done]
    with open(partial, "a") as log:
        bar = tqdm.tqdm(todo, desc="detect_persons", unit="img", disable=not progress,
                        initial=resumed, total=len(items))  # fmt: skip
        for it in bar:
            inst = detect(read_image(it.file_name))["instances"].to("cpu")
            inst = filter_detections(inst, person_class, score_thresh, min_size, topk, masks)
            dets = instances_to_coco_json(inst, it.image_id)
            for d in dets:
                d["category_id"] = 1  # person, in COCO's numbering
            log.write(json.dumps({"image_id": it.image_id, "detections": dets}) + "\n")
            log.flush()
            os.fsync(log.fileno())
            done[it.image_id] = dets
            if on_image is not None:
                on_image(len(done))
    results = [d for i in ids for d in done[i]]
    write_json_atomic(output, results)
    os.remove(partial)
    seconds = time.perf_counter() - start
    return {"images": len(items), "detections": len(results), "resumed": resumed,
            "seconds": seconds}  # fmt: skip


def scores_summary(results: List[Dict]) -> str:
    """Detections per image and the score range, for the summary line."""
    if not results:
        return "no detections"
    s = np.array([r["score"] for r in results])
    return f"scores {s.min():.2f}-{s.max():.2f}"
