"""The OKS team's data selection: hand-built annotations above and below the line, the tool's
output and report, bad input."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from multitask_pose.data.paths import samples_root
from multitask_pose.data.selection import consistency, select_annotations

BOX = [100.0, 50.0, 100.0, 200.0]  # XYWH: centre (150, 150), area 20000


def _person(offsets, k=17, box=BOX, ann_id=0):
    """An annotation whose first len(offsets) keypoints are labelled at the box centre plus the
    given offsets; the rest unlabelled."""
    kp = np.zeros((k, 3))
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    for i, (dx, dy) in enumerate(offsets):
        kp[i] = (cx + dx, cy + dy, 2)
    return {"id": ann_id, "bbox": list(box), "keypoints": kp.reshape(-1).tolist(), "iscrowd": 0}


def _offset_for(ks):
    """The centre offset (pixels) whose ks on BOX is ``ks``: exp(-d^2 / (2 * 20000)) = ks."""
    return math.sqrt(-2 * 20000 * math.log(ks))


@pytest.mark.parametrize(
    "n,ks,kept",
    [
        (1, 0.50, True),  # line at n = 1: 0.45
        (1, 0.40, False),
        (17, 0.70, True),  # line at n = 17: 0.65
        (17, 0.60, False),
        (9, 0.56, True),  # line at n = 9: 0.55
        (9, 0.54, False),
    ],
)
def test_points_right_of_the_line_are_kept(n, ks, kept):
    d = _offset_for(ks)
    # n points whose mean sits d pixels right of the box centre (symmetric spread in y).
    offsets = [(d, 10.0 * ((-1) ** i) if n > 1 and i < n - n % 2 else 0.0) for i in range(n)]
    ann = _person(offsets)
    got_ks, got_n = consistency([ann], 17)
    assert got_n[0] == n and got_ks[0] == pytest.approx(ks, rel=1e-9)
    selected, (_, _, keep) = select_annotations([ann], 17)
    assert bool(keep[0]) is kept and len(selected) == int(kept)


def test_persons_without_keypoints_are_kept_and_other_layouts_use_their_count():
    empty = _person([])
    far14 = _person([(_offset_for(0.6), 0)] * 14, k=14)  # n = K = 14: the line is at 0.65
    near14 = _person([(_offset_for(0.7), 0)] * 14, k=14)
    assert select_annotations([empty], 17)[1][2].tolist() == [True]
    assert select_annotations([far14, near14], 14)[1][2].tolist() == [False, True]
    with pytest.raises(ValueError, match="keypoint lists of 42 numbers, expected 51"):
        consistency([near14], 17)


def test_select_tool_writes_the_filtered_file_and_report(tmp_path):
    src = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
    n_before = len(src["annotations"])
    bad = _person([(_offset_for(0.3), 0)] * 5, ann_id=999999)
    bad["image_id"] = src["images"][0]["id"]
    src["annotations"].append(bad)
    path = tmp_path / "in.json"
    path.write_text(json.dumps(src))
    tool = samples_root().parents[1] / "tools" / "select_data.py"
    out, report = tmp_path / "out.json", tmp_path / "report"
    run = subprocess.run([sys.executable, str(tool), "--input", str(path), "--output", str(out),
                          "--report", str(report)], capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    ids = {a["id"] for a in json.loads(out.read_text())["annotations"]}
    assert 999999 not in ids
    # The real annotations agree with their boxes: all kept.
    assert len(ids) == n_before, "a real COCO annotation was dropped"
    assert "select_data: 1 of 13 judged annotations dropped" in run.stdout
    assert (report / "scatter.png").stat().st_size > 1000 and "dropped 1" in (
        report / "report.md"
    ).read_text()
    missing = subprocess.run([sys.executable, str(tool), "--input", str(tmp_path / "no.json"),
                              "--output", str(out)], capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 2 and "no.json" in missing.stderr


def test_loading_option_unlabels_the_rejected_persons_keypoints():
    """DATASETS.KEYPOINT_SELECTION on detectron2 dicts (XYWH boxes as load_coco_json gives, and
    XYXY): the inconsistent person keeps its box but loses its keypoints; the consistent one,
    a crowd region and the input dicts are untouched; off, nothing changes."""
    from detectron2.structures import BoxMode

    from multitask_pose import get_multitask_cfg
    from multitask_pose.data.build import select_training_annotations

    good = _person([(5.0, 0.0)] * 17)
    bad = _person([(_offset_for(0.3), 0.0)] * 5)
    x, y, w, h = BOX
    bad_xyxy = dict(bad, bbox=[x, y, x + w, y + h], bbox_mode=BoxMode.XYXY_ABS)
    crowd = dict(bad, iscrowd=1)
    for a in (good, bad, crowd):
        a["bbox_mode"] = BoxMode.XYWH_ABS
    dicts = [{"image_id": 1, "annotations": [good, bad]},
             {"image_id": 2, "annotations": [bad_xyxy, crowd]}]  # fmt: skip
    before = json.dumps(dicts)
    cfg = get_multitask_cfg()
    assert select_training_annotations(cfg, dicts, "test") is dicts  # off by default
    cfg.DATASETS.KEYPOINT_SELECTION = True
    out = select_training_annotations(cfg, dicts, "test")
    assert json.dumps(dicts) == before  # the input is not changed
    assert out[0]["annotations"][0] is good and out[1]["annotations"][1] is crowd
    for rejected, src in ((out[0]["annotations"][1], bad), (out[1]["annotations"][0], bad_xyxy)):
        assert rejected["bbox"] == src["bbox"] and not any(rejected["keypoints"])
        assert len(rejected["keypoints"]) == 51


def test_hard_examples_are_the_persons_the_model_misses():
    """On the real COCO sample: ground truth fed back as predictions leaves nothing hard; a
    person whose prediction is moved by a fifth of its height, and a person without any
    prediction, are hard; crowd regions and persons without keypoints are not judged."""
    from multitask_pose.data import COCO_PERSON
    from multitask_pose.data.selection import hard_examples

    gt = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
    with_kp = [a for a in gt["annotations"] if sum(a["keypoints"][2::3]) > 0]
    perfect = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1.0}
               for a in with_kp]  # fmt: skip
    hard, best = hard_examples(gt, perfect, COCO_PERSON.oks_sigmas, 0.5)
    assert hard == [] and len(best) == len(with_kp) == 12
    assert all(v == pytest.approx(1.0) for v in best.values())
    moved, dropped = with_kp[0], with_kp[1]
    preds = [p for p, a in zip(perfect, with_kp) if a is not dropped]
    shift = 0.2 * moved["bbox"][3]
    kp = np.array(moved["keypoints"], dtype=np.float64).reshape(17, 3)
    kp[:, 0] += shift
    preds[0] = {**preds[0], "keypoints": kp.reshape(-1).tolist()}
    hard, best = hard_examples(gt, preds, COCO_PERSON.oks_sigmas, 0.5)
    assert sorted(a["id"] for a in hard) == sorted([moved["id"], dropped["id"]])
    assert best[dropped["id"]] < 1e-6 and 0.01 < best[moved["id"]] < 0.5


def test_hard_examples_tool_names_results_for_another_dataset(tmp_path):
    tool = samples_root().parents[1] / "tools" / "select_hard_examples.py"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"image_id": 123456789, "category_id": 1, "score": 1.0,
                                  "keypoints": [0.0] * 51}]))  # fmt: skip
    run = subprocess.run([sys.executable, str(tool), "--dataset", "coco_person_sample",
                          "--results", str(wrong), "--output", str(tmp_path / "o.json")],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 2 and "not in dataset 'coco_person_sample'" in run.stderr
    gt = json.loads((samples_root() / "coco" / "test_coco.json").read_text())
    preds = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt["annotations"]
        if sum(a["keypoints"][2::3]) > 0
    ][1:]
    good = tmp_path / "preds.json"
    good.write_text(json.dumps(preds))
    run = subprocess.run([sys.executable, str(tool), "--dataset", "coco_person_sample",
                          "--results", str(good), "--output", str(tmp_path / "o.json")],
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "select_hard_examples: 1 of 12 persons below OKS 0.5 in 1 images" in run.stdout
    out = json.loads((tmp_path / "o.json").read_text())
    assert len(out["annotations"]) == 1 and len(out["images"]) == 1
