"""multitask_pose: multi-person pose estimation on detectron2.

``import multitask_pose`` registers the project's models (detectron2 registries) and built-in
datasets (``coco_person_sample``, ``synth_people_train``, ``synth_people_val``,
``synth_people_crowd_val``), so detectron2's ``DefaultPredictor`` and ``tools/train_net.py`` can
use them.
"""
from . import codecs, model_zoo, modeling  # noqa: F401  (registers codecs, models, zoo://)
from .config import add_multitask_config, add_pose_config, get_multitask_cfg, get_pose_cfg
from .data.builtin import register_builtin

register_builtin()

__version__ = "0.1.0"
__all__ = ["add_multitask_config", "add_pose_config", "get_multitask_cfg", "get_pose_cfg"]
