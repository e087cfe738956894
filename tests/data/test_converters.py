"""AI Challenger and CrowdPose converters on the real samples: a raw-format AI Challenger file
built here from the sample (the release's format, visibility 1/2/3), CrowdPose's own file; points
checked by hand, bad input named."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from multitask_pose.data import AIC_PERSON, COCO_PERSON, register_coco_person
from multitask_pose.data.converters import convert_aic, convert_crowdpose
from multitask_pose.data.datasets import DatasetFormatError
from multitask_pose.data.paths import samples_root

AIC = samples_root() / "aic"
CROWDPOSE = samples_root() / "crowdpose"
COCO_INDEX = {n: i for i, n in enumerate(COCO_PERSON.keypoint_names)}
RAW_FLAG = {2: 1, 1: 2, 0: 3}  # COCO-style v -> the raw release's flag


def _raw_aic(tmp_path):
    """The AIC sample in the raw release's format: one entry per image, humans by name,
    x1y1x2y2 boxes, flags 1 visible / 2 occluded / 3 none; images named by their id."""
    with open(AIC / "test_aic.json") as f:
        coco = json.load(f)
    images = tmp_path / "images"
    images.mkdir()
    raw = []
    for im in coco["images"]:
        stem = im["file_name"][: -len(".jpg")]
        shutil.copy(AIC / im["file_name"], images / im["file_name"])
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        kps, boxes = {}, {}
        for k, a in enumerate(anns, 1):
            kp = np.array(a["keypoints"], dtype=np.int64).reshape(-1, 3)
            kp[:, 2] = [RAW_FLAG[int(v)] for v in kp[:, 2]]
            kps[f"human{k}"] = kp.reshape(-1).tolist()
            x, y, w, h = a["bbox"]
            boxes[f"human{k}"] = [x, y, x + w, y + h]
        raw.append({"image_id": stem, "keypoint_annotations": kps, "human_annotations": boxes})
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(raw))
    return path, images, coco


def test_aic_raw_to_coco_layout_by_hand(tmp_path):
    raw, images, coco = _raw_aic(tmp_path)
    out = tmp_path / "aic_coco.json"
    report = convert_aic(str(raw), str(images), str(out))
    assert (report["images"], report["persons"], report["skipped"]) == (3, 9, 0)
    data = json.loads(out.read_text())
    assert data["categories"][0]["keypoints"] == list(COCO_PERSON.keypoint_names)
    first = data["images"][0]
    assert (first["width"], first["height"]) == (900, 600)  # read from the image file
    ann = data["annotations"][0]  # the sample's annotation 4 on image 1, by hand
    kp = np.array(ann["keypoints"]).reshape(17, 3)
    assert kp[COCO_INDEX["right_shoulder"]].tolist() == [313, 201, 2]  # raw flag 1: visible
    assert kp[COCO_INDEX["right_elbow"]].tolist() == [312, 313, 1]  # raw flag 2: occluded
    assert kp[COCO_INDEX["right_knee"]].tolist() == [0, 0, 0]  # raw flag 3: not labelled
    assert kp[COCO_INDEX["nose"]].tolist() == [0, 0, 0]
    assert ann["bbox"] == [279, 55, 213, 544] and ann["area"] == 213 * 544  # factor 1.0
    assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum()) == 8  # 10 minus head top, neck
    # Mirroring stays consistent: the left/right pairs land on COCO's mirror pairs.
    flip = COCO_PERSON.flip_indices
    assert COCO_PERSON.keypoint_names[flip[COCO_INDEX["right_shoulder"]]] == "left_shoulder"


def test_aic_raw_own_layout_gives_back_the_sample_and_registers(tmp_path):
    raw, images, coco = _raw_aic(tmp_path)
    out = tmp_path / "aic_own.json"
    convert_aic(str(raw), str(images), str(out), layout="own")
    data = json.loads(out.read_text())
    got = [a["keypoints"] for a in data["annotations"]]
    want = []
    for a in coco["annotations"]:
        kp = np.array(a["keypoints"]).reshape(-1, 3)
        kp[kp[:, 2] == 0, :2] = 0
        want.append(kp.reshape(-1).tolist())
    assert got == want
    register_coco_person("test_aic_own_converted", str(out), str(images), AIC_PERSON)
    try:
        dicts = DatasetCatalog.get("test_aic_own_converted")
        assert sum(len(d["annotations"]) for d in dicts) == 9
    finally:
        DatasetCatalog.remove("test_aic_own_converted")


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda e: e["keypoint_annotations"]["human1"].pop(), r"person 'human1': 41 keypoint"),
        (lambda e: e["keypoint_annotations"]["human1"].__setitem__(2, 4), r"visibility \[4\]"),
        (lambda e: e["human_annotations"]["human1"].__setitem__(2, 0), r"without positive size"),
        (lambda e: e.__setitem__("image_id", "missing"), r"image 'missing': no file"),
    ],
)
def test_aic_bad_input_names_image_and_person(tmp_path, mutate, message):
    raw, images, _ = _raw_aic(tmp_path)
    entries = json.loads(raw.read_text())
    mutate(entries[0])
    raw.write_text(json.dumps(entries))
    with pytest.raises(DatasetFormatError, match=message):
        convert_aic(str(raw), str(images), str(tmp_path / "out.json"))
    assert not (tmp_path / "out.json").exists()
    report = convert_aic(str(raw), str(images), str(tmp_path / "out.json"), skip_invalid=True)
    assert report["skipped"] == 1 and report["persons"] < 9


def test_crowdpose_to_coco_layout_by_hand(tmp_path):
    out = tmp_path / "cp.json"
    report = convert_crowdpose(str(CROWDPOSE / "test_crowdpose.json"), str(out))
    assert (report["images"], report["persons"]) == (2, 5)
    data = json.loads(out.read_text())
    crowd = {im["id"]: im["crowdIndex"] for im in data["images"]}
    assert len(crowd) == 2 and crowd[106848] == 0.33
    (ann,) = [a for a in data["annotations"] if a["id"] == 123803]
    kp = np.array(ann["keypoints"]).reshape(17, 3)
    assert kp[COCO_INDEX["right_shoulder"]].tolist() == [208, 108, 2]
    assert kp[COCO_INDEX["left_wrist"]].tolist() == [262, 206, 2]
    assert kp[COCO_INDEX["left_shoulder"]].tolist() == [0, 0, 0]
    assert ann["area"] == pytest.approx(273.15 * 352.42 * 0.53)
    register_coco_person("test_crowdpose_converted", str(out), str(CROWDPOSE))
    try:
        assert len(DatasetCatalog.get("test_crowdpose_converted")) == 2
    finally:
        DatasetCatalog.remove("test_crowdpose_converted")


@pytest.mark.parametrize("layout", ["own", "coco"])
def test_crowdpose_keeps_the_release_counts_and_official_area(tmp_path, layout):
    """num_keypoints as the release counts it, over the 12 limb joints: a person labelled only
    at head and neck keeps 0, which CrowdPose's evaluation ignores (crowdposetools/cocoeval.py
    :126); a person without a count gets its labelled limb joints; area is box w x h x 0.53
    exactly (cocoeval.py:258), a tiny box included."""
    data = json.loads((CROWDPOSE / "test_crowdpose.json").read_text())
    head_neck = data["annotations"][1]  # released with no labelled point
    head_neck["keypoints"][36:] = [300, 40, 2, 302, 60, 1]
    uncounted = data["annotations"][2]  # 10 labelled limb joints, head and neck
    del uncounted["num_keypoints"]
    data["annotations"][3]["bbox"][2:] = [1.5, 1.0]
    src = tmp_path / "cp.json"
    src.write_text(json.dumps(data))
    out = tmp_path / "out.json"
    convert_crowdpose(str(src), str(out), layout=layout)
    got = {a["id"]: a for a in json.loads(out.read_text())["annotations"]}
    assert got[head_neck["id"]]["num_keypoints"] == 0
    assert got[uncounted["id"]]["num_keypoints"] == 10
    for a in data["annotations"]:
        if a is not uncounted:
            assert got[a["id"]]["num_keypoints"] == a["num_keypoints"]
        assert got[a["id"]]["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3] * 0.53, abs=1e-9)


def test_convert_tool_summary_and_exit_code(tmp_path):
    raw, images, _ = _raw_aic(tmp_path)
    tool = samples_root().parents[1] / "tools" / "convert_keypoints.py"
    run = lambda *a: subprocess.run([sys.executable, str(tool), *a], capture_output=True,  # noqa: E731
                                    text=True)  # fmt: skip
    common = ("aic", "--input", str(raw), "--images", str(images), "--output")
    ok = run(*common, str(tmp_path / "o.json"))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "convert_keypoints aic: 3 images, 9 persons in the coco_person layout" in ok.stdout
    entries = json.loads(raw.read_text())
    entries[1]["keypoint_annotations"]["human1"] = [1, 2]
    raw.write_text(json.dumps(entries))
    bad = run(*common, str(tmp_path / "b.json"))
    assert bad.returncode == 2 and "2 keypoint numbers, expected 42" in bad.stderr
    assert run("aic", "--input", str(raw), "--output", "x.json").returncode == 2  # no --images


def test_crowdpose_bad_input_names_image_and_person(tmp_path):
    data = json.loads((CROWDPOSE / "test_crowdpose.json").read_text())
    data["annotations"][0]["keypoints"][2] = 3
    data["annotations"][1]["image_id"] = 1
    src = tmp_path / "cp.json"
    src.write_text(json.dumps(data))
    a0 = data["annotations"][0]
    with pytest.raises(DatasetFormatError, match=rf"person {a0['id']}: visibility \[3\]"):
        convert_crowdpose(str(src), str(tmp_path / "out.json"))
    report = convert_crowdpose(str(src), str(tmp_path / "out.json"), skip_invalid=True)
    assert report["skipped"] == 2 and report["persons"] == 3
    assert any("an image the file does not list" in s for s in report["skipped_items"])


def test_register_helpers_convert_on_first_load(tmp_path, monkeypatch):
    """register_aic / register_crowdpose: one line registers a copy; the converted file lands in
    the datasets cache on first load with the layout's keypoint metadata, and is rebuilt when the
    source file changes."""
    from detectron2.data import MetadataCatalog

    from multitask_pose.data import CROWDPOSE_PERSON
    from multitask_pose.data.converters import register_aic, register_crowdpose

    monkeypatch.setenv("MTP_DATASETS_CACHE", str(tmp_path / "cache"))
    raw, images, _ = _raw_aic(tmp_path)
    register_aic("test_register_aic", str(raw), str(images))
    register_crowdpose("test_register_cp", str(CROWDPOSE / "test_crowdpose.json"), str(CROWDPOSE))
    try:
        meta = MetadataCatalog.get("test_register_aic")
        assert not (tmp_path / "cache" / "converted").exists()  # nothing before the first load
        dicts = DatasetCatalog.get("test_register_aic")
        assert sum(len(d["annotations"]) for d in dicts) == 9
        assert tuple(meta.keypoint_names) == COCO_PERSON.keypoint_names
        first = meta.json_file
        entries = json.loads(raw.read_text())
        entries[0]["keypoint_annotations"].popitem()
        raw.write_text(json.dumps(entries))
        register_aic("test_register_aic2", str(raw), str(images))
        try:
            assert MetadataCatalog.get("test_register_aic2").json_file != first
            assert sum(len(d["annotations"]) for d in DatasetCatalog.get("test_register_aic2")) == 8
        finally:
            DatasetCatalog.remove("test_register_aic2")
            MetadataCatalog.remove("test_register_aic2")
        cp = DatasetCatalog.get("test_register_cp")
        assert len(cp) == 2
        cp_meta = MetadataCatalog.get("test_register_cp")
        assert tuple(cp_meta.keypoint_names) == CROWDPOSE_PERSON.keypoint_names
    finally:
        for name in ("test_register_aic", "test_register_cp"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        register_aic("test_register_missing", str(tmp_path / "none.json"), str(images))
