"""The codec interface and registry: one object turns keypoints into a network's training targets
and the network's outputs back into keypoints, so training and inference cannot drift apart (the
design of MMPose 1.x's codecs).

A codec is registered in ``CODEC_REGISTRY`` by class name. ``encode(keypoints, **context)`` returns
a dict of targets (the keys are the codec's own, documented on it; losses read them by name) and
``decode(outputs, **context)`` returns ``(keypoints (N, K, 2), scores (N, K))``. ``context`` is
what a codec needs beyond the keypoints or maps, e.g. the RoIs of an R-CNN head. A codec states
what its scores are, ``score_scale`` (a key of ``multitask_pose.evaluation.results_record.
SCORE_SCALES``), which the results files' records carry.
"""

from typing import Dict, Tuple

import torch
from detectron2.utils.registry import Registry

__all__ = ["CODEC_REGISTRY", "KeypointCodec", "build_codec"]

CODEC_REGISTRY = Registry("KEYPOINT_CODEC")
CODEC_REGISTRY.__doc__ = """
Keypoint codecs (subclasses of ``KeypointCodec``). ``build_codec(name, cfg)`` calls the class's
``from_config(cfg)``.
"""


class KeypointCodec:
    """Base of the codecs: keypoints <-> targets / network outputs."""

    # What decode's scores are (results_record.SCORE_SCALES); each codec states its own.
    score_scale = "unknown"
    # The keys of encode's targets (a loss states the keys it reads; heads check they are made).
    target_keys: tuple = ()

    @classmethod
    def from_config(cls, cfg) -> "KeypointCodec":
        raise NotImplementedError(f"{cls.__name__} cannot be built from a config")

    def encode(self, keypoints, **context) -> Dict[str, torch.Tensor]:
        """Keypoints (N, K, 3: x, y, visibility) -> a dict of training targets."""
        raise NotImplementedError

    def decode(self, outputs, **context) -> Tuple[torch.Tensor, torch.Tensor]:
        """Network outputs -> keypoint coordinates (N, K, 2) and scores (N, K)."""
        raise NotImplementedError


def crop_stride(input_size, heatmap_size) -> Tuple[Tuple[int, int], Tuple[int, int], float]:
    """((W, H) of the crop, (W, H) of the maps, their common stride) of a crop codec; a ValueError
    when the strides in x and y differ."""
    input_size = (int(input_size[0]), int(input_size[1]))
    heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
    sx, sy = input_size[0] / heatmap_size[0], input_size[1] / heatmap_size[1]
    if abs(sx - sy) > 1e-6:
        raise ValueError(
            f"input size {input_size} and heatmap size {heatmap_size} have different strides in"
            f" x ({sx}) and y ({sy})"
        )
    return input_size, heatmap_size, sx


def build_codec(name: str, cfg) -> KeypointCodec:
    """The registered codec ``name`` built from ``cfg`` (what each reads: its ``from_config``)."""
    return CODEC_REGISTRY.get(name).from_config(cfg)
