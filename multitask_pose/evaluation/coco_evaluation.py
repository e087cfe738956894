"""COCO bbox / segm / keypoint AP without detectron2's C++ ops.

detectron2 v0.6's ``COCOEvaluator`` computes AP either with pycocotools (slow) or with its own C++
COCOeval from ``detectron2._C`` (absent from a pure-Python install). ``faster-coco-eval`` packages
that same C++ COCOeval; :class:`PoseCOCOEvaluator` routes detectron2's evaluator through it (or
through pycocotools, by config) and takes the OKS sigmas from the dataset's metadata, so nothing
else needs to know the keypoint layout. A dataset in CrowdPose's layout is scored by CrowdPose's
official rules (``ground_truth.py``; plus AR and AP per crowding level), and one in AI
Challenger's layout can also get AI Challenger's own score (``aic_evaluation.py``).
"""

import contextlib
import io
import logging
import os
from unittest import mock

import faster_coco_eval
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation import coco_evaluation as d2_coco_evaluation
from detectron2.structures import Instances
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from pycocotools.coco import COCO

from ..data.keypoints import AIC_PERSON
from ..shared.atomic_io import AtomicPathManager
from .aic_evaluation import aic_keypoint_score
from .ground_truth import complete_ground_truth, is_crowdpose_layout
from .results_record import describe_config, write_results_record

__all__ = ["PoseCOCOEvaluator", "COCO_EVAL_BACKENDS"]

logger = logging.getLogger(__name__)

COCO_EVAL_BACKENDS = ("faster_coco_eval", "pycocotools")


def _file_stamp(path):
    """(inode, mtime) of ``path``, None when it does not exist: a file replaced or rewritten
    since gets another stamp."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


class PoseCOCOEvaluator(COCOEvaluator):
    """detectron2's ``COCOEvaluator`` with a choice of COCO API and the dataset's OKS sigmas.

    Args:
        dataset_name: a registered dataset whose metadata has ``json_file`` and, when it has
            keypoints, ``keypoint_oks_sigmas``.
        backend: "faster_coco_eval" (default) or "pycocotools".
        missing_area_factor: box area factor for ground truth without ``area``
            (``ground_truth.complete_ground_truth``, which also renumbers ids 0 and repeated ids
            and fills ``iscrowd``/``keypoints``); None means 0.53. Not used for a dataset in
            CrowdPose's layout, whose official rule is box area x 0.53 for every person.
        aic_eval: also report AI Challenger's own score as keypoint metric "AIC_mAP" (x 100)
            for a dataset in its 14-keypoint layout (others: a warning, no metric).
        aic_eval_score_thresh: predictions scoring below this are left out of "AIC_mAP".
        Other arguments as detectron2's ``COCOEvaluator``.

    ``process`` leaves the caller's predictions as they are: detectron2's
    ``instances_to_coco_json`` shifts ``pred_keypoints`` by -0.5 in place, so it is given a copy.
    """

    # What makes the predictions, for the record beside coco_instances_results.json
    # (results_record.py; describe_config's dict, set by from_cfg and the trainers): None writes
    # producer and score scale "unknown".
    results_description = None

    def __init__(
        self,
        dataset_name,
        tasks=None,
        distributed=True,
        output_dir=None,
        *,
        backend="faster_coco_eval",
        max_dets_per_image=None,
        missing_area_factor=None,
        aic_eval=False,
        aic_eval_score_thresh=0.0,
    ):
        if backend not in COCO_EVAL_BACKENDS:
            raise ValueError(
                f"TEST.COCO_EVAL_BACKEND={backend!r}; expected one of {COCO_EVAL_BACKENDS}"
            )
        meta = MetadataCatalog.get(dataset_name)
        json_file = getattr(meta, "json_file", None)
        if json_file and not os.path.isfile(json_file):
            # Generated datasets (SynthPeople) write their json on first load.
            DatasetCatalog.get(dataset_name)
        self._backend = backend
        super().__init__(
            dataset_name,
            tasks=tasks,
            distributed=distributed,
            output_dir=output_dir,
            use_fast_impl=backend == "faster_coco_eval",
            kpt_oks_sigmas=tuple(getattr(meta, "keypoint_oks_sigmas", ())),
            max_dets_per_image=max_dets_per_image,
        )
        names = getattr(meta, "keypoint_names", None)
        self._crowdpose = is_crowdpose_layout(names)
        self._aic_eval = bool(aic_eval) and tuple(names or ()) == AIC_PERSON.keypoint_names
        self._aic_eval_score_thresh = float(aic_eval_score_thresh)
        if aic_eval and not self._aic_eval:
            logger.warning("TEST.AIC_EVAL: dataset %r is not in AI Challenger's 14-keypoint "
                           "layout; no AIC_mAP for it", dataset_name)  # fmt: skip
        dataset = complete_ground_truth(
            self._coco_api.dataset,
            source=json_file or f"dataset {dataset_name!r}",
            num_keypoints=len(names) if names else None,
            area_factor=missing_area_factor,
            crowdpose=self._crowdpose,
        )
        if backend == "faster_coco_eval" or dataset is not self._coco_api.dataset:
            # faster-coco-eval's COCOeval needs its own COCO index; a completed dataset a new one.
            gt = faster_coco_eval.COCO() if backend == "faster_coco_eval" else COCO()
            gt.dataset = dataset
            with contextlib.redirect_stdout(io.StringIO()):
                gt.createIndex()
            self._coco_api = gt

    @classmethod
    def from_cfg(cls, cfg, dataset_name, output_dir=None, distributed=True, tasks=None):
        """The evaluator the config asks for, its results described by the config's model;
        ``tasks`` None: those of cfg.MODEL's switches."""
        evaluator = cls(
            dataset_name,
            tasks=_tasks_of(cfg) if tasks is None else tuple(tasks),
            distributed=distributed,
            output_dir=output_dir,
            backend=cfg.TEST.COCO_EVAL_BACKEND,
            max_dets_per_image=cfg.TEST.DETECTIONS_PER_IMAGE,
            missing_area_factor=cfg.TEST.MISSING_AREA_FACTOR,
            aic_eval=cfg.TEST.AIC_EVAL,
            aic_eval_score_thresh=cfg.TEST.AIC_EVAL_SCORE_THRESH,
        )
        evaluator.results_description = describe_config(cfg)
        return evaluator

    def process(self, inputs, outputs):
        """detectron2's, on copies of the keypoints (class docstring)."""
        safe = []
        for out in outputs:
            inst = out.get("instances") if isinstance(out, dict) else None
            if inst is not None and inst.has("pred_keypoints"):
                fields = dict(inst.get_fields(), pred_keypoints=inst.pred_keypoints.clone())
                out = {**out, "instances": Instances(inst.image_size, **fields)}
            safe.append(out)
        super().process(inputs, safe)

    def evaluate(self, img_ids=None):
        """detectron2's, with its result files (instances_predictions.pth,
        coco_instances_results.json) written atomically: a killed evaluation leaves none. A
        results file this evaluation wrote gets its record (``results_record.py``: the dataset,
        and :attr:`results_description`'s producer and keypoint score scale)."""
        results = os.path.join(self._output_dir or "", "coco_instances_results.json")
        before = _file_stamp(results) if self._output_dir else None
        with mock.patch.object(d2_coco_evaluation, "PathManager", AtomicPathManager(PathManager)):
            out = super().evaluate(img_ids)
        written = self._output_dir and _file_stamp(results) not in (None, before)
        if written and comm.is_main_process():
            described = self.results_description or {"producer": "unknown",
                                                     "score_scale": "unknown"}  # fmt: skip
            write_results_record(results, dataset=self._metadata.name, **described)
        return out

    def _eval_predictions(self, predictions, img_ids=None):
        if self._backend != "faster_coco_eval":
            super()._eval_predictions(predictions, img_ids)
        else:
            # detectron2 picks its C++ COCOeval through this module global when
            # use_fast_impl=True; point it at faster-coco-eval's identical implementation for
            # this call only.
            with mock.patch.object(
                d2_coco_evaluation, "COCOeval_opt", faster_coco_eval.COCOeval_faster
            ):
                super()._eval_predictions(predictions, img_ids)
        if self._aic_eval and "keypoints" in self._results:
            results = [r for p in predictions for r in p.get("instances", []) if "keypoints" in r]
            score = aic_keypoint_score(
                self._coco_api.dataset, results, self._kpt_oks_sigmas, self._aic_eval_score_thresh
            )
            self._results["keypoints"]["AIC_mAP"] = 100 * score

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        if coco_eval is None:
            # detectron2 reports NaN when a model predicts nothing; against a non-empty ground
            # truth that is zero recall, i.e. AP 0, which is what a training curve should show.
            logger.warning("No %s predictions: reporting AP 0 for %s", iou_type, iou_type)
            metrics = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
            return {
                m: 0.0 for m in (metrics if iou_type != "keypoints" else metrics[:3] + metrics[4:])
            }
        results = super()._derive_coco_results(coco_eval, iou_type, class_names)
        if iou_type == "keypoints":
            if self._crowdpose:  # CrowdPose's summary also reports AR, AR50, AR75
                # (crowdposetools/cocoeval.py:538-540: maxDets 20, all areas)
                results.update({m: float(100 * coco_eval.stats[i])
                                for m, i in (("AR", 5), ("AR50", 6), ("AR75", 7))})  # fmt: skip
            results.update(crowd_level_ap(coco_eval))
        return results


# CrowdPose's crowding levels by the images' crowdIndex, as its official evaluation splits them
# (Jeff-sjtu/CrowdPose @86fe5e1, crowdpose-api/PythonAPI/crowdposetools/cocoeval.py:541 calls
# get_type_result(first=0.2, second=0.8); split, :588-593: easy if crowdIndex < 0.2, else medium
# if < 0.8, else hard): an index of exactly 0.2 is medium, exactly 0.8 hard.
CROWD_LEVELS = (
    ("APeasy", float("-inf"), 0.2),
    ("APmedium", 0.2, 0.8),
    ("APhard", 0.8, float("inf")),
)


def crowd_level_ap(coco_eval) -> dict:
    """Keypoint AP (x 100) per CrowdPose crowding level when the ground truth's images carry a
    ``crowdIndex`` (CrowdPose), else {}: the same evaluation restricted to each level's images
    (NaN for a level without images or without a person that counts). Equal to the official
    per-level figure (cocoeval.py:574-575: the mean of the precision over IoU thresholds and
    recall levels, which has no -1 entries for one category with ground truth), except that the
    official one is rounded to 4 decimals of a fraction and is -1 for a level without persons."""
    import copy

    imgs = coco_eval.cocoGt.imgs
    index = {i: im.get("crowdIndex") for i, im in imgs.items()}
    if not index or any(v is None for v in index.values()):
        return {}
    out = {}
    for name, lo, hi in CROWD_LEVELS:
        ids = sorted(i for i in coco_eval.params.imgIds if lo <= index[i] < hi)
        if not ids:
            out[name] = float("nan")
            continue
        level = type(coco_eval)(coco_eval.cocoGt, coco_eval.cocoDt, "keypoints")
        level.params = copy.deepcopy(coco_eval.params)
        level.params.imgIds = ids
        with contextlib.redirect_stdout(io.StringIO()):
            level.evaluate()
            level.accumulate()
        precision = np.asarray(level.eval["precision"])[:, :, :, 0, -1]
        valid = precision[precision > -1]
        out[name] = float(100 * valid.mean()) if valid.size else float("nan")
    return out


def _tasks_of(cfg):
    tasks = ["bbox"]
    if cfg.MODEL.MASK_ON:
        tasks.append("segm")
    if cfg.MODEL.KEYPOINT_ON:
        tasks.append("keypoints")
    return tuple(tasks)
