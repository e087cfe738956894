"""Helpers of the evaluation tests (tests/evaluation, tests/reliability): one-image COCO keypoint
datasets written and registered on the fly, predictions fed to the evaluator, and pycocotools'
keypoint AP on a json file as the independent reference."""

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances


def write_dataset(tmp_path, name, annotations, k, spec, load=True):
    """A one-image COCO dataset of ``k`` keypoints registered under ``name``; ``load=False`` for
    files detectron2's loader refuses (repeated annotation ids): registered, not loaded."""
    import json

    import cv2

    from multitask_pose.data.datasets import register_coco_person

    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((300, 300, 3), np.uint8))
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 300, "width": 300}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(spec.keypoint_names),
                        "skeleton": []}],
    }))  # fmt: skip
    if name not in DatasetCatalog.list():
        register_coco_person(name, str(path), str(tmp_path), spec=spec)
    if load:
        DatasetCatalog.get(name)  # loading sets the category id mapping the evaluator reads
    else:
        from detectron2.data import MetadataCatalog

        MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id = {1: 0}
    return path


def person_annotation(ann_id, x0, k, rng, iscrowd=0):
    kp = np.zeros((k, 3))
    kp[:, 0] = x0 + rng.uniform(5, 55, k)
    kp[:, 1] = rng.uniform(20, 180, k)
    kp[:, 2] = 2
    return {"id": ann_id, "image_id": 1, "category_id": 1, "iscrowd": iscrowd,
            "bbox": [x0, 10, 60, 180], "area": 60 * 180.0, "num_keypoints": k,
            "keypoints": kp.reshape(-1).tolist()}  # fmt: skip


def predict_keypoints(evaluator, poses, scores):
    """COCO-frame (x, y) poses -> the evaluator, as a model's Instances (detectron2 frame)."""
    inst = Instances((300, 300))
    kp = np.asarray(poses, np.float32).copy()
    kp[..., :2] += 0.5  # detectron2 keeps keypoints at COCO value + 0.5
    inst.pred_keypoints = torch.tensor(kp)
    xy = kp[..., :2]
    inst.pred_boxes = Boxes(torch.tensor(np.concatenate([xy.min(1), xy.max(1)], 1)))
    inst.scores = torch.tensor(scores, dtype=torch.float32)
    inst.pred_classes = torch.zeros(len(scores), dtype=torch.long)
    evaluator.reset()
    evaluator.process([{"image_id": 1}], [{"instances": inst}])
    return evaluator.evaluate()


def pycocotools_keypoint_ap(json_path, poses, scores, sigmas):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_path))
        dets = [
            {"image_id": 1, "category_id": 1, "keypoints": np.ravel(p).tolist(), "score": s}
            for p, s in zip(poses, scores)
        ]
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * ev.stats[0]
