"""The top-down stage's codec: built once by name (``MODEL.TOPDOWN.CODEC.NAME``) from
``multitask_pose.codecs`` for both the training mapper and the model, so targets and decoding
cannot drift apart. The Gaussian heatmap codec itself lives with the other codecs."""

from multitask_pose.codecs import GaussianHeatmapCodec, KeypointCodec, build_codec

__all__ = ["GaussianHeatmapCodec", "build_topdown_codec"]


def build_topdown_codec(cfg) -> KeypointCodec:
    """The codec ``MODEL.TOPDOWN.CODEC.NAME`` names. A top-down codec states its crop size
    ``input_size`` and ``heatmap_size`` (W, H) and their ``stride``; the model checks the pose
    network against them."""
    codec = build_codec(cfg.MODEL.TOPDOWN.CODEC.NAME, cfg)
    missing = [a for a in ("input_size", "heatmap_size", "stride") if not hasattr(codec, a)]
    if missing:
        raise ValueError(
            f"MODEL.TOPDOWN.CODEC.NAME {cfg.MODEL.TOPDOWN.CODEC.NAME!r} has no {missing}:"
            " a top-down codec states its crop size, heatmap size and stride"
        )
    return codec
