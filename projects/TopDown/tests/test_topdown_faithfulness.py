"""Every COCO top-down recipe does what its published source does, setting by setting (the table
in published_topdown.py, each setting with the file and line it comes from); the README quotes
the same figures; every released checkpoint has an accuracy-test config stating its published AP."""

import re
from pathlib import Path

import pytest

import multitask_pose  # noqa: F401  (registers the datasets)
from pose_topdown import get_topdown_cfg
from published_topdown import RECIPES

PROJECT = Path(__file__).resolve().parents[1]
CONFIGS = PROJECT / "configs"


def merged(config: str):
    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(CONFIGS / config))
    return cfg


def value_of(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def same(ours, published) -> bool:
    if isinstance(published, (tuple, list)):
        return len(ours) == len(published) and all(same(a, b) for a, b in zip(ours, published))
    if isinstance(published, float) and isinstance(ours, (int, float)):
        return abs(ours - published) < 1e-9
    return type(ours) is type(published) and ours == published


def test_every_coco_recipe_has_a_published_source():
    recipes = {p.relative_to(CONFIGS).as_posix() for p in CONFIGS.glob("COCO/*.yaml")}
    trained = {r for r in recipes if not r.endswith("_inference_acc_test.yaml")}
    # The PCR and HintPose recipes (the report models, listed with their parameter counts in
    # test_recipes.REPORT_PARAMS) have no released set-up to check against here: the PCR
    # recipes' settings against their report are tested in test_pcr.py's PCR_SETTINGS. A
    # published recipe on other data (test_recipes.DATA_VARIANTS) is checked against its report
    # in its own table (test_external_data_recipe.py).
    from test_recipes import DATA_VARIANTS, REPORT_PARAMS

    assert trained == {r.config for r in RECIPES} | set(REPORT_PARAMS) | set(DATA_VARIANTS)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.config)
def test_recipe_matches_its_published_setup(recipe):
    cfg = merged(recipe.config)
    wrong = []
    for s in recipe.settings:
        ours = value_of(cfg, s.key)
        if s.key == "TEST.TOPDOWN.DET_FILE":
            ours = Path(ours).name
        if not same(ours, s.value):
            wrong.append(f"{s.key} = {ours!r}, published {s.value!r} ({s.source})")
    assert not wrong, "\n".join(wrong)


def test_the_table_catches_a_deviation():
    """The comparison is strict enough to fail: a recipe with one setting off is reported."""
    recipe = RECIPES[0]
    cfg = merged(recipe.config)
    cfg.INPUT.TOPDOWN.ROTATION_FACTOR = 40.0
    published = {s.key: s.value for s in recipe.settings}
    assert not same(cfg.INPUT.TOPDOWN.ROTATION_FACTOR, published["INPUT.TOPDOWN.ROTATION_FACTOR"])
    assert not same((192, 256, 1), published["MODEL.TOPDOWN.INPUT_SIZE"])
    assert not same(1, published["SOLVER.GAMMA"])  # 1 is not 0.1
    assert not same(0.0, published["TEST.TOPDOWN.OKS_NMS_VIS_THRESH"])  # 0.0 is not None


def _readme_rows():
    """config -> (parameter millions, AP) from the COCO table of projects/TopDown/README.md."""
    rows = {}
    for line in (PROJECT / "README.md").read_text().splitlines():
        row = r"\| `configs/(COCO/[\w.-]+\.yaml)` \| [^|]*?([\d.]+)M params[^|]* \| ([\d.]+)"
        m = re.match(row, line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return rows


def test_readme_quotes_the_published_figures():
    rows = _readme_rows()
    assert set(rows) == {r.config for r in RECIPES}
    for r in RECIPES:
        assert rows[r.config] == (r.params_m, r.ap), (r.config, r.ap_source, r.params_source)


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.weights], ids=lambda r: r.config)
def test_released_weights_have_an_accuracy_test(recipe):
    """``<recipe>_inference_acc_test.yaml``: the recipe, its released weights and the published
    AP as detectron2's TEST.EXPECTED_RESULTS, checked by ``--eval-only``."""
    acc = recipe.config.replace(".yaml", "_inference_acc_test.yaml")
    cfg, base = merged(acc), merged(recipe.config)
    assert Path(cfg.MODEL.WEIGHTS).name == recipe.weights
    assert cfg.TEST.EXPECTED_RESULTS == [["keypoints", "AP", recipe.ap, 0.3]]
    base.MODEL.WEIGHTS, base.TEST.EXPECTED_RESULTS = cfg.MODEL.WEIGHTS, cfg.TEST.EXPECTED_RESULTS
    assert cfg.dump() == base.dump()  # nothing else differs from the recipe
