"""Keypoint codecs behind one registered interface (``encode`` -> targets dict, ``decode`` ->
keypoints and scores), shared by the R-CNN heads and the top-down models."""
from .base import CODEC_REGISTRY, KeypointCodec, build_codec
from .gaussian_heatmap import GaussianHeatmapCodec
from .roi_heatmap import RoIHeatmapCodec
from .simcc import SimCCCodec
from .soft_argmax import SoftArgmaxCodec

__all__ = ["CODEC_REGISTRY", "GaussianHeatmapCodec", "KeypointCodec", "RoIHeatmapCodec",
           "SimCCCodec", "SoftArgmaxCodec", "build_codec"]
