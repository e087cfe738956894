"""The zoo's compatibility figure: each entry measured on ``synth_people_basic_val`` with its stored
weights only, written into its record at export and measured again by the test suite, so that a
code change that silently breaks an entry (a renamed key, a changed layer, another decoding)
fails a test instead of every run that starts from it.

- A top-down entry: keypoint AP on ground-truth boxes (its stage's ``train_net.py --eval-only``).
- An R-CNN entry stores its backbone, FPN and RPN: the person boxes' average recall by the top 100
  proposals (:func:`proposal_recall`), which needs nothing else of the model.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, pairwise_iou

from ..config import get_multitask_cfg
from ..engine.checkpoint import SafeCheckpointer
from . import ENTRIES, PREFIX, ROOT

__all__ = [
    "CHECK_DATASET",
    "TRAIN_SCRIPTS",
    "average_recall",
    "eval_only",
    "measure",
    "proposal_recall",
    "run_logged",
]

CHECK_DATASET = "synth_people_basic_val"
TRAIN_SCRIPTS = {
    "topdown": ROOT / "projects" / "TopDown" / "train_net.py",
    "rcnn": ROOT / "tools" / "train_net.py",
}
IOU_THRESHOLDS = np.arange(0.5, 0.951, 0.05)  # COCO's


def run_logged(cmd: Sequence) -> None:
    """Run ``cmd`` in the repository root, echoed first; CalledProcessError when it fails."""
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def eval_only(name: str, weights: str, output_dir: Path, datasets: Sequence[str],
              python: str = sys.executable) -> Dict[str, Dict]:  # fmt: skip
    """Evaluate ``weights`` with entry ``name``'s recipe on ``datasets`` (its stage's
    ``train_net.py --eval-only``); returns each dataset's results (detectron2's, AP in %)."""
    entry = ENTRIES[name]
    cmd = [python, TRAIN_SCRIPTS[entry.stage], "--config-file", ROOT / entry.config,
           "--eval-only", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", output_dir,
           "DATASETS.TEST", repr(tuple(datasets))]  # fmt: skip
    run_logged(cmd)
    return {d: json.loads((Path(output_dir) / f"results_{d}.json").read_text()) for d in datasets}


def proposal_recall(cfg, dataset: str, top: int = 100) -> float:
    """AR@``top`` of ``cfg``'s RPN (``cfg.MODEL.WEIGHTS`` loaded into a ``ProposalNetwork``) on
    ``dataset``: each non-crowd box's best IoU with the top proposals, the fraction at or above
    each of COCO's thresholds 0.50:0.05:0.95, averaged (no one-to-one matching)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.META_ARCHITECTURE = "ProposalNetwork"
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = top
    model = build_model(cfg).eval()
    SafeCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    truth = {}
    for d in DatasetCatalog.get(dataset):
        boxes = [
            BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            for a in d.get("annotations", [])
            if not a.get("iscrowd", 0)
        ]
        truth[d["image_id"]] = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    best = []
    with torch.no_grad():
        for inputs in build_detection_test_loader(cfg, dataset):
            for inp, out in zip(inputs, model(inputs)):
                gt = truth[inp["image_id"]]
                proposals = out["proposals"].proposal_boxes.to("cpu")
                if len(gt) == 0:
                    continue
                if len(proposals) == 0:
                    best.append(torch.zeros(len(gt)))
                    continue
                best.append(pairwise_iou(Boxes(gt), proposals).max(dim=1).values)
    if not best:
        raise ValueError(f"{dataset}: no person boxes to recall")
    return average_recall(torch.cat(best).numpy())


def average_recall(best_ious: np.ndarray) -> float:
    """The fraction of boxes whose best IoU reaches each of COCO's thresholds, averaged."""
    return float((best_ious[:, None] >= IOU_THRESHOLDS[None, :] - 1e-9).mean())


def measure(name: str) -> Dict[str, float]:
    """Entry ``name``'s compatibility figure from its stored weights (``zoo://<name>``)."""
    entry = ENTRIES[name]
    weights = f"{PREFIX}{name}"
    if entry.stage == "rcnn":
        cfg = get_multitask_cfg()
        cfg.merge_from_file(str(ROOT / entry.config))
        cfg.MODEL.WEIGHTS = weights
        cfg.MODEL.DEVICE = "cpu"
        return {f"{CHECK_DATASET} proposal AR@100": round(proposal_recall(cfg, CHECK_DATASET), 4)}
    with tempfile.TemporaryDirectory() as tmp:
        res = eval_only(name, weights, Path(tmp), [CHECK_DATASET])[CHECK_DATASET]
    return {f"{CHECK_DATASET} keypoint AP": round(res["keypoints"]["AP"] / 100, 4)}
