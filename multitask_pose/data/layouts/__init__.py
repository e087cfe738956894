"""Keypoint layouts, one metainfo file each, in the shape of MMPose's dataset metainfo files
(``configs/_base_/datasets/coco.py``): a module with a ``dataset_info`` dict holding

- ``dataset_name``: the layout's name (``KeypointSpec.name``);
- ``paper_info``: where the layout comes from;
- ``keypoint_info``: ``{id: {"name", "id", "swap"}}`` in the file's keypoint order, ``swap`` the
  keypoint it becomes in a mirror image ("" for none);
- ``skeleton_info``: ``{id: {"link": (name, name), "id", "color": (r, g, b)}}``, the edges drawn;
- ``sigmas``: the per-keypoint OKS sigmas.

(MMPose's keypoint colours, upper/lower types and joint weights are left out: nothing here reads
them.) Every module of this package is a layout, registered under its module name in
``multitask_pose.data.keypoints.LAYOUTS``: adding a layout is adding a file here.
"""

import importlib
import pkgutil
from typing import Dict

__all__ = ["layout_infos"]


def layout_infos() -> Dict[str, dict]:
    """``{module name: dataset_info}`` of every layout module of this package."""
    return {
        m.name: importlib.import_module(f"{__name__}.{m.name}").dataset_info
        for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
        if not m.name.startswith("_")
    }
