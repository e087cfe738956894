"""The OKS team's external-data recipe (hourglass_oks_team_8stack_256x256_aic_hard.yaml): its
settings against the report, and its three steps on the real AI Challenger sample: conversion
into COCO's layout, hard-example selection with a model's results, joint training in which the
hard examples train only the joints both datasets label."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import multitask_pose  # noqa: F401  (registers the built-in datasets)
from multitask_pose.data import AIC_PERSON, COCO_PERSON
from multitask_pose.data.converters import aic_raw_from_coco, convert_aic
from multitask_pose.data.paths import samples_root
from pose_topdown import get_topdown_cfg

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "projects" / "TopDown" / "configs" / "COCO"
RECIPE = CONFIGS / "hourglass_oks_team_8stack_256x256_aic_hard.yaml"
BASE = CONFIGS / "hourglass_oks_team_8stack_256x256.yaml"
REPORT = "the OKS team's report, 'External data'"
FACE = [COCO_PERSON.keypoint_names.index(n)
        for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]  # fmt: skip


def _cfg(path, *opts):
    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(list(opts))
    return cfg


def _flat(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if hasattr(v, "items"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


# (setting, the report's words, its value in the recipe)
SETTINGS = (
    ("DATASETS.TRAIN", "3. Joint train with COCO data and hard examples of AICKD",
     ("keypoints_coco_2017_train", "aic_train_hard")),
    ("DATASETS.TRAIN_RATIOS", "joint training on COCO and the hard examples (no ratio given):"
     " the sets concatenated", ()),
    ("DATASETS.REGISTER_COCO[0][3]", "We only backpropagate the loss of common annotations with"
     " COCO for AICKD data: the hard examples in COCO's layout, the face points unlabelled",
     "coco"),
    ("MODEL.TOPDOWN.POSE_NET", "1. Train a hourglass 8 stacks with COCO only data",
     "StackedHourglass"),
    ("MODEL.HOURGLASS.NUM_STACKS", "1. Train a hourglass 8 stacks", 8),
)  # fmt: skip


@pytest.mark.parametrize("setting", SETTINGS, ids=[s[0] for s in SETTINGS])
def test_external_data_recipe_setting_matches_the_report(setting):
    key, words, value = setting
    cfg = _cfg(RECIPE)
    if key.startswith("DATASETS.REGISTER_COCO"):
        got = cfg.DATASETS.REGISTER_COCO[0][3]
    else:
        got = _flat(cfg)[key]
    assert tuple(got) == value if isinstance(value, tuple) else got == value, (
        f"{key}: {got!r}, the report: {words} ({REPORT})"
    )


def test_external_data_recipe_is_its_base_recipe_on_other_data():
    recipe, base = _flat(_cfg(RECIPE)), _flat(_cfg(BASE))
    differ = sorted(k for k in recipe if recipe[k] != base.get(k))
    assert differ == ["DATASETS.REGISTER_COCO", "DATASETS.TRAIN"]
    assert recipe["DATASETS.REGISTER_COCO"][0][0] == recipe["DATASETS.TRAIN"][1]


def test_hard_aic_examples_train_only_the_joints_coco_shares(tmp_path):
    """Step 2 on the real AI Challenger sample (a raw file made from it, converted into COCO's
    layout), with results that get one person right and the others wrong: only the others
    become hard examples. Step 3: the recipe's datasets, with the sample's COCO images in
    COCO's place, concatenate (every sample equally likely), and the hard persons' top-down
    targets weigh their 12 limb joints where labelled and never the five face points."""
    from detectron2.data import get_detection_dataset_dicts

    from multitask_pose.commands import select_hard_examples
    from multitask_pose.data.build import training_parts
    from multitask_pose.data.datasets import register_config_datasets
    from pose_topdown.data.mapper import TopDownTrainMapper, person_dicts
    from pose_topdown.engine import TopDownTrainer

    aic_dir = samples_root() / "aic"
    raw = tmp_path / "aic_raw.json"
    sample = json.loads((aic_dir / "test_aic.json").read_text())
    # The sample's category spells the names otherwise; the order is AI Challenger's.
    sample["categories"][0]["keypoints"] = list(AIC_PERSON.keypoint_names)
    raw.write_text(json.dumps(aic_raw_from_coco(sample)))
    converted = tmp_path / "aic_coco_layout.json"
    convert_aic(str(raw), str(aic_dir), str(converted), layout="coco")
    (aic_all,) = register_config_datasets(
        [("external_test_aic_all", str(converted), str(aic_dir), "coco")]
    )
    gt = json.loads(converted.read_text())
    persons = [a for a in gt["annotations"] if a.get("num_keypoints", 0) > 0]
    assert len(persons) >= 3
    right = persons[0]
    results = [{"image_id": right["image_id"], "category_id": 1, "score": 1.0,
                "keypoints": right["keypoints"]}]  # fmt: skip
    for a in persons[1:]:
        kp = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
        kp[:, :2] += 0.5 * np.sqrt(a["area"])  # far from the person: OKS near 0
        results.append({"image_id": a["image_id"], "category_id": 1, "score": 0.9,
                        "keypoints": kp.ravel().tolist()})  # fmt: skip
    res_file, hard_file = tmp_path / "results.json", tmp_path / "aic_train_hard.json"
    res_file.write_text(json.dumps(results))
    assert select_hard_examples.main(["--dataset", aic_all, "--results", str(res_file),
                                      "--output", str(hard_file)]) == 0  # fmt: skip
    hard = json.loads(hard_file.read_text())["annotations"]
    assert sorted(a["id"] for a in hard) == sorted(a["id"] for a in persons[1:])

    entry = f"(('aic_train_hard', '{hard_file}', '{aic_dir}', 'coco'),)"
    cfg = _cfg(RECIPE, "DATASETS.REGISTER_COCO", entry,
               "DATASETS.TRAIN", "('coco_person_sample', 'aic_train_hard')",
               "DATASETS.TEST", "('coco_person_sample',)", "MODEL.DEVICE", "cpu",
               "MODEL.HOURGLASS.NUM_STACKS", "1", "MODEL.HOURGLASS.NUM_FEATURES", "16",
               "DATALOADER.NUM_WORKERS", "0")  # fmt: skip
    register_config_datasets(cfg.DATASETS.REGISTER_COCO)
    parts = training_parts(
        cfg, lambda n: get_detection_dataset_dicts([n], filter_empty=False), True
    )
    assert len(parts[1]) == len({a["image_id"] for a in hard})
    # Concatenated: the loader's stream draws each person by the sets' sizes, no quotas.
    assert not cfg.DATASETS.TRAIN_RATIOS
    codec = TopDownTrainer.build_model(cfg).codec
    mapper = TopDownTrainMapper(cfg, is_train=True, codec=codec)
    crops = [mapper(p) for p in person_dicts(parts[1], 1, False)]
    weights = torch.stack([c["targets"]["target_weight"] for c in crops])
    assert len(weights) == len(hard)
    assert (weights[:, FACE] == 0).all()
    limbs = [i for i in range(17) if i not in FACE]
    labelled = torch.tensor([np.asarray(a["keypoints"]).reshape(-1, 3)[limbs, 2] > 0
                             for a in sorted(hard, key=lambda a: a["id"])])  # fmt: skip
    assert labelled.any() and (weights[:, limbs] > 0).sum() <= labelled.sum()
    assert (weights[:, limbs] > 0).sum() > 0
