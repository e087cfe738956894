"""Renamed config keys (multitask_pose/config.py RENAMED_KEYS): an old name in a yaml, in a
``_BASE_`` of it or in an override still loads through ``cli.load_config``, into the new key,
with a warning naming both, and means what the new key means."""

import logging
from contextlib import contextmanager

import pytest

from multitask_pose.config import RENAMED_KEYS, get_multitask_cfg
from multitask_pose.engine.cli import load_config
from pose_topdown import get_topdown_cfg

RCNN_BASE = "configs/Synthetic/multitask_rcnn_R_18_FPN_synth_basic.yaml"
TOPDOWN_BASE = "projects/TopDown/configs/Base-TopDown.yaml"
VALUES = {"FILE": "dets.json", "SCORE": 0.7, "RULE": "iou", "IOU": 0.2, "MAX_KEYPOINTS": 0}


@contextmanager
def warnings_of(name):
    """The WARNING messages logged to ``name`` (whatever its propagation)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    log = logging.getLogger(name)
    log.addHandler(handler)
    try:
        yield records
    finally:
        log.removeHandler(handler)


def _yaml(tmp_path, base, key, value):
    """A yaml on ``base`` setting the dotted ``key`` (nested as a user writes it)."""
    *parents, leaf = key.split(".")
    lines, indent = [f"_BASE_: {base}"], ""
    for p in parents:
        lines.append(f"{indent}{p}:")
        indent += "  "
    lines.append(f"{indent}{leaf}: {value!r}")
    path = tmp_path / "old.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _cfg_and_base(old):
    import os

    if old.startswith("INPUT.TOPDOWN."):
        return get_topdown_cfg, os.path.abspath(TOPDOWN_BASE), "topdown"
    return get_multitask_cfg, os.path.abspath(RCNN_BASE), "rcnn"


def test_the_table_renames_each_stages_twin_into_one_key_set():
    """Each stage's former keys land in the one INPUT.HARD_NEGATIVES node both configs have."""
    for stage_cfg in (get_multitask_cfg(), get_topdown_cfg()):
        for old, new in RENAMED_KEYS.items():
            node, leaf = new.rsplit(".", 1)
            assert leaf in stage_cfg.INPUT.HARD_NEGATIVES and node == "INPUT.HARD_NEGATIVES"
            assert stage_cfg.key_is_renamed(old)
    assert sorted({new for new in RENAMED_KEYS.values()}) == sorted(
        f"INPUT.HARD_NEGATIVES.{k}" for k in VALUES
    )


@pytest.mark.parametrize("old", sorted(RENAMED_KEYS))
def test_an_old_key_in_a_yaml_or_an_override_loads_with_a_warning(tmp_path, old):
    new = RENAMED_KEYS[old]
    leaf = new.rsplit(".", 1)[1]
    value = VALUES[leaf]
    get_cfg, base, stage = _cfg_and_base(old)
    reference = load_config(get_cfg(), base, [new, str(value)], stage=stage)
    with warnings_of("multitask_pose.config") as logged:
        from_file = load_config(get_cfg(), _yaml(tmp_path, base, old, value), stage=stage)
    assert any(old in r.getMessage() and new in r.getMessage() for r in logged), old
    with warnings_of("multitask_pose.config") as logged:
        from_override = load_config(get_cfg(), base, [old, str(value)], stage=stage)
    assert any(old in r.getMessage() and new in r.getMessage() for r in logged), old
    for cfg in (from_file, from_override):
        assert cfg.INPUT.HARD_NEGATIVES[leaf] == value  # the new key holds it ...
        assert cfg.dump() == reference.dump()  # ... and nothing else differs


def test_a_misspelt_key_is_still_an_error():
    from multitask_pose.engine.cli import ConfigError

    with pytest.raises(ConfigError, match="INPUT.HARD_NEGATIVE_FILES"):
        load_config(get_multitask_cfg(), RCNN_BASE, ["INPUT.HARD_NEGATIVE_FILES", "x"])
