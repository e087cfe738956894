"""multitask_pose: multi-person pose estimation on detectron2.

``import multitask_pose`` registers the project's models (detectron2 registries) and built-in
datasets (``coco_person_sample``, ``synth_people_train``, ``synth_people_val``,
``synth_people_crowd_val``), so detectron2's ``DefaultPredictor`` and ``tools/train_net.py`` can
use them. The tools import it first, before detectron2: it hides the one warning a dependency
prints at import.
"""
import warnings

# Two dependency calls that every run printed a warning for, each hidden by its message and the
# module that issues it (the project's own code calls neither API this way; tests/tools/
# test_cli_help.py runs tools and checks that no warning is printed):
# - fvcore (fvcore/nn/focal_loss.py, imported by detectron2.layers) calls torch.jit.script at
#   import, which torch >= 2.9 deprecates (a FutureWarning, twice per run). Set before the imports
#   below, which reach fvcore.
# - detectron2's anchor generator (modeling/anchor_generator.py) calls torch.meshgrid without
#   `indexing`, for which torch announces a future requirement (a UserWarning, once per run).
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning,
    module=r"torch\.jit\._script",
)  # fmt: skip
warnings.filterwarnings(
    "ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning,
    module=r"torch\.functional",
)  # fmt: skip
from . import codecs, model_zoo, modeling  # noqa: E402, F401  (registers codecs, models, zoo://)
from .config import add_multitask_config, add_pose_config, get_multitask_cfg, get_pose_cfg  # noqa: E402
from .data.builtin import register_builtin  # noqa: E402

register_builtin()

__version__ = "0.1.0"
__all__ = ["add_multitask_config", "add_pose_config", "get_multitask_cfg", "get_pose_cfg"]
