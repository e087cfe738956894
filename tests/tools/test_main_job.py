"""The main job's summary says what each pipeline's recipe starts from: the zoo weights and the
layers the recipe trains anew, with the AP the same recipe reached from random weights; a recipe
without weights says so."""

import importlib.util

from conftest import ROOT


def _main_job():
    spec = importlib.util.spec_from_file_location("main_job", ROOT / "tools" / "main_job.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_summary_names_the_starting_weights_and_the_from_scratch_figure():
    mj = _main_job()
    _, recipe, _, scratch = mj.PIPELINES["topdown"]
    cfg = mj.recipe_config("topdown", recipe)
    assert mj.starting_point(cfg, scratch) == (
        "from zoo://hrnet_w18_small_synthpeople, its pose_net.final_layer trained anew",
        " (from random weights: keypoint AP 0.056, measured once, not re-run)",
    )
    cfg.MODEL.WEIGHTS = ""
    assert mj.starting_point(cfg, scratch) == ("from random weights", "")
    _, recipe, _, scratch = mj.PIPELINES["rcnn"]
    assert mj.starting_point(mj.recipe_config("rcnn", recipe), scratch) == (
        "from zoo://multitask_rcnn_R_18_FPN_synthpeople, its proposal_generator and roi_heads "
        "trained anew",
        " (from random weights: box AP 0.360, keypoint AP 0.021, measured once, not re-run)",
    )
