"""The code of ``tools/detect_persons.py``, whose docstring is its help text."""

import argparse
import json
import sys
from pathlib import Path

import multitask_pose  # noqa: F401  (registers models and datasets)
from multitask_pose.data.image_check import DamagedImageError
from multitask_pose.data.image_folder import list_images, read_or_skip, screen_images
from multitask_pose.engine import check_datasets, check_device, launch
from multitask_pose.engine.checkpoint import PosePredictor
from multitask_pose.engine.cli import UserError, argument_parser, entry_point, load_config
from multitask_pose.engine.person_detection import (
    DetectionItem,
    OutputExistsError,
    check_output,
    run_person_detection,
    scores_summary,
)
from multitask_pose.engine.weights_check import (
    add_allow_random_weights_argument,
    check_weights_given,
)
from multitask_pose.evaluation.results_record import (
    describe_config,
    describe_images,
    write_results_record,
)
from multitask_pose.shared.atomic_io import write_json_atomic


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    parser = argument_parser(doc)
    parser.add_argument("--config-file", required=True, help="a detectron2 detector config")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a registered dataset")
    source.add_argument("--input", help="a folder of images")
    parser.add_argument("--output", required=True, help="the COCO detection-results json")
    parser.add_argument("--topk", type=int, default=100, help="detections per image (0: all)")
    parser.add_argument("--min-size", type=float, default=0.0, help="shorter box side, pixels")
    parser.add_argument("--score-thresh", type=float, default=0.05)
    parser.add_argument("--masks", action="store_true", help="also write RLE masks")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="finish an interrupted run")
    again.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine (CPU"
                        " processes without CUDA); they share the images")  # fmt: skip
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto", help="tcp://HOST:PORT across machines")
    add_allow_random_weights_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def image_listing(args, skip_damaged):
    """The checked images of --input (a folder) or --dataset (``ImageListing``)."""
    if args.dataset:
        from detectron2.data import DatasetCatalog

        return screen_images([(int(d["image_id"]), d["file_name"])
                              for d in DatasetCatalog.get(args.dataset)], skip_damaged)  # fmt: skip
    if not Path(args.input).is_dir():
        raise FileNotFoundError(f"--input {args.input}: not a folder")
    return list_images([args.input], skip_damaged)


def setup(args):
    """(config, the image listing, the person class) of the command line; errors before any
    work."""
    cfg = load_config(multitask_pose.get_multitask_cfg(), args.config_file, args.opts,
                      stage="rcnn", other_stage="give a person detector (an R-CNN config);"
                      " top-down configs take its boxes (tools/demo.py --topdown)")  # fmt: skip
    cfg.MODEL.ALLOW_RANDOM_WEIGHTS = cfg.MODEL.ALLOW_RANDOM_WEIGHTS or args.allow_random_weights
    check_weights_given(cfg.MODEL.WEIGHTS, allow=cfg.MODEL.ALLOW_RANDOM_WEIGHTS)
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = min(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
                                                args.score_thresh)  # fmt: skip
    if args.masks and not cfg.MODEL.MASK_ON:
        raise ValueError(f"--masks: {args.config_file} has no mask head (MODEL.MASK_ON False)")
    check_device(cfg)
    check_datasets(cfg)
    cfg.freeze()
    check_output(args.output, args.resume, args.overwrite)
    listing = image_listing(args, cfg.DATALOADER.SKIP_DAMAGED_IMAGES)
    classes = []
    if cfg.DATASETS.TEST:
        from detectron2.data import MetadataCatalog

        classes = MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes", [])
    person = classes.index("person") if "person" in classes else 0
    return cfg, listing, person


def detect(args, cfg, listing, person):
    """One process's share (all of it without a process group); the first prints the summary."""
    from detectron2.utils import comm

    predictor = PosePredictor(cfg)
    skip = cfg.DATALOADER.SKIP_DAMAGED_IMAGES
    files = dict(listing.images)
    items = [DetectionItem(i, str(f)) for i, f in files.items()]
    stats = run_person_detection(
        predictor, items, args.output,
        read_image=lambda f: read_or_skip(listing, Path(f), skip, format=predictor.input_format),
        person_class=person, score_thresh=args.score_thresh, min_size=args.min_size,
        topk=args.topk, masks=args.masks, resume=args.resume, overwrite=args.overwrite,
        progress=not args.quiet,
    )  # fmt: skip
    if comm.is_main_process():
        write_results_record(
            args.output,
            dataset=args.dataset or describe_images([args.input]),
            **describe_config(cfg),
            written_by="tools/detect_persons.py",
        )
        with open(args.output) as f:
            results = json.load(f)
        n = stats["images"] - stats["resumed"]
        ms = 1000 * stats["seconds"] * comm.get_world_size() / max(n, 1)
        # images found damaged while decoding (by any process: the partial rows say which)
        late = [files[i] for i in stats["skipped"]]
        for f in late:
            if f not in {p for p, _ in listing.damaged}:  # found by another process
                listing.damaged.append((f, "cannot be decoded"))
        if late and args.input:
            names = [{"id": i, "file_name": str(f)} for i, f in files.items()
                     if i not in set(stats["skipped"])]  # fmt: skip
            write_json_atomic(args.output + ".images.json", names)
        for line in listing.damaged_lines():
            print(f"detect_persons: skipped {line}", file=sys.stderr)
        print(f"detect_persons: {stats['images'] - len(late)} images ({stats['resumed']} from an"
              f" earlier run), {stats['detections']} persons, {scores_summary(results)}, {ms:.0f}"
              f" ms/image per process, {comm.get_world_size()} processes"
              f" -> {args.output}{listing.summary()}")  # fmt: skip


@entry_point("detect_persons")
def main(argv=None, parser=None) -> int:
    """The tool (``parser``: the script's, for its help)."""
    args = (parser or build_parser()).parse_args(argv)
    try:
        cfg, listing, person = setup(args)
        if args.input:
            names = [{"id": i, "file_name": str(f)} for i, f in listing.images]
            write_json_atomic(args.output + ".images.json", names)
        launch(detect, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url,
               args=(args, cfg, listing, person))  # fmt: skip
    except UserError:
        raise  # one line, or the traceback with --debug (entry_point)
    except (OutputExistsError, ValueError, FileNotFoundError, DamagedImageError) as e:
        print(f"detect_persons: {e}", file=sys.stderr)
        return 2
    return 0
