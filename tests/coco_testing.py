"""Helpers of the evaluation tests (tests/evaluation, tests/reliability): one-image COCO keypoint
datasets written and registered on the fly, predictions fed to the evaluator, and pycocotools'
keypoint AP on a json file as the independent reference."""

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.structures.masks import polygons_to_bitmask


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


def gt_as_predictions(dicts, box_noise=0.0, kp_noise=0.0, seed=0):
    """Instances that reproduce each image's annotations (optionally perturbed)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for d in dicts:
        anns = d["annotations"]
        h, w = d["height"], d["width"]
        inst = Instances((h, w))
        boxes = np.array(
            [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in anns], np.float32
        )
        inst.pred_boxes = Boxes(
            torch.tensor(boxes + box_noise * rng.normal(size=boxes.shape), dtype=torch.float32)
        )
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(len(anns), -1, 3)
        kp[..., :2] += kp_noise * rng.normal(size=kp[..., :2].shape)
        inst.pred_keypoints = torch.tensor(kp)
        # A person without labelled keypoints is, for keypoint AP, a false positive whatever its
        # keypoints; rank those last so they cannot lower the precision of the labelled ones.
        inst.scores = torch.tensor([1.0 if (k[:, 2] > 0).any() else 0.5 for k in kp])
        inst.pred_classes = torch.zeros(len(anns), dtype=torch.long)
        inst.pred_masks = torch.from_numpy(
            np.stack([polygons_to_bitmask(a["segmentation"], h, w) for a in anns])
        )
        pairs.append(({"image_id": d["image_id"]}, {"instances": inst}))
    return pairs


# The CPU R-CNN and top-down recipes on the real COCO sample (train and test), no loader workers:
# what the checkpoint and weight-check tests build models from.
SAMPLE_OPTS = ("DATASETS.TRAIN", "('coco_person_sample',)", "DATASETS.TEST",
               "('coco_person_sample',)", "DATALOADER.NUM_WORKERS", "0")  # fmt: skip


def rcnn_sample_cfg(*opts):
    from conftest import RECIPE
    from multitask_pose.config import get_multitask_cfg

    cfg = get_multitask_cfg()
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list([*SAMPLE_OPTS, *opts])
    return cfg


def topdown_sample_cfg(*opts):
    from conftest import ROOT
    from pose_topdown import get_topdown_cfg

    cfg = get_topdown_cfg()
    cfg.merge_from_file(str(ROOT / "projects/TopDown/configs/Synthetic/hrnet_w18_small_synth.yaml"))
    cfg.merge_from_list([*SAMPLE_OPTS, *opts])
    return cfg
