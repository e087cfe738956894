"""The data-strategy study's SynthPeople splits: AI Challenger's layout (head top and neck added)
published in its raw format and read back by the converter, the unlabelled view, and the
deliberately inconsistent annotations that data selection removes. Small splits generated into a
temporary cache (the registered 2000-image ones are the study's)."""

import json
from pathlib import Path

import numpy as np
import pytest

from multitask_pose.data import AIC_PERSON, COCO_PERSON
from multitask_pose.data import synth_people as sp
from multitask_pose.data.converters import aic_raw_from_coco
from multitask_pose.data.selection import unlabel_inconsistent

AIC = {n: i for i, n in enumerate(AIC_PERSON.keypoint_names)}
COCO = {n: i for i, n in enumerate(COCO_PERSON.keypoint_names)}


@pytest.fixture(scope="module")
def aic_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_cache")
    mp = pytest.MonkeyPatch()
    mp.setitem(sp.SPLITS, "synth_people_tiny_aic",
               sp.SynthSplit(num_images=8, seed=12, basic=True, layout="aic"))  # fmt: skip
    try:
        converted, images = sp.ensure_aic_split("synth_people_tiny_aic", str(root), progress=False)
        generated = json.loads((Path(images).parent / "annotations.json").read_text())
        yield json.loads(Path(converted).read_text()), generated, images
    finally:
        mp.undo()


def test_aic_split_round_trips_through_the_raw_release_format(aic_split):
    converted, generated, _ = aic_split
    assert converted["categories"][0]["keypoints"] == list(AIC_PERSON.keypoint_names)
    assert len(converted["annotations"]) == len(generated["annotations"]) > 8
    for c, g in zip(converted["annotations"], generated["annotations"]):
        ck = np.array(c["keypoints"]).reshape(14, 3)
        gk = np.array(g["keypoints"]).reshape(14, 3)
        assert (ck[:, 2] == gk[:, 2]).all()  # visibility 2/1/0 -> flags 1/2/3 -> 2/1/0
        lab = gk[:, 2] > 0
        assert np.abs(ck[lab, :2] - gk[lab, :2]).max() <= 0.5  # the release's integer pixels
        assert (ck[~lab] == 0).all()
        assert np.abs(np.array(c["bbox"]) - np.array(g["bbox"])).max() <= 2  # integer x1y1x2y2
        assert c["area"] == pytest.approx(c["bbox"][2] * c["bbox"][3])  # AIC's area rule


def test_aic_split_draws_the_coco_split_plus_head_top_and_neck(aic_split):
    """The layout changes what is annotated, not what is drawn: the same seed renders the same
    image and the same 12 limb joints in both layouts; the head top is above the neck, the neck
    between the shoulders' height and the top of the head."""
    coco = sp.SynthPeople(12, basic=True, spec=COCO_PERSON)
    aic = sp.SynthPeople(12, basic=True, spec=AIC_PERSON)
    upright = 0
    for i in range(4):
        (ci, ca), (ai, aa) = coco.render(i), aic.render(i)
        assert np.array_equal(ci, ai) and len(ca) == len(aa)
        for c, a in zip(ca, aa):
            ck, ak = (
                np.array(c["keypoints"]).reshape(17, 3),
                np.array(a["keypoints"]).reshape(14, 3),
            )
            for name, j in AIC.items():
                if name in COCO:
                    assert (ak[j] == ck[COCO[name]]).all(), name
            top, neck = ak[AIC["head_top"]], ak[AIC["neck"]]
            shoulders = ak[[AIC["left_shoulder"], AIC["right_shoulder"]]]
            if top[2] and neck[2] and shoulders[:, 2].all():
                upright += 1
                assert top[1] < neck[1] <= shoulders[:, 1].max() + 0.1 * c["bbox"][3]
    assert upright >= 5


def test_unlabelled_view_hides_every_annotation():
    dicts = [{"image_id": 1, "file_name": "a.jpg", "annotations": [{"bbox": [0, 0, 1, 1]}]}]
    split = sp.SynthSplit(num_images=1, seed=13, basic=True, view="unlabelled")
    assert sp.view_dicts(dicts, split) == [{"image_id": 1, "file_name": "a.jpg", "annotations": []}]
    assert dicts[0]["annotations"]  # the input is not changed


def test_inconsistent_annotations_are_what_data_selection_removes():
    """A seeded 30% of the persons get keypoints displaced from their box; the OKS team's line
    rejects most of those that keep keypoints in the image (93% on synth_people_basic_val's
    465 persons) and no clean one."""
    from detectron2.structures import BoxMode

    gen = sp.SynthPeople(14, basic=True)
    dicts = []
    for i in range(40):
        img, anns = gen.render(i)
        anns = [dict(a, bbox_mode=BoxMode.XYWH_ABS) for a in anns]
        dicts.append({"image_id": i, "height": img.shape[0], "width": img.shape[1],
                      "annotations": anns})  # fmt: skip
    bad = sp.make_inconsistent(dicts, sp.INCONSISTENT_FRACTION, 14)
    assert bad == sp.make_inconsistent(dicts, sp.INCONSISTENT_FRACTION, 14)  # seeded
    flags = np.array([a["inconsistent"] for d in bad for a in d["annotations"]])
    assert 0.2 < flags.mean() < 0.4 and len(flags) > 60

    def labelled(ds):
        return np.array([(np.array(a["keypoints"]).reshape(-1, 3)[:, 2] > 0).any()
                         for d in ds for a in d["annotations"]])  # fmt: skip

    selected, _, _ = unlabel_inconsistent(bad)
    before, after = labelled(bad), labelled(selected)
    rejected = before & ~after
    assert rejected[flags & before].mean() > 0.6
    assert rejected[~flags & before].mean() < 0.03
    # Clean persons are untouched.
    for d0, d1 in zip(dicts, bad):
        for a0, a1 in zip(d0["annotations"], d1["annotations"]):
            if not a1["inconsistent"]:
                assert a1["keypoints"] == a0["keypoints"]


def test_raw_writer_refuses_other_layouts_and_names():
    coco = {"images": [{"id": 1, "file_name": "x.png"}], "annotations": [],
            "categories": [{"keypoints": list(AIC_PERSON.keypoint_names)}]}  # fmt: skip
    with pytest.raises(ValueError, match="not a <stem>.jpg"):
        aic_raw_from_coco(coco)
    coco["categories"][0]["keypoints"] = list(COCO_PERSON.keypoint_names)
    with pytest.raises(ValueError, match="not AI Challenger's"):
        aic_raw_from_coco(coco)
