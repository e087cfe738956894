"""Checkpoints of the other toolboxes as this project's state dicts
(``tools/convert_checkpoint.py``, whose ``main`` is here).

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

import argparse
import re
import sys
from typing import Dict, List, Tuple

import numpy as np
import torch
from detectron2.modeling import build_model as d2_build_model

from ..config import stage_configs
from ..shared.atomic_io import atomic_write
from .checkpoint import UnsafeCheckpointError
from .cli import UserError, argument_parser, config_stage, entry_point, load_config

__all__ = ["FORMATS", "build_parser", "check_state", "convert_state", "main", "read_checkpoint"]

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


def build_model(config_file, opts):
    """The config's model, built with its stage's keys (``cli.config_stage``; the top-down
    stage's through its installed entry point)."""
    stage, _ = config_stage(config_file)
    cfg = load_config(stage_configs()[stage](), config_file, ["MODEL.DEVICE", "cpu", *opts])
    return d2_build_model(cfg)


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    ap = argument_parser(doc)
    ap.add_argument("--from", dest="fmt", required=True, choices=FORMATS)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--config-file", help="check the result against this config's model")
    ap.add_argument("--trust-pickle", action="store_true", help="full pickle (trusted files)")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return ap


@entry_point("convert_checkpoint")
def main(argv=None, parser=None):
    """The tool (``parser``: the script's, for its help); 0, or 2 after a one-line error."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        state = read_checkpoint(args.input, trusted=args.trust_pickle)
        out, report = convert_state(state, args.fmt)
        checked = ""
        if args.config_file:
            check_state(build_model(args.config_file, args.opts), out)
            checked = f"; loads strictly into {args.config_file}'s model"
    except UserError:
        raise  # its own one line (entry_point)
    except (OSError, ValueError, UnsafeCheckpointError) as e:
        print(f"convert_checkpoint: {args.input}: {e}", file=sys.stderr)
        return 2
    for old, new in report["renamed"][:5]:
        print(f"  renamed {old} -> {new}")
    if len(report["renamed"]) > 5:
        print(f"  ... and {len(report['renamed']) - 5} more renamed")
    for what in ("dropped", "unmapped"):
        for key in report[what]:
            print(f"  {what} {key}")
    with atomic_write(args.output, "wb") as f:
        torch.save({"model": out}, f)
    note = ""
    if args.fmt == "detectron2" and any(".conv2_offset." in o for o, _ in report["renamed"]):
        note = "; deformable blocks: run with MODEL.RESNETS.DEFORM_MODULATION sigmoid"
    print(
        f"convert_checkpoint: {args.fmt} -> ours: {len(out)} tensors, {len(report['renamed'])}"
        f" renamed, {len(report['dropped'])} dropped, {len(report['unmapped'])} not mapped"
        f"{checked}{note} -> {args.output}"
    )
    return 0
