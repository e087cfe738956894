"""The project's model zoo: checkpoints trained by this project's code on SynthPeople's training
splits (never a validation split), the pretrained starting points of the recipes and studies as
ImageNet and COCO checkpoints are for the reports.

An entry is named in configs like any weights: ``MODEL.WEIGHTS zoo://<name>`` (detectron2's
``PathManager`` resolves the prefix to the entry's file in ``model_zoo/`` of this repository;
the safe loader then reads it as any ``.pth``). Each entry is trained by one resumable command,
``tools/train_zoo.py <name>``, under ``$MTP_CACHE/zoo/<name>`` (outside the clone, so a machine
that persists resumes it), and stored as an fp16 state dict with its sha256 and training record
in ``model_zoo/<name>.json``.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import torch
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from ..shared.atomic_io import atomic_write
from ..shared.paths import REPO_ROOT as ROOT

__all__ = [
    "ENTRIES",
    "MAX_ENTRY_BYTES",
    "ZooEntry",
    "export_fp16",
    "sha256_of",
    "zoo_record",
    "zoo_run_dir",
    "zoo_weights_file",
]

ZOO_DIR = ROOT / "model_zoo"
PREFIX = "zoo://"
MAX_ENTRY_BYTES = 25 * 2**20  # each entry's fp16 file (the repository holds at most 60 MB)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    stage: str  # "topdown" (projects/TopDown/train_net.py) or "rcnn" (tools/train_net.py)
    config: str  # the training recipe, relative to the repository root
    what: str  # one line for the zoo table (each entry stores its whole model)


ENTRIES: Dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "hrnet_w18_small_synthpeople",
            "topdown",
            "projects/TopDown/configs/Zoo/hrnet_w18_small_synthpeople.yaml",
            "HRNet-W18-small (96x64 crops), ground-truth boxes of synth_people_basic_train and"
            " synth_people_train",
        ),
        ZooEntry(
            "multitask_rcnn_R_18_FPN_synthpeople",
            "rcnn",
            "configs/Zoo/multitask_rcnn_R_18_FPN_synthpeople.yaml",
            "multitask R-CNN R-18-FPN (box, mask, keypoints; 320 px images),"
            " synth_people_basic_train and synth_people_train",
        ),
    )
}


def _entry(name: str) -> ZooEntry:
    if name not in ENTRIES:
        raise KeyError(f"no model zoo entry {name!r}; the entries: {sorted(ENTRIES)}")
    return ENTRIES[name]


def zoo_run_dir(name: str) -> Path:
    """Where ``tools/train_zoo.py`` trains entry ``name`` (its OUTPUT_DIR)."""
    _entry(name)
    cache = Path(os.environ.get("MTP_CACHE", Path.home() / ".cache" / "multitask_pose"))
    return cache / "zoo" / name


def zoo_weights_file(name: str) -> Path:
    """The entry's fp16 weights in this repository (``model_zoo/<name>.pth``)."""
    _entry(name)
    return ZOO_DIR / f"{name}.pth"


def zoo_record(name: str) -> Dict:
    """The entry's record (``model_zoo/<name>.json``: sha256, config, iterations, legs, CPU
    hours, AP per split); empty before its first export."""
    path = ZOO_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def sha256_of(path) -> str:
    """The file's sha256, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def export_fp16(checkpoint: str, output: Path) -> str:
    """Write the model of a training checkpoint as an fp16 state dict (``{"model": ...}``;
    floating tensors in fp16, integer buffers as they are) to ``output``; returns its sha256.
    ValueError above :data:`MAX_ENTRY_BYTES`."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = state.get("model", state)
    half = {
        k: (v.half() if torch.is_floating_point(v) else v).contiguous() for k, v in model.items()
    }
    with atomic_write(output, "wb") as f:
        torch.save({"model": half, "__author__": "multitask_pose model zoo"}, f)
    size = Path(output).stat().st_size
    if size > MAX_ENTRY_BYTES:
        Path(output).unlink()
        raise ValueError(
            f"{output}: {size / 2**20:.1f} MB is above the zoo's"
            f" {MAX_ENTRY_BYTES / 2**20:g} MB per entry"
        )
    return sha256_of(output)


class ZooHandler(PathHandler):
    """``zoo://<name>`` -> ``model_zoo/<name>.pth`` of this repository."""

    def _get_supported_prefixes(self):
        return [PREFIX]

    def _get_local_path(self, path: str, **kwargs) -> str:
        name = path[len(PREFIX) :].removesuffix(".pth")
        try:
            local = zoo_weights_file(name)
        except KeyError as e:
            raise FileNotFoundError(f"{path}: {e.args[0]}") from None
        if not local.is_file():
            raise FileNotFoundError(
                f"{path}: the entry has no weights in this clone ({local}); train it with"
                f" tools/train_zoo.py {name}"
            )
        return str(local)

    def _open(self, path: str, mode: str = "r", **kwargs):
        return open(self._get_local_path(path), mode)

    def _exists(self, path: str, **kwargs) -> bool:
        try:
            return Path(self._get_local_path(path)).is_file()
        except FileNotFoundError:
            return False

    def _isfile(self, path: str, **kwargs) -> bool:
        return self._exists(path)


PathManager.register_handler(ZooHandler())
