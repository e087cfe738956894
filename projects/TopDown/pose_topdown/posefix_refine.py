"""Refining a keypoint results file with a trained PoseFix refiner:
``projects/TopDown/posefix_refine.py`` (its help text describes the tool); each entry's pose is the
refiner's input (:mod:`pose_topdown.posefix`), and the file's keypoint AP before and after is
measured.
"""

import argparse
import logging
import os
import sys
import time

import torch
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from multitask_pose.engine.checkpoint import checkpointer_for
from multitask_pose.engine.cli import UserError, argument_parser, entry_point, load_config
from multitask_pose.evaluation import PoseCOCOEvaluator
from multitask_pose.evaluation.results_record import describe_config

from .config import get_topdown_cfg
from .data import TopDownTestMapper
from .engine import TopDownCheckpointer

__all__ = ["build_parser", "main", "refine", "refine_cfg"]

logger = logging.getLogger("posefix_refine")


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    parser = argument_parser(doc)
    parser.add_argument("--config-file", required=True, help="the refiner's config")
    parser.add_argument("--weights", required=True, help="the trained refiner")
    parser.add_argument("--results", required=True, help="COCO keypoint results json to refine")
    parser.add_argument("--dataset", default="", help="registered dataset of the results")
    parser.add_argument("--output", required=True, help="folder for the refined results")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def refine_cfg(args):
    for flag, path in (("--results", args.results), ("--weights", args.weights)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{flag} {path}: no such file")
    cfg = load_config(get_topdown_cfg(), args.config_file, args.opts, stage="topdown")
    if cfg.MODEL.TOPDOWN.CUE != "PoseCue":
        raise ValueError(
            f"{args.config_file} is not a PoseFix refiner (MODEL.TOPDOWN.CUE is"
            f" {cfg.MODEL.TOPDOWN.CUE!r}, not 'PoseCue')"
        )
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
    if not dataset:
        raise ValueError("no --dataset and the config has no DATASETS.TEST")
    # Every entry of the file with its pose; the NMS and scoring stay the config's.
    cfg.merge_from_list(["MODEL.WEIGHTS", args.weights, "DATASETS.TEST", f"('{dataset}',)",
                         "TEST.TOPDOWN.BOX_SOURCE", "file", "TEST.TOPDOWN.DET_FILE", args.results,
                         "TEST.TOPDOWN.HINT.SOURCE", "keypoints",
                         "TEST.TOPDOWN.DET_SCORE_THRESH", "0.0", "TEST.TOPDOWN.DET_TOPK", "0",
                         "TEST.TOPDOWN.DET_MIN_SIZE", "0.0",
                         "OUTPUT_DIR", args.output])  # fmt: skip
    cfg.freeze()
    return cfg, dataset


def refine(cfg, dataset: str):
    """(keypoint AP of the input results, of the refined ones, the poses in, the poses out),
    refined results written into cfg.OUTPUT_DIR."""
    model = build_model(cfg).eval()
    checkpointer_for(cfg, TopDownCheckpointer)(model).load(cfg.MODEL.WEIGHTS)
    dicts = DatasetCatalog.get(dataset)
    loader = build_detection_test_loader(
        dicts, mapper=TopDownTestMapper(cfg, dataset, dicts), num_workers=0
    )
    before = PoseCOCOEvaluator(dataset, tasks=("keypoints",), distributed=False,
                               backend=cfg.TEST.COCO_EVAL_BACKEND)  # fmt: skip
    after = PoseCOCOEvaluator(dataset, tasks=("keypoints",), distributed=False,
                              output_dir=cfg.OUTPUT_DIR,
                              backend=cfg.TEST.COCO_EVAL_BACKEND)  # fmt: skip
    # the refined file's record: the refiner, its scale, and the file it refined
    after.results_description = {**describe_config(cfg), "refined": cfg.TEST.TOPDOWN.DET_FILE}
    before.reset()
    after.reset()
    start = time.perf_counter()
    poses_in = poses_out = 0
    with torch.no_grad():
        for i, inputs in enumerate(loader):
            given = inputs[0]["instances"]
            given.pred_classes = torch.zeros(len(given), dtype=torch.long)
            before.process(inputs, [{"instances": given}])
            outputs = model(inputs)
            after.process(inputs, outputs)
            poses_in += len(given)
            poses_out += len(outputs[0]["instances"])
            if (i + 1) % 50 == 0 or i + 1 == len(dicts):
                logger.info("refined %d / %d images (%.1f s)", i + 1, len(dicts),
                            time.perf_counter() - start)  # fmt: skip
    ap_before = before.evaluate()["keypoints"]["AP"] / 100
    ap_after = after.evaluate()["keypoints"]["AP"] / 100
    return ap_before, ap_after, poses_in, poses_out


@entry_point("posefix_refine")
def main(argv=None, parser=None) -> int:
    """The tool (``parser``: the script's, for its help); 0, or 2 after a one-line error."""
    args = (parser or build_parser()).parse_args(argv)
    setup_logger(name="posefix_refine")
    setup_logger(name="pose_topdown")
    try:
        cfg, dataset = refine_cfg(args)
        start = time.perf_counter()
        ap_before, ap_after, poses_in, poses_out = refine(cfg, dataset)
    except UserError:
        raise  # one line, or the traceback with --debug (entry_point)
    except (ValueError, FileNotFoundError) as e:
        print(f"posefix_refine: {e}", file=sys.stderr)
        return 2
    out = f"{cfg.OUTPUT_DIR}/coco_instances_results.json"
    t = cfg.TEST.TOPDOWN
    nms = f"OKS-NMS {t.OKS_NMS_THRESH:g}" if t.OKS_NMS_THRESH < 1 else "no OKS-NMS"
    print(f"posefix_refine {dataset}: keypoint AP {ap_before:.3f} -> {ap_after:.3f},"
          f" {poses_in} poses -> {poses_out} ({nms}; {time.perf_counter() - start:.0f} s;"
          f" {out})")  # fmt: skip
    return 0
