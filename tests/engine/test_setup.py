"""multitask_pose/engine/setup.py: the config set-up of the train scripts logs both stages'
messages to OUTPUT_DIR/log.txt."""

import argparse
import logging

import pytest

from conftest import ROOT
from multitask_pose.engine.setup import setup_cfg
from pose_topdown import add_topdown_config

TOPDOWN = ROOT / "projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml"


@pytest.mark.parametrize("package", ["multitask_pose", "pose_topdown"])
def test_both_packages_log_to_the_run_folder(tmp_path, package):
    args = argparse.Namespace(config_file=str(TOPDOWN), opts=["OUTPUT_DIR", str(tmp_path),
                              "MODEL.DEVICE", "cpu"], eval_only=False, resume=False)  # fmt: skip
    setup_cfg(args, (add_topdown_config,), stage="topdown")
    logging.getLogger(f"{package}.probe").info("a message of %s", package)
    for handler in logging.getLogger(package).handlers:
        handler.flush()
    assert f"a message of {package}" in (tmp_path / "log.txt").read_text()
