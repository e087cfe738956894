"""Registered datasets carry keypoint metadata; malformed input fails with a message that names
the file, annotation id or key."""

import json
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import multitask_pose  # noqa: F401
from multitask_pose import get_multitask_cfg
from multitask_pose.data import (
    COCO_PERSON,
    DatasetFormatError,
    KeypointSpec,
    keypoint_spec_of,
    register_coco_person,
)
from multitask_pose.data.paths import samples_root
from multitask_pose.engine import check_datasets

BUILTIN = [
    "coco_person_sample",
    "synth_people_train",
    "synth_people_val",
    "synth_people_crowd_val",
    "keypoints_coco_2017_val",
]
SAMPLE = samples_root() / "coco"


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_datasets_carry_keypoint_metadata(name):
    spec = keypoint_spec_of(name)
    assert spec.keypoint_names == COCO_PERSON.keypoint_names
    assert spec.oks_sigmas == COCO_PERSON.oks_sigmas
    assert len(MetadataCatalog.get(name).keypoint_connection_rules) > 0


def test_flip_indices_are_an_involution_that_swaps_sides():
    idx = COCO_PERSON.flip_indices
    assert (idx[idx] == np.arange(COCO_PERSON.num_keypoints)).all()
    names = COCO_PERSON.keypoint_names
    for i, j in enumerate(idx):
        assert names[j] == names[i].replace("left", "@").replace("right", "left").replace(
            "@", "right"
        )


def test_spec_rejects_flip_pair_with_unknown_name():
    with pytest.raises(ValueError, match="left_paw"):
        KeypointSpec("bad", ("a", "b"), (("a", "left_paw"),), (), (0.1, 0.1))


def test_spec_rejects_flip_map_that_does_not_cover_sided_keypoints():
    names = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    with pytest.raises(
        ValueError, match=r"does not cover the sided keypoints \['left_ear', 'right_ear'\]"
    ):
        KeypointSpec("bad", names, (("left_eye", "right_eye"),), (), (0.1,) * 5)
    with pytest.raises(ValueError, match="more than one flip pair"):
        KeypointSpec(
            "bad", names[:3], (("left_eye", "right_eye"), ("right_eye", "nose")), (), (0.1,) * 3
        )


def test_coco_sample_loads_with_its_detections_file():
    dicts = DatasetCatalog.get("coco_person_sample")
    assert len(dicts) == 4 and sum(len(d["annotations"]) for d in dicts) == 14
    dets = json.loads(open(MetadataCatalog.get("coco_person_sample").detections_file).read())
    assert len(dets) == 118


def write_variant(tmp_path, name, edit):
    """Copy the COCO sample into tmp_path, apply ``edit`` to its json, register it as ``name``."""
    folder = tmp_path / name
    shutil.copytree(SAMPLE, folder)
    data = json.loads((folder / "test_coco.json").read_text())
    edit(data, folder)
    (folder / "test_coco.json").write_text(json.dumps(data))
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_person(name, str(folder / "test_coco.json"), str(folder))
    return data


def test_missing_image_names_the_file(tmp_path):
    write_variant(
        tmp_path, "bad_missing_image", lambda d, f: (f / d["images"][1]["file_name"]).unlink()
    )
    with pytest.raises(DatasetFormatError, match="000000040083.jpg"):
        DatasetCatalog.get("bad_missing_image")


def test_keypoints_of_wrong_length_name_the_annotation(tmp_path):
    def edit(d, f):
        d["annotations"][3]["keypoints"] = d["annotations"][3]["keypoints"][:-3]

    data = write_variant(tmp_path, "bad_keypoint_length", edit)
    bad_id = data["annotations"][3]["id"]
    with pytest.raises(
        DatasetFormatError, match=rf"annotation id {bad_id} .*48 numbers.*3 x 17 = 51"
    ):
        DatasetCatalog.get("bad_keypoint_length")


def test_non_positive_box_names_the_annotation(tmp_path):
    def edit(d, f):
        d["annotations"][5]["bbox"][2] = 0

    data = write_variant(tmp_path, "bad_box", edit)
    with pytest.raises(
        DatasetFormatError, match=rf"annotation id {data['annotations'][5]['id']} .*non-positive"
    ):
        DatasetCatalog.get("bad_box")


def test_image_without_persons_is_valid(tmp_path):
    def edit(d, f):
        first = d["images"][0]["id"]
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] != first]

    write_variant(tmp_path, "empty_image_ok", edit)
    dicts = DatasetCatalog.get("empty_image_ok")
    assert len(dicts) == 4 and sorted(len(d["annotations"]) for d in dicts)[0] == 0


def test_unknown_dataset_name_and_config_typo_are_named(tmp_path):
    cfg = get_multitask_cfg()
    cfg.DATASETS.TRAIN = ("coco_persn_sample",)
    with pytest.raises(KeyError, match="DATASETS.TRAIN names 'coco_persn_sample'"):
        check_datasets(cfg)
    # detectron2 (yacs) already names a mistyped key, from the command line and from a file.
    with pytest.raises(AssertionError, match="MODEL.ROI_HEADS.NUM_CLASES"):
        get_multitask_cfg().merge_from_list(["MODEL.ROI_HEADS.NUM_CLASES", "1"])
    bad = tmp_path / "typo.yaml"
    bad.write_text("MODEL:\n  ROI_KEYPOINT_HEAD:\n    LOSS_WIEGHT: 2.0\n")
    with pytest.raises(KeyError, match="MODEL.ROI_KEYPOINT_HEAD.LOSS_WIEGHT"):
        get_multitask_cfg().merge_from_file(str(bad))


def test_keypoint_head_size_must_match_dataset():
    cfg = get_multitask_cfg()
    cfg.MODEL.KEYPOINT_ON = True
    cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = 14
    cfg.DATASETS.TRAIN = ("coco_person_sample",)
    cfg.DATASETS.TEST = ()
    with pytest.raises(
        ValueError, match="NUM_KEYPOINTS is 14 but dataset 'coco_person_sample' has 17"
    ):
        check_datasets(cfg)


@pytest.mark.parametrize("dataset", ["coco_person_sample", "synth_people_mini_train"])
def test_rcnn_training_flip_swaps_sides_by_name(dataset, synth_mini):
    """The multitask R-CNN's training mapper (detectron2's DatasetMapper with the
    keypoint_hflip_indices it derives from our metadata), forced to flip: every keypoint lands at
    x -> W - x in the slot of its mirror joint, named by the flip map written from the names."""
    from detectron2.data import DatasetMapper
    from detectron2.data import transforms as T

    from conftest import RECIPE, flip_indices_by_name

    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list(["DATASETS.TRAIN", f"('{dataset}',)"])
    mapper = DatasetMapper(cfg, is_train=True)
    mapper.augmentations = T.AugmentationList([T.RandomFlip(prob=1.0)])
    by_name = flip_indices_by_name(MetadataCatalog.get(dataset).keypoint_names)
    record = next(d for d in DatasetCatalog.get(dataset) if len(d["annotations"]) > 1)
    out = mapper(dict(record))
    flipped = out["instances"].gt_keypoints.tensor.numpy()
    anns = [a for a in record["annotations"] if not a.get("iscrowd", 0)]
    expected = np.array([a["keypoints"] for a in anns], np.float32).reshape(len(anns), -1, 3)
    expected = expected[:, by_name]
    expected[..., 0] = record["width"] - expected[..., 0]
    labelled = expected[..., 2] > 0
    assert len(flipped) == len(expected) and labelled.any()
    np.testing.assert_allclose(flipped[labelled][:, :2], expected[labelled][:, :2], atol=1e-3)
    np.testing.assert_array_equal(flipped[..., 2] > 0, labelled)
