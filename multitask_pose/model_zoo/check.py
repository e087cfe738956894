"""The zoo's compatibility figure: each entry measured on a fixed subset of
``synth_people_basic_val`` (its first :data:`CHECK_IMAGES` images) with its stored weights only,
written into its record at export and measured again by the test suite, so that a code change that
silently breaks an entry (a renamed key, a changed layer, another decoding) fails a test instead of
every run that starts from it. The entry's AP on the whole of each level is in its record's
``levels`` (``tools/train_zoo.py NAME --finish``).

- A top-down entry: keypoint AP on ground-truth boxes; an R-CNN entry: keypoint and box AP (each
  its stage's ``train_net.py --eval-only``, the subset registered by DATASETS.REGISTER_COCO).
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Sequence

from . import ENTRIES, PREFIX, ROOT

__all__ = [
    "CHECK_DATASET",
    "CHECK_IMAGES",
    "check_subset",
    "TRAIN_SCRIPTS",
    "eval_only",
    "measure",
    "run_logged",
]

CHECK_DATASET = "synth_people_basic_val"
# Its first 64 images (of 200; 152 persons): the R-CNN entry's check ran in 40 s against 110 s on
# the whole split (one run each, 2-core AMD EPYC under two trainings).
CHECK_IMAGES = 64
TRAIN_SCRIPTS = {
    "topdown": ROOT / "projects" / "TopDown" / "train_net.py",
    "rcnn": ROOT / "tools" / "train_net.py",
}


def run_logged(cmd: Sequence) -> None:
    """Run ``cmd`` in the repository root, echoed first; CalledProcessError when it fails."""
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def eval_only(name: str, weights: str, output_dir: Path, datasets: Sequence[str],
              python: str = sys.executable,
              register: Sequence = ()) -> Dict[str, Dict]:  # fmt: skip
    """Evaluate ``weights`` with entry ``name``'s recipe on ``datasets`` (its stage's
    ``train_net.py --eval-only``; ``register``: DATASETS.REGISTER_COCO entries the run registers
    first); returns each dataset's results (detectron2's, AP in %)."""
    entry = ENTRIES[name]
    cmd = [python, TRAIN_SCRIPTS[entry.stage], "--config-file", ROOT / entry.config,
           "--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", output_dir,
           "DATASETS.TEST", repr(tuple(datasets))]  # fmt: skip
    if register:
        cmd += ["DATASETS.REGISTER_COCO", repr(tuple(tuple(str(x) for x in e) for e in register))]
    run_logged(cmd)
    return {d: json.loads((Path(output_dir) / f"results_{d}.json").read_text()) for d in datasets}


def check_subset(folder: Path) -> tuple:
    """Write the check's subset of :data:`CHECK_DATASET` (its annotation file's first
    :data:`CHECK_IMAGES` images and their annotations, generating the split if needed) as a COCO
    file in ``folder``; returns its DATASETS.REGISTER_COCO entry
    ``(name, json_file, image_root)``."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.get(CHECK_DATASET)  # generates a SynthPeople split on first use
    meta = MetadataCatalog.get(CHECK_DATASET)
    coco = json.loads(Path(meta.json_file).read_text())
    if len(coco["images"]) < CHECK_IMAGES:
        raise ValueError(f"{meta.json_file}: fewer than the check's {CHECK_IMAGES} images")
    images = coco["images"][:CHECK_IMAGES]
    ids = {img["id"] for img in images}
    subset = dict(coco, images=images,
                  annotations=[a for a in coco["annotations"] if a["image_id"] in ids])  # fmt: skip
    name = f"{CHECK_DATASET}_first{CHECK_IMAGES}"
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(subset))
    return name, str(path), meta.image_root


def measure(name: str) -> Dict[str, float]:
    """Entry ``name``'s compatibility figure from its stored weights (``zoo://<name>``), on the
    check's subset (:func:`check_subset`)."""
    weights = f"{PREFIX}{name}"
    with tempfile.TemporaryDirectory() as tmp:
        subset = check_subset(Path(tmp))
        res = eval_only(name, weights, Path(tmp), [subset[0]], register=[subset])[subset[0]]
    tasks = {"keypoints": "keypoint AP", "bbox": "box AP"}
    if ENTRIES[name].stage == "topdown":
        del tasks["bbox"]  # that of the ground-truth boxes it is given
    return {f"{subset[0]} {label}": round(res[task]["AP"] / 100, 4)
            for task, label in tasks.items()}  # fmt: skip
