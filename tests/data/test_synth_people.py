"""Tests of the SynthPeople generator: COCO format, label/drawing agreement, honest visibility,
determinism, pinned output (hashes), size range, mask fullness, cached splits and crash safety."""
import hashlib
import json
import os
import platform

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO

from multitask_pose.data import synth_people as sp
from multitask_pose.data.keypoints import COCO_PERSON, skeleton_indices
from multitask_pose.data.paths import samples_root
from multitask_pose.data.synth_people.stats import limb_fractions, split_statistics

# pycocotools' RLE decoding trips a numpy-2 deprecation warning on every call; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

K = COCO_PERSON.num_keypoints
NAMES = list(COCO_PERSON.keypoint_names)
IDX = {n: i for i, n in enumerate(NAMES)}
SAMPLES = str(samples_root())


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small dataset written to disk: (json path, image root)."""
    out = tmp_path_factory.mktemp("synth") / "ds"
    json_path = sp.SynthPeople(seed=5).write(str(out), 40, progress=False)
    return json_path, os.path.join(str(out), "images")


@pytest.fixture(scope="module")
def rendered():
    """A few hundred rendered images (no disk): list of (image shape, annotations)."""
    gen = sp.SynthPeople(seed=11)
    out = []
    for i in range(260):
        img, anns = gen.render(i)
        out.append((img.shape, anns))
    return out


def _masks(anns):
    return [mask_util.decode(a["segmentation"]).astype(bool) for a in anns]


def test_coco_format(written):
    json_path, image_root = written
    coco = COCO(json_path)
    with open(json_path) as f:
        data = json.load(f)
    assert len(data["images"]) == 40
    cat = data["categories"]
    assert cat == [{
        "id": 1, "name": "person", "supercategory": "person", "keypoints": NAMES,
        "skeleton": [[a + 1, b + 1] for a, b in skeleton_indices(COCO_PERSON)],
    }]
    for im in data["images"]:
        assert set(im) >= {"id", "file_name", "height", "width"}
        arr = cv2.imread(os.path.join(image_root, im["file_name"]))
        assert arr is not None and arr.shape[:2] == (im["height"], im["width"])
        assert max(im["height"], im["width"]) == 320
    ids = [a["id"] for a in data["annotations"]]
    assert len(ids) == len(set(ids)) and min(ids) >= 1
    image_ids = {im["id"] for im in data["images"]}
    for a in data["annotations"]:
        assert a["image_id"] in image_ids
        assert a["category_id"] == 1 and a["iscrowd"] == 0
        assert len(a["keypoints"]) == 3 * K
        v = np.array(a["keypoints"]).reshape(K, 3)[:, 2]
        assert set(np.unique(v)) <= {0, 1, 2}
        assert a["num_keypoints"] == int((v > 0).sum())
        m = coco.annToMask(a)
        assert m.shape == (coco.imgs[a["image_id"]]["height"], coco.imgs[a["image_id"]]["width"])
        assert a["area"] == int(m.sum()) > 0
    assert len(coco.getAnnIds()) > 40  # people in most images


def test_boxes_masks_keypoints_agree(rendered):
    n_ann = 0
    for (h, w, _), anns in rendered:
        masks = _masks(anns)
        if masks:  # visible masks of different people never overlap
            assert np.stack(masks).sum(axis=0).max() <= 1
        for a, m in zip(anns, masks):
            n_ann += 1
            x, y, bw, bh = a["bbox"]
            x1, y1 = x + bw, y + bh
            assert bw > 0 and bh > 0 and x >= 0 and y >= 0 and x1 <= w + 1e-6 and y1 <= h + 1e-6
            assert a["area"] == int(m.sum()) > 0
            rows, cols = np.nonzero(m)
            # pixel j covers [j, j+1): the mask lies inside the box
            assert cols.min() >= x - 1e-6 and cols.max() + 1 <= x1 + 1e-6
            assert rows.min() >= y - 1e-6 and rows.max() + 1 <= y1 + 1e-6
            k = np.array(a["keypoints"], dtype=np.float64).reshape(K, 3)
            lab = k[:, 2] > 0
            assert np.all(k[~lab, :2] == 0), "unlabelled keypoints must be (0, 0)"
            kx, ky = k[lab, 0], k[lab, 1]
            assert np.all((kx >= x - 1e-6) & (kx <= x1 + 1e-6)
                          & (ky >= y - 1e-6) & (ky <= y1 + 1e-6))
            assert np.all((kx >= 0) & (kx <= w - 1) & (ky >= 0) & (ky <= h - 1))
            # tight: every edge touches a mask pixel or a labelled keypoint
            tol = 0.011
            assert abs(x - cols.min()) < tol or np.any(np.abs(kx - x) < tol)
            assert abs(y - rows.min()) < tol or np.any(np.abs(ky - y) < tol)
            assert abs(x1 - (cols.max() + 1)) < tol or np.any(np.abs(kx - x1) < tol)
            assert abs(y1 - (rows.max() + 1)) < tol or np.any(np.abs(ky - y1) < tol)
    assert n_ann > 300


def test_visibility_is_honest(rendered):
    """v=2 points sit on the person's own visible pixels; a point on someone else's pixels is
    never v=2; many v=1 points are self-occluded (on the own mask, behind the near surface), the
    rest are hidden by other people or distractors."""
    v2_on, v2_n, v1_on, v1_other, v1_n = 0, 0, 0, 0, 0
    for _, anns in rendered:
        masks = _masks(anns)
        for i, (a, m) in enumerate(zip(anns, masks)):
            k = np.array(a["keypoints"], dtype=np.float64).reshape(K, 3)
            for x, y, v in k:
                if v == 0:
                    continue
                iy, ix = int(round(y)), int(round(x))
                near = m[max(iy - 1, 0):iy + 2, max(ix - 1, 0):ix + 2].any()
                on_other = any(mm[iy, ix] for j, mm in enumerate(masks) if j != i)
                if v == 2:
                    v2_n += 1
                    v2_on += near
                    assert not on_other, "a keypoint drawn over another person cannot be visible"
                else:
                    v1_n += 1
                    v1_on += bool(m[iy, ix])
                    v1_other += on_other
    assert v2_n > 3000 and v1_n > 500
    assert v2_on / v2_n > 0.99
    assert v1_on / v1_n < 0.95  # some are hidden by other things than the own body
    assert v1_other / v1_n > 0.01  # people occlude each other


def test_facing_decides_left_right(rendered):
    """No colour marks a side: left/right follow from the facing direction. A person whose face
    is seen (nose and both eyes visible) shows their left shoulder on the image right."""
    facing, correct = 0, 0
    for _, anns in rendered:
        for a in anns:
            k = np.array(a["keypoints"], dtype=np.float64).reshape(K, 3)
            face_seen = all(k[IDX[n], 2] == 2 for n in ("nose", "left_eye", "right_eye"))
            ls, rs = k[IDX["left_shoulder"]], k[IDX["right_shoulder"]]
            if face_seen and ls[2] == 2 and rs[2] == 2 and abs(ls[0] - rs[0]) > 3:
                facing += 1
                correct += ls[0] > rs[0]
    assert facing > 30
    assert correct / facing > 0.85  # the head may turn up to 75 deg and the body may lean


def test_deterministic(tmp_path):
    def files(d):
        out = {}
        for root, _, names in os.walk(d):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    out[os.path.relpath(os.path.join(root, n), d)] = f.read()
        return out

    a = files(os.path.dirname(sp.SynthPeople(3).write(str(tmp_path / "a"), 6, progress=False)))
    b = files(os.path.dirname(sp.SynthPeople(3).write(str(tmp_path / "b"), 6, progress=False)))
    c = files(os.path.dirname(sp.SynthPeople(4).write(str(tmp_path / "c"), 6, progress=False)))
    assert a == b
    assert a["annotations.json"] != c["annotations.json"]
    assert a["images/000000.jpg"] != c["images/000000.jpg"]
    # images do not depend on each other: render order does not matter
    gen = sp.SynthPeople(3)
    img5, anns5 = gen.render(5)
    gen.render(2)
    img5b, anns5b = sp.SynthPeople(3).render(5)
    assert np.array_equal(img5, img5b) and anns5 == anns5b


# The exact output of SynthPeople(seed=5) for its first 12 images. Any change to an RNG draw (its
# order, count or arguments) changes these, so a refactoring that moves code must leave them as
# they are; a deliberate change to the output must bump GENERATOR_VERSION and update them.
PINNED_SEED, PINNED_IMAGES = 5, 12
# sha256 of the annotations.json that write() produces (its bytes). It does not depend on the JPEG
# encoder (the json holds file names and sizes only) nor, as measured, on numpy's or OpenCV's SIMD
# level: it comes from the RNG and float64/IEEE geometry, so it is asserted everywhere.
PINNED_JSON_SHA256 = "2c2f95f867c6413b910c7a9dfd5eb2d28fc86fbf623d893a488108b5d616b15c"
# sha256 of the rendered uint8 arrays, before JPEG encoding: JPEG bytes depend on the
# OpenCV/libjpeg build, so files (or their decoded pixels) are not hashed. The arrays are rendered
# with cv2.setUseOptimized(False): OpenCV's AVX2 kernels of GaussianBlur/resize on float32 differ
# from its baseline ones in the last bits (which the uint8 cast can turn into a pixel value), so the
# baseline path keeps the hash independent of the CPU. It still depends on OpenCV's version (only
# lower-bounded in requirements.txt) and the architecture, hence pinned for the ones measured.
PINNED_PIXELS_SHA256 = "4ca92e662b758efa2653b9e613a8367fb6e902824682077eadd752bff4461a14"
PINNED_PIXELS_ENV = ("5.0.0", "x86_64")  # cv2.__version__, platform.machine()


def test_output_is_pinned(tmp_path):
    json_path = sp.SynthPeople(seed=PINNED_SEED).write(str(tmp_path / "ds"), PINNED_IMAGES,
                                                       progress=False)
    with open(json_path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == PINNED_JSON_SHA256

    env = (cv2.__version__, platform.machine())
    if env != PINNED_PIXELS_ENV:
        pytest.skip(f"image hash pinned for OpenCV/arch {PINNED_PIXELS_ENV}, this is {env} "
                    "(the annotation hash above passed)")
    optimized = cv2.useOptimized()
    cv2.setUseOptimized(False)
    try:
        gen, h = sp.SynthPeople(seed=PINNED_SEED), hashlib.sha256()
        for i in range(PINNED_IMAGES):
            img, _ = gen.render(i)
            h.update(f"{i}:{img.shape}:{img.dtype};".encode())
            h.update(img.tobytes())
    finally:
        cv2.setUseOptimized(optimized)
    assert h.hexdigest() == PINNED_PIXELS_SHA256


def test_sizes_crowds_and_empty_images(rendered):
    heights, rel, n_people = [], [], []
    for (h, w, _), anns in rendered:
        n_people.append(len(anns))
        for a in anns:
            heights.append(a["bbox"][3])
            rel.append(a["bbox"][3] / h)
    heights, rel = np.array(heights), np.array(rel)
    assert heights.min() <= 36, "small people (~30 px tall) are present"
    assert np.mean(rel > 0.8) > 0.03, "large people (most of the image height) are present"
    assert 0 < np.mean(np.array(n_people) == 0) < 0.1, "a few images have no people"
    assert 1.5 < np.mean(n_people) < 3.0
    crowd = sp.SynthPeople(seed=2, crowded=True)
    n_crowd = [len(crowd.render(i)[1]) for i in range(25)]
    assert np.mean(n_crowd) > np.mean(n_people) + 2.5


def test_mask_fullness(rendered):
    """COCO's OKS scales with the mask area: masks must fill boxes like real people do."""
    fill = [a["area"] / (a["bbox"][2] * a["bbox"][3]) for _, anns in rendered for a in anns]
    assert 0.35 < np.median(fill) < 0.75


def test_unknown_split_raises(tmp_path):
    with pytest.raises(KeyError, match="no_such_split"):
        sp.ensure_split("no_such_split", str(tmp_path))
    with pytest.raises(KeyError, match="synth_people_val"):  # names the known splits
        sp.split_dir("no_such_split", str(tmp_path))


def test_api_splits():
    assert sp.SPLITS["synth_people_train"] == sp.SynthSplit(2000, 0, False, 320)
    assert sp.SPLITS["synth_people_val"] == sp.SynthSplit(200, 1, False, 320)
    assert sp.SPLITS["synth_people_crowd_val"] == sp.SynthSplit(100, 2, True, 320)
    assert sp.SPLITS["synth_people_basic_train"] == sp.SynthSplit(2000, 10, basic=True)
    assert sp.SPLITS["synth_people_basic_val"] == sp.SynthSplit(200, 11, basic=True)
    with pytest.raises(ValueError, match="crowded or basic"):
        sp.SynthPeople(0, crowded=True, basic=True)


def _as_dataset(rendered_images):
    images, anns = [], []
    for i, (shape, img_anns) in enumerate(rendered_images):
        images.append({"id": i, "height": shape[0], "width": shape[1]})
        anns += [dict(a, image_id=i) for a in img_anns]
    return {"images": images, "annotations": anns}


def test_basic_level_statistics_in_documented_ranges():
    """The README's ranges of the basic level, on the first 100 images of synth_people_basic_val
    (images are independent of each other, so these are exactly that split's)."""
    split = sp.SPLITS["synth_people_basic_val"]
    gen = sp.SynthPeople(split.seed, split.image_size, basic=True)
    rendered = [(img.shape, anns) for img, anns in (gen.render(i) for i in range(100))]
    st = split_statistics(_as_dataset(rendered))
    assert st["persons_per_image_min"] >= 1 and st["persons_per_image_max"] <= 4
    assert 2.0 <= st["persons_per_image_mean"] <= 2.7
    assert st["height_80_300"] >= 0.75, "most people are 80-300 px tall"
    assert st["height_p10"] >= 50 and st["height_p90"] <= 300
    assert st["overlapped"] >= 0.08, "people occlude each other"
    assert st["min_type_labelled"] >= 0.8, "every keypoint type is labelled"
    assert st["labelled"] >= 0.9
    # ... and it is easier than the standard level: fewer small people, no empty images.
    std = split_statistics(_as_dataset(
        [(img.shape, anns) for img, anns in (sp.SynthPeople(1).render(i) for i in range(100))]))
    assert st["height_80_300"] > std["height_80_300"] + 0.15
    # Same seed, same bytes.
    img3, anns3 = gen.render(3)
    img3b, anns3b = sp.SynthPeople(split.seed, split.image_size, basic=True).render(3)
    assert np.array_equal(img3, img3b) and anns3 == anns3b


def test_joint_placement_follows_coco_annotators(rendered):
    """Hips and knees where COCO's annotators put them: the leg and trunk proportions (medians
    of shoulder-hip / hip-knee / knee-ankle as fractions of the chain, upright sides) of the
    rendered people match the real COCO sample's within 0.015. Generator version 1 (hips 3% and
    knees 2% of the height too low) was 0.046 off on shoulder-hip."""
    with open(os.path.join(SAMPLES, "coco", "test_coco.json")) as f:
        coco = limb_fractions(json.load(f))
    synth = limb_fractions(_as_dataset(rendered))
    assert coco["legs"] >= 15 and synth["legs"] >= 300
    for key in ("shoulder_hip", "hip_knee", "knee_ankle"):
        assert abs(synth[key] - coco[key]) < 0.015, (key, synth[key], coco[key])


def test_statistics_reject_bad_input():
    with pytest.raises(ValueError, match="no person annotations"):
        split_statistics({"images": [{"id": 1}], "annotations": []})
    bad = {"images": [{"id": 1}], "annotations": [
        {"image_id": 1, "bbox": [0, 0, 5, 5], "keypoints": [0, 0, 0] * 14}]}
    with pytest.raises(ValueError, match="expected 17 keypoints per person, got 14"):
        split_statistics(bad)
    with pytest.raises(ValueError, match="upright"):
        limb_fractions(bad)


def test_ensure_split_generates_once(tmp_path, monkeypatch):
    monkeypatch.setitem(sp.SPLITS, "synth_people_tiny", sp.SynthSplit(num_images=4, seed=9))
    json_path, image_root = sp.ensure_split("synth_people_tiny", str(tmp_path))
    assert os.path.dirname(json_path) == sp.split_dir("synth_people_tiny", str(tmp_path))
    assert os.path.basename(os.path.dirname(json_path)).startswith("synth_people_tiny-")
    assert sorted(os.listdir(image_root)) == [f"{i:06d}.jpg" for i in range(4)]
    mtime = os.stat(json_path).st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("must reuse the cache")

    monkeypatch.setattr(sp.SynthPeople, "write", fail)
    assert sp.ensure_split("synth_people_tiny", str(tmp_path)) == (json_path, image_root)
    assert os.stat(json_path).st_mtime_ns == mtime
    # other parameters -> other folder
    monkeypatch.setitem(sp.SPLITS, "synth_people_tiny", sp.SynthSplit(num_images=5, seed=9))
    assert sp.split_dir("synth_people_tiny", str(tmp_path)) != os.path.dirname(json_path)


def test_interrupted_write_leaves_nothing_complete(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    gen = sp.SynthPeople(1)
    real = sp.SynthPeople.render

    def render(self, index):
        if index == 3:
            raise KeyboardInterrupt
        return real(self, index)

    monkeypatch.setattr(sp.SynthPeople, "render", render)
    with pytest.raises(KeyboardInterrupt):
        gen.write(str(out), 6, progress=False)
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # temporary folder removed too
    # rewriting into an existing dataset folder replaces it, json last
    monkeypatch.setattr(sp.SynthPeople, "render", real)
    gen.write(str(out), 3, progress=False)
    gen.write(str(out), 2, progress=False)
    with open(out / "annotations.json") as f:
        assert len(json.load(f)["images"]) == 2
    assert sorted(os.listdir(out / "images")) == ["000000.jpg", "000001.jpg"]
    assert sorted(os.listdir(out)) == ["annotations.json", "images"]
