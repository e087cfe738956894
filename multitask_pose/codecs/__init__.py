"""Keypoint codecs behind one registered interface (``encode`` -> targets dict, ``decode`` ->
keypoints and scores), shared by the R-CNN heads and the top-down models."""
import importlib
import pkgutil

from .base import CODEC_REGISTRY, KeypointCodec, build_codec
from .gaussian_heatmap import GaussianHeatmapCodec
from .roi_heatmap import RoIHeatmapCodec
from .simcc import SimCCCodec
from .soft_argmax import SoftArgmaxCodec

__all__ = ["CODEC_REGISTRY", "GaussianHeatmapCodec", "KeypointCodec", "RoIHeatmapCodec",
           "SimCCCodec", "SoftArgmaxCodec", "build_codec"]

# Every module of this package is imported, so a new codec registers itself without an import
# line here.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
