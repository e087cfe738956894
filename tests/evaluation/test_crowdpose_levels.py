"""CrowdPose in its own 14-keypoint layout: the real sample converted, ground truth scoring AP 1,
and AP per crowding level (easy / medium / hard by crowdIndex) equal to pycocotools restricted
to each level's images, with CrowdPose's sigmas."""

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

import multitask_pose  # noqa: F401
from multitask_pose.data import CROWDPOSE_PERSON, register_coco_person
from multitask_pose.data.converters import convert_crowdpose
from multitask_pose.data.paths import samples_root
from multitask_pose.evaluation import PoseCOCOEvaluator


@pytest.fixture(scope="module")
def crowdpose(tmp_path_factory):
    """The sample in its own layout, one image made easy (0.1) and the other hard (0.9)."""
    tmp = tmp_path_factory.mktemp("crowdpose")
    path = tmp / "cp.json"
    convert_crowdpose(str(samples_root() / "crowdpose" / "test_crowdpose.json"), str(path),
                      layout="own")  # fmt: skip
    data = json.loads(path.read_text())
    for im in data["images"]:
        im["crowdIndex"] = {106848: 0.1, 103319: 0.9}[im["id"]]
    path.write_text(json.dumps(data))
    register_coco_person("test_crowdpose_levels", str(path), str(samples_root() / "crowdpose"),
                         CROWDPOSE_PERSON)  # fmt: skip
    DatasetCatalog.get("test_crowdpose_levels")  # loading sets the evaluator's category mapping
    return path, data


def _predictions(data, noise, seed=0):
    rng = np.random.default_rng(seed)
    per_image = {}
    for a in data["annotations"]:
        kp = np.array(a["keypoints"], dtype=np.float64).reshape(14, 3)
        if not (kp[:, 2] > 0).any():
            continue
        kp[:, :2] += rng.normal(0, noise, (14, 2)) * math.sqrt(a["area"]) * 0.05
        per_image.setdefault(a["image_id"], []).append((kp, float(rng.uniform(0.5, 1))))
    return per_image


def _evaluate(per_image, backend):
    ev = PoseCOCOEvaluator("test_crowdpose_levels", tasks=("keypoints",), distributed=False,
                           backend=backend)  # fmt: skip
    ev.reset()
    for image_id, preds in per_image.items():
        kp = torch.tensor(np.stack([p for p, _ in preds]), dtype=torch.float32)
        kp[..., :2] += 0.5  # detectron2's frame; the evaluator writes COCO's
        inst = Instances((480, 640))
        inst.pred_keypoints = kp
        inst.pred_boxes = Boxes(torch.cat([kp[..., :2].min(1)[0], kp[..., :2].max(1)[0]], 1))
        inst.scores = torch.tensor([s for _, s in preds])
        inst.pred_classes = torch.zeros(len(preds), dtype=torch.long)
        ev.process([{"image_id": image_id}], [{"instances": inst}])
    return ev.evaluate()["keypoints"]


def _pycocotools_ap(path, per_image, image_ids):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets = [{"image_id": i, "category_id": 1, "keypoints": p.reshape(-1).tolist(), "score": s}
            for i, preds in per_image.items() for p, s in preds]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
        ev.params.kpt_oks_sigmas = np.array(CROWDPOSE_PERSON.oks_sigmas)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * ev.stats[0]


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_ground_truth_scores_one_at_every_level(crowdpose, backend):
    _, data = crowdpose
    res = _evaluate(_predictions(data, 0.0), backend)
    assert res["AP"] == pytest.approx(100) and res["APeasy"] == pytest.approx(100)
    assert res["APhard"] == pytest.approx(100) and math.isnan(res["APmedium"])


def test_levels_equal_pycocotools_on_their_images(crowdpose):
    path, data = crowdpose
    preds = _predictions(data, 1.0, seed=3)
    res = {b: _evaluate(preds, b) for b in ("faster_coco_eval", "pycocotools")}
    for b in res:
        assert res[b]["AP"] == pytest.approx(_pycocotools_ap(path, preds, [106848, 103319]))
        assert res[b]["APeasy"] == pytest.approx(_pycocotools_ap(path, preds, [106848]))
        assert res[b]["APhard"] == pytest.approx(_pycocotools_ap(path, preds, [103319]))
    assert 0 < res["pycocotools"]["APeasy"] < 100 and res["pycocotools"]["APeasy"] != pytest.approx(
        res["pycocotools"]["APhard"]
    )


def test_datasets_without_crowd_index_get_no_levels():
    from coco_testing import gt_as_predictions

    ev = PoseCOCOEvaluator("coco_person_sample", tasks=("keypoints",), distributed=False)
    ev.reset()
    for inp, out in gt_as_predictions(DatasetCatalog.get("coco_person_sample")):
        ev.process([inp], [out])
    assert not {"APeasy", "APmedium", "APhard"} & set(ev.evaluate()["keypoints"])
