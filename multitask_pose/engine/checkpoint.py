"""Checkpoint loading that cannot run code: ``SafeCheckpointer`` (every entry point of the project
loads weights through it) and ``PosePredictor`` (detectron2's ``DefaultPredictor`` with it).

A pickle can name any Python callable and have it called while loading, so a crafted weights file
runs code. detectron2 reads ``.pkl`` files (its model zoo's format) with the full ``pickle``;
``SafeCheckpointer`` reads them with ``RestrictedUnpickler``, which builds only dicts, lists,
tuples, numbers, strings, bytes and numpy arrays and scalars (all a zoo file holds), and reads
``.pth`` files with ``torch.load(weights_only=True)`` (tensors, containers, numbers and the
optimizer/scheduler state detectron2 saves), numpy arrays and scalars admitted too, as in the
``.pkl`` files (MMPose's checkpoints keep their dataset metadata in them). Anything else is
refused with ``UnsafeCheckpointError`` naming the file and the type.
``MODEL.TRUST_PICKLED_WEIGHTS: True`` (config) turns both checks off for trusted legacy files.
"""

import functools
import logging
import pickle
import re
from unittest import mock

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint import detection_checkpoint as d2_checkpoint
from detectron2.engine import DefaultPredictor
from detectron2.engine import defaults as d2_defaults

from ..shared.atomic_io import AtomicPathManager

__all__ = [
    "PosePredictor",
    "RestrictedUnpickler",
    "SafeCheckpointer",
    "UnsafeCheckpointError",
    "checkpointer_for",
    "restricted_load",
    "torch_load",
]

logger = logging.getLogger(__name__)

# The globals a numpy-only pickle needs (numpy 1 and 2 module names): array and scalar
# reconstruction, and bytes, which protocol-2 pickles written by Python 3 build with
# _codecs.encode or bytes (Python 2's module name __builtin__ included).
_ALLOWED_GLOBALS = frozenset(
    [
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),
        ("builtins", "bytes"),
        ("__builtin__", "bytes"),
        ("builtins", "bytearray"),
        ("__builtin__", "bytearray"),
    ]
)


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A weights file holds something other than data; loading it could run code."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that refuses every global outside ``_ALLOWED_GLOBALS`` (the "restricting
    globals" pattern of Python's pickle documentation). torch's own ``weights_only`` unpickler is
    not reused because it reads only torch's file formats, not a plain pickle stream."""

    def __init__(self, file, *, filename="<stream>", **kwargs):
        super().__init__(file, **kwargs)
        self.filename = filename

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"{self.filename}: refusing to unpickle {module}.{name}: a weights file should hold "
            "only dicts, lists, numbers, strings and numpy arrays, and loading this type could run "
            "code. If the file is yours or otherwise trusted, set MODEL.TRUST_PICKLED_WEIGHTS True."
        )

    def persistent_load(self, pid):
        raise UnsafeCheckpointError(f"{self.filename}: refusing a persistent id ({pid!r})")


def restricted_load(file, *, filename="<stream>", encoding="ASCII", **kwargs):
    """``pickle.load`` through ``RestrictedUnpickler``."""
    return RestrictedUnpickler(file, filename=filename, encoding=encoding, **kwargs).load()


class _RestrictedPickleModule:
    """What detectron2's checkpoint module sees as ``pickle`` while SafeCheckpointer reads a .pkl:
    its ``load`` is the restricted one, so detectron2's own parsing of zoo files is reused
    (``pickle.load`` is all that module uses)."""

    def __init__(self, filename):
        self.load = functools.partial(restricted_load, filename=filename)


class SafeCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` whose loading cannot run code (module docstring).

    Args:
        trusted: load with the full pickle (``MODEL.TRUST_PICKLED_WEIGHTS``): only for trusted
            files that the safe loaders refuse.
    """

    def __init__(self, model, save_dir="", *, trusted=False, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.trusted = trusted
        # Checkpoints and last_checkpoint are written whole or not at all: a run killed while
        # saving leaves the previous checkpoint as the last one.
        self.path_manager = AtomicPathManager(self.path_manager)
        # What the last load left out (fvcore's _IncompatibleKeys), None before any load: read
        # by weights_check.check_trained_weights.
        self.incompatible_keys = None
        # State-dict prefixes the next loads leave out (MODEL.WEIGHTS_EXCLUDE, set by the
        # trainer for the run's starting weights only).
        self.exclude = ()

    def _load_model(self, checkpoint):
        if self.exclude:
            model = checkpoint["model"]
            unmatched = [p for p in self.exclude if not any(k.startswith(p) for k in model)]
            if unmatched:
                raise ValueError(
                    f"MODEL.WEIGHTS_EXCLUDE {list(self.exclude)}: no key of the weights starts"
                    f" with {unmatched} (the weights' first keys: {list(model)[:3]})"
                )
            left_out = [k for k in model if k.startswith(tuple(self.exclude))]
            kept = {k: v for k, v in model.items() if not k.startswith(tuple(self.exclude))}
            checkpoint = dict(checkpoint, model=kept)
            logger.info(
                "MODEL.WEIGHTS_EXCLUDE %s: %d of the weights' %d tensors not loaded; those"
                " modules start as built", list(self.exclude), len(left_out), len(model),
            )  # fmt: skip
        # A module whose layer takes the weights of another shape (PoseFix's conv1: image and
        # pose channels, from an HRNet's image-only one) adapts them before fvcore's shape check,
        # which would skip that layer.
        for name, module in self.model.named_modules():
            adapt = getattr(module, "adapt_loaded_weights", None)
            if callable(adapt):
                model = adapt(dict(checkpoint["model"]), f"{name}." if name else "")
                checkpoint = dict(checkpoint, model=model)
        self.incompatible_keys = super()._load_model(checkpoint)
        return self.incompatible_keys

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            if self.trusted:
                logger.warning(
                    "MODEL.TRUST_PICKLED_WEIGHTS: %s loads with the full pickle", filename
                )
                return super()._load_file(filename)
            # detectron2's own parsing of zoo files, with the restricted unpickler as its pickle.
            with mock.patch.object(d2_checkpoint, "pickle", _RestrictedPickleModule(filename)):
                return super()._load_file(filename)
        if filename.endswith(".pyth"):
            # pycls files: detectron2 reads them with torch.load's default, weights_only=True
            # since torch 2.6 (the pinned torch is 2.14).
            return super()._load_file(filename)
        # .pth: detectron2 hands these to fvcore, whose torch.load leaves weights_only to the
        # torch version and environment variables; load here to pin it, then wrap as detectron2
        # does.
        loaded = torch_load(filename, trusted=self.trusted)
        return loaded if "model" in loaded else {"model": loaded}


def _numpy_globals():
    """What ``weights_only`` needs to rebuild numpy arrays and scalars (data, no code)."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    kinds = (np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32,
             np.int64, np.uint64, np.float16, np.float32, np.float64, np.complex64,
             np.complex128)  # fmt: skip
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype] + [
        type(np.dtype(k)) for k in kinds
    ]


def torch_load(filename, *, trusted=False):
    """``torch.load(filename, map_location="cpu", weights_only=not trusted)``; a refused file
    raises ``UnsafeCheckpointError`` naming the file and the type torch refused."""
    if trusted:
        logger.warning("MODEL.TRUST_PICKLED_WEIGHTS: %s loads with the full pickle", filename)
    try:
        with open(filename, "rb") as f, torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(f, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        # torch's message names the global it refused ("... GLOBAL os.system ..."). Other
        # failures ("Unsupported operand": garbage, a damaged file) stay what they are, so that
        # --resume falls back from a damaged checkpoint but never from a refused one.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if trusted or "Weights only load failed" not in str(e) or not found:
            raise
        what = found.group(1)
        raise UnsafeCheckpointError(
            f"{filename}: refusing to load {what}: torch.load(weights_only=True) admits only "
            "tensors, containers, numbers and strings, and loading this type could run code. If "
            "the file is yours or otherwise trusted, set MODEL.TRUST_PICKLED_WEIGHTS True."
        ) from e


def checkpointer_for(cfg, checkpointer_class=SafeCheckpointer):
    """``checkpointer_class`` with ``trusted`` bound from ``cfg.MODEL.TRUST_PICKLED_WEIGHTS``."""
    return functools.partial(
        checkpointer_class, trusted=bool(cfg.MODEL.get("TRUST_PICKLED_WEIGHTS", False))
    )


class PosePredictor(DefaultPredictor):
    """detectron2's ``DefaultPredictor`` (same arguments and outputs) loading MODEL.WEIGHTS with
    ``SafeCheckpointer``: use it instead of ``DefaultPredictor`` for weights you did not make.
    Refuses (``RandomWeightsError``) an empty MODEL.WEIGHTS or one that leaves modules at their
    random initialisation, unless MODEL.ALLOW_RANDOM_WEIGHTS (:mod:`.weights_check`);
    ``weights_key`` is the key the error names (the config key MODEL.WEIGHTS came from)."""

    def __init__(self, cfg, weights_key="MODEL.WEIGHTS"):
        from .weights_check import check_trained_weights, check_weights_given

        allow = bool(cfg.MODEL.get("ALLOW_RANDOM_WEIGHTS", False))
        check_weights_given(cfg.MODEL.WEIGHTS, weights_key, allow)
        made = []

        def checkpointer(*args, **kwargs):
            made.append(checkpointer_for(cfg)(*args, **kwargs))
            return made[-1]

        with mock.patch.object(d2_defaults, "DetectionCheckpointer", checkpointer):
            super().__init__(cfg)
        check_trained_weights(self.model, made[0], cfg.MODEL.WEIGHTS, weights_key, allow)

    def __call__(self, original_image):
        """detectron2's, after a clear error for an empty or non-(H, W, 3) array."""
        from ..data.image_check import check_image_array

        return super().__call__(check_image_array(original_image, "PosePredictor input"))
