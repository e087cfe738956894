"""No predictions from random weights: every tool that predicts or evaluates checks what it loaded.

A model built from a config starts from random weights; detectron2 and fvcore load whatever a
checkpoint has for it and only log what it lacks, so an empty ``MODEL.WEIGHTS``, an ImageNet
backbone, or a checkpoint of another config predicts confident noise with no error. The
predictors (``PosePredictor``, the top-down ``TopDownPredictor`` and its detector,
``train_net.py --eval-only`` of both stages) call :func:`check_weights_given` before loading and
:func:`check_trained_weights` after: either raises :class:`RandomWeightsError`, one line naming
the config key, the modules left random and what to pass. ``MODEL.ALLOW_RANDOM_WEIGHTS`` (the
tools' ``--allow-random-weights``) lets a smoke test run anyway. The benchmarks time random
weights by design and do not check. Both errors are :class:`~.cli.UserError`: a tool prints
them as its one line and exits with code 2 (:mod:`multitask_pose.engine.cli`).
"""

import os
from collections import Counter
from typing import Iterable, List

from ..shared.paths import looked_in
from .cli import UserError

__all__ = [
    "ALLOW_FLAG",
    "RandomWeightsError",
    "WeightsFileNotFoundError",
    "add_allow_random_weights_argument",
    "check_trained_weights",
    "check_weights_given",
    "random_modules",
]

ALLOW_FLAG = "--allow-random-weights"

# State the checkpoints need not hold: detectron2 sets pixel_mean/std from the config (its
# DetectionCheckpointer drops them from the missing keys too) and BatchNorm's counter is unused
# in eval mode.
_NOT_WEIGHTS = ("pixel_mean", "pixel_std", "num_batches_tracked")


class RandomWeightsError(UserError, ValueError):
    """The model would predict from (partly) random weights; the message is one line."""


class WeightsFileNotFoundError(UserError, FileNotFoundError):
    """A weights key names a file that does not exist; the message is one line."""


def _remedy(key: str, what: str = "trained checkpoint", flag=ALLOW_FLAG) -> str:
    return f"pass {key} <{what}>" + (f" (or {flag} for smoke tests)" if flag else "")


def add_allow_random_weights_argument(parser):
    """The tools' ``--allow-random-weights`` flag (sets ``MODEL.ALLOW_RANDOM_WEIGHTS``)."""
    parser.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="smoke tests only: run even without trained weights (empty MODEL.WEIGHTS, or a"
        " checkpoint without some head); the predictions are then noise",
    )
    return parser


def check_weights_given(weights: str, key: str = "MODEL.WEIGHTS", allow: bool = False, *,
                        flag=ALLOW_FLAG):  # fmt: skip
    """Before loading: ``weights`` is not empty (unless ``allow``) and, when a local path, a file.
    ``flag``: the tool's option that allows random weights, named in the message (None: none).

    Raises:
        RandomWeightsError for an empty key; WeightsFileNotFoundError (a FileNotFoundError)
        naming the key for a missing file.
    """
    if not weights:
        if allow:
            return
        raise RandomWeightsError(
            f"{key} is empty: the model would predict from random weights;"
            f" {_remedy(key, flag=flag)}"
        )
    if "://" not in weights and not os.path.isfile(weights):
        raise WeightsFileNotFoundError(
            f"{key} {weights}: no such file{looked_in(weights)}; {_remedy(key, flag=None)}"
        )


def random_modules(model, not_loaded: Iterable[str]) -> List[str]:
    """The modules of ``model`` whose state is entirely in ``not_loaded`` (state-dict keys), each
    named at its outermost such module, largest (most elements) first."""
    state = model.state_dict()
    missing = {k for k in not_loaded if k in state and not k.endswith(_NOT_WEIGHTS)}
    total, absent = Counter(), Counter()
    for k in state:
        parts = k.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            total[prefix] += 1
            absent[prefix] += k in missing or k.endswith(_NOT_WEIGHTS)
    size = Counter()
    for k in missing:
        parts = k.split(".")
        name = next(
            (p for p in (".".join(parts[:i]) for i in range(1, len(parts)))
             if absent[p] == total[p]),
            k,
        )  # fmt: skip
        size[name] += state[k].numel()
    return [name for name, _ in sorted(size.items(), key=lambda kv: (-kv[1], kv[0]))]


def check_trained_weights(model, checkpointer, weights: str, key="MODEL.WEIGHTS", allow=False,
                          *, flag=ALLOW_FLAG):  # fmt: skip
    """After ``checkpointer`` (a :class:`SafeCheckpointer` on ``model``) loaded ``weights``: every
    tensor of the model came from the file, except in modules that load their own weights at
    build time (``weights_loaded_at_build = True``, e.g. an ensemble's members).

    Raises:
        RandomWeightsError naming ``key``, the file and the modules left random, unless
        ``allow``; ``flag``: the tool's option that allows it, named in the message (None:
        none).
    """
    if allow:
        return
    report = checkpointer.incompatible_keys
    if report is None:  # nothing loaded: every tensor is random
        not_loaded = set(model.state_dict())
    else:
        # (fvcore counts a tensor of another shape, which it does not load, as missing too)
        not_loaded = set(report.missing_keys)
    own = [
        name + "." for name, m in model.named_modules()
        if name and getattr(m, "weights_loaded_at_build", False)
    ]  # fmt: skip
    not_loaded = {k for k in not_loaded if not k.startswith(tuple(own))}
    names = random_modules(model, not_loaded)
    if not names:
        return
    if report is None:
        check_weights_given(weights, key, flag=flag)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    raise RandomWeightsError(
        f"{key} {weights} has no weights for {shown} (left at random initialisation, their"
        f" predictions would be noise);"
        f" {_remedy(key, 'checkpoint trained with this config', flag=flag)}"
    )
