"""multitask_pose/data/build.py: the training and test data of both stages, which the trainers'
loader builders only call; the core imports nothing of the top-down project."""

import ast
from pathlib import Path

import pytest

import multitask_pose
from multitask_pose.data import build

PACKAGE = Path(multitask_pose.__file__).parent


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_core_imports_nothing_of_the_top_down_project():
    upward = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(m == "pose_topdown" or m.startswith("pose_topdown.") for m in _imported_modules(p))
    }
    assert not upward  # the tools' config checks find the top-down keys through an entry point


def test_nothing_in_the_package_imports_the_commands():
    """multitask_pose/commands is the top layer: the tools' code, called by tools/ alone."""
    importers = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.parent.name != "commands"
        and any(m.startswith("multitask_pose.commands") for m in _imported_modules(p))
    }
    relative = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level and p.parent.name != "commands"
        and "commands" in (node.module or "").split(".") + [a.name for a in node.names]
    }
    assert not importers | relative


def test_the_trainers_loader_builders_only_call_the_builders(monkeypatch):
    """Each trainer's build_train_loader / build_test_loader hands its config to the builder of
    its stage (the data preparation lives in data/build.py and pose_topdown/data/build.py)."""
    from multitask_pose.engine import trainer
    from pose_topdown import engine
    from pose_topdown.data import build as topdown_build

    calls = []
    for module, name in ((trainer, "build_rcnn_train_loader"), (trainer, "build_test_loader"),
                         (engine, "build_topdown_train_loader"),
                         (engine, "build_topdown_test_loader")):  # fmt: skip
        monkeypatch.setattr(module, name, lambda *a, _n=name: calls.append((_n, a)) or _n)
    cfg = object()
    assert trainer.MultiTaskTrainer.build_train_loader(cfg) == "build_rcnn_train_loader"
    assert trainer.MultiTaskTrainer.build_test_loader(cfg, "d") == "build_test_loader"
    assert engine.TopDownTrainer.build_train_loader(cfg, "codec") == "build_topdown_train_loader"
    assert engine.TopDownTrainer.build_test_loader(cfg, "d") == "build_topdown_test_loader"
    assert calls == [("build_rcnn_train_loader", (cfg,)), ("build_test_loader", (cfg, "d", None)),
                     ("build_topdown_train_loader", (cfg, "codec")),
                     ("build_topdown_test_loader", (cfg, "d"))]  # fmt: skip
    assert topdown_build.training_parts is build.training_parts  # the shared preparation


def test_an_empty_training_list_is_named():
    from multitask_pose.config import get_multitask_cfg

    cfg = get_multitask_cfg()
    cfg.DATASETS.TRAIN = ()
    with pytest.raises(ValueError, match="DATASETS.TRAIN is empty"):
        build.build_rcnn_train_loader(cfg)
