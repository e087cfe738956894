"""Checkpoints of the other toolboxes as this project's state dicts
(``tools/convert_checkpoint.py``).

- ``mmpose``: MMPose top-down heatmap models (HRNet, SimpleBaseline ResNet), 1.x
  (``{"meta", "state_dict"}``, ``backbone.*`` / ``head.*``) and 0.x (``keypoint_head.*``). MMPose
  builds these backbones and heads module for module as the official code does (norm layers
  ``bn*``, the head's ``deconv_layers.{0,1,3,4,6,7}`` and ``final_layer``), so a key maps to
  ``pose_net.<key without the prefix>``; ``data_preprocessor.*`` buffers (mean/std, saved by
  some releases) are dropped.
- ``official``: the official HRNet / SimpleBaseline releases (a bare state dict, maybe with
  DataParallel's ``module.``): ``pose_net.<key>``. The top-down checkpointer also loads them as
  they are; converting gives a file any loader takes.
- ``detectron2``: detectron2's deformable ResNet blocks name their offset/mask predictor
  ``resN.B.conv2_offset``; ours is ``resN.B.conv2.offset`` with the same output layout (offsets
  (dy, dx) per tap, then the mask logits). detectron2 modulates with ``sigmoid`` where we use
  ``2 * sigmoid``: a converted checkpoint needs MODEL.RESNETS.DEFORM_MODULATION "sigmoid".

Every conversion reports the keys it renamed, dropped and could not map; :func:`check_state`
compares the result with a model (strict: shapes, missing and unexpected keys, each named).
"""

import re
from typing import Dict, List, Tuple

import numpy as np
import torch

__all__ = ["FORMATS", "check_state", "convert_state", "read_checkpoint"]

FORMATS = ("mmpose", "official", "detectron2")


def read_checkpoint(path: str, trusted: bool = False) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint file: a ``.pth`` read with ``torch.load(weights_only=True)``,
    a ``.pkl`` (detectron2's zoo) with the restricted unpickler (numpy arrays become tensors);
    the state dict found under ``state_dict`` or ``model`` if the file wraps it. ``trusted``
    uses the full pickle (for files the safe loaders refuse). ValueError: no tensors in it."""
    from .checkpoint import restricted_load, torch_load

    if str(path).endswith(".pkl") and not trusted:
        with open(path, "rb") as f:
            loaded = restricted_load(f, filename=str(path), encoding="latin1")
    else:
        loaded = torch_load(str(path), trusted=trusted)
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not a state dict (a {type(loaded).__name__})")
    state = {}
    for k, v in loaded.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if isinstance(v, torch.Tensor):
            state[str(k)] = v
    if not state:
        raise ValueError(f"{path}: holds no tensors")
    return state


def convert_state(state: Dict[str, torch.Tensor], fmt: str) -> Tuple[Dict, Dict[str, List]]:
    """(``state`` in this project's names, a report: ``renamed`` (old, new) pairs, ``dropped``
    and ``unmapped`` keys). ValueError for an unknown format or a state that is not one."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; known: {FORMATS}")
    out, renamed, dropped, unmapped = {}, [], [], []
    for key, value in state.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        if fmt == "mmpose":
            if k.startswith("data_preprocessor."):
                dropped.append(key)
                continue
            m = re.match(r"(backbone|head|keypoint_head)\.(.+)", k)
            if not m:
                unmapped.append(key)
                continue
            new = "pose_net." + m.group(2)
        elif fmt == "official":
            new = k if k.startswith("pose_net.") else "pose_net." + k
        else:
            new = re.sub(r"\.conv2_offset\.", ".conv2.offset.", k)
        if new != key:
            renamed.append((key, new))
        out[new] = value
    if fmt == "mmpose" and not any(k.startswith("pose_net.") for k in out):
        raise ValueError(
            "no MMPose key (backbone.*, head.*, keypoint_head.*) in the checkpoint: not an"
            " MMPose top-down model?"
        )
    return out, {"renamed": renamed, "dropped": dropped, "unmapped": unmapped}


def check_state(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """ValueError unless ``state`` loads into ``model`` strictly: every differing shape named
    (another keypoint count or width), then the missing and unexpected keys (another
    architecture), the first of each listed."""
    own = model.state_dict()
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    problems = []
    if shapes:
        problems.append(f"{len(shapes)} shapes differ ({'; '.join(shapes[:3])})")
    if missing:
        problems.append(f"{len(missing)} model keys missing ({', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])})")
    if problems:
        raise ValueError(
            "the checkpoint does not fit the config's model: " + "; ".join(problems)
            + " (another architecture, width or keypoint count?)"
        )  # fmt: skip
