"""Building blocks with no model knowledge, as detectron2's ``layers``."""
from .deform_conv import DeformConv2d, deform_offset_parameters, sampled_deform_conv2d

__all__ = ["DeformConv2d", "deform_offset_parameters", "sampled_deform_conv2d"]
