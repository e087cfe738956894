"""The code of ``tools/demo.py``, whose docstring is its help text."""

import multitask_pose  # noqa: F401  (first: registers models and datasets, filters a warning)

# isort: split
import argparse
import os
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import cv2
import tqdm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils.visualizer import ColorMode

from multitask_pose.config import stage_configs
from multitask_pose.data.image_check import DamagedImageError
from multitask_pose.data.image_folder import list_images, read_or_skip
from multitask_pose.data.video import VideoError, frames, open_capture
from multitask_pose.engine import check_datasets, check_device
from multitask_pose.engine.checkpoint import PosePredictor
from multitask_pose.engine.cli import argument_parser, entry_point, load_config
from multitask_pose.engine.weights_check import add_allow_random_weights_argument
from multitask_pose.evaluation.results_record import (
    describe_config,
    describe_images,
    write_results_record,
)
from multitask_pose.shared.atomic_io import atomic_write, write_json_atomic
from multitask_pose.shared.errors import ConfigError, UserError
from multitask_pose.shared.visualizer import (
    KEYPOINT_DRAW_THRESHOLDS,
    PoseVisualizer,
    default_keypoint_threshold,
    limbs_drawn,
    limbs_summary,
)

PREDICTOR_ENTRY_POINTS = "multitask_pose.predictors"  # {stage: its predictor factory} (setup.py)
NO_TOPDOWN = ("--topdown: the top-down stage is not installed (pip install -e . in the repository"
              " root installs both stages)")  # fmt: skip


def stage_config(stage: str):
    """A fresh config with the keys of ``stage`` ("rcnn" or "topdown", ``stage_configs``)."""
    builders = stage_configs()
    if stage not in builders:  # (the R-CNN's is the core's own)
        raise ConfigError(NO_TOPDOWN)
    return builders[stage]()


def topdown_predictor(cfg, dataset, listing, inputs):
    """The top-down stage's ``(predictor, boxes_of)`` for the demo's images (its
    ``predictor_and_boxes``, found through the ``multitask_pose.predictors`` entry point)."""
    found = entry_points(group=PREDICTOR_ENTRY_POINTS, name="topdown")
    if not found:
        raise ConfigError(NO_TOPDOWN)
    return next(iter(found)).load()(cfg, dataset, listing, inputs)


def setup(args):
    cfg = stage_config("topdown" if args.topdown else "rcnn")
    load_config(cfg, args.config_file, args.opts, stage="topdown" if args.topdown else "rcnn",
                other_stage="drop --topdown" if args.topdown else "add --topdown")  # fmt: skip
    keys = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST"]
    if args.topdown:
        keys.append("TEST.TOPDOWN.DET_SCORE_THRESH")
    for key in keys:
        node, name = cfg, key
        while "." in name:
            head, name = name.split(".", 1)
            node = node[head]
        print(f"demo: {key} {args.confidence_threshold} (--confidence-threshold; the config"
              f" had {node[name]})")  # fmt: skip
        node[name] = args.confidence_threshold
    if args.allow_random_weights:
        cfg.MODEL.ALLOW_RANDOM_WEIGHTS = True
    if args.keypoint_threshold is None:
        scale = describe_config(cfg)["score_scale"]
        args.keypoint_threshold = default_keypoint_threshold(scale)
        print(f"demo: drawing keypoints scoring above {args.keypoint_threshold}"
              f" (--keypoint-threshold's default for {scale or 'unknown'} scores)")  # fmt: skip
    check_device(cfg)
    check_datasets(cfg)
    cfg.freeze()
    return cfg


def run_video(args, predict, metadata, source, stem):
    """Every frame of ``source`` (a file or a camera index) through ``predict``, drawn into
    ``<stem>_pred.mp4`` and listed in ``<stem>_results.json`` (both atomic). Returns the number
    of frames, of persons and the frames per second."""
    cap, fps = open_capture(source)
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not isinstance(source, int) else 0
    video_path = os.path.join(args.output, f"{stem}_pred.mp4")
    tmp_path = os.path.join(args.output, f".{stem}_pred.tmp.mp4")
    writer, results, start, n = None, [], time.perf_counter(), 0
    bar = tqdm.tqdm(total=total or None, desc="demo", unit="frame")
    try:
        for i, frame in frames(cap, source, args.max_frames):
            instances = predict(frame, None)
            vis = PoseVisualizer(frame[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE,
                                 keypoint_threshold=args.keypoint_threshold)  # fmt: skip
            drawn = vis.draw_instance_predictions(instances).get_image()[:, :, ::-1]
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(tmp_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise VideoError(f"OpenCV cannot write an MPEG-4 video to {tmp_path}")
            writer.write(drawn)
            for r in instances_to_coco_json(instances, i):
                r.update(category_id=1, frame=i, time_s=round(i / fps, 4))
                results.append(r)
            n = i + 1
            bar.update(1)
            bar.set_postfix(fps=f"{n / (time.perf_counter() - start):.2f}")
    except KeyboardInterrupt:  # the webcam's way to stop: keep what was recorded
        if not isinstance(source, int):
            raise
    finally:
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
    if n:
        os.replace(tmp_path, video_path)
    path = os.path.join(args.output, f"{stem}_results.json")
    write_json_atomic(path, results)
    write_results_record(path, dataset="camera 0" if isinstance(source, int) else f"video {source}",
                         **describe_config(args.cfg), written_by="tools/demo.py")  # fmt: skip
    if total and n < total:
        print(
            f"demo: video {source} announced {total} frames but only {n} decoded (cut short?)",
            file=sys.stderr,
        )
    return n, len(results), n / max(time.perf_counter() - start, 1e-9)


def image_ids_of(dataset):
    if not dataset:
        return {}
    return {os.path.basename(d["file_name"]): d["image_id"] for d in DatasetCatalog.get(dataset)}


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the script's docstring)."""
    parser = argument_parser(doc)
    parser.add_argument("--config-file", required=True, help="an R-CNN config, or with --topdown"
                        " a top-down one")  # fmt: skip
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="image files and/or folders")
    source.add_argument("--video-input", help="a video file (every frame)")
    source.add_argument("--webcam", action="store_true", help="camera 0, until Ctrl-C")
    parser.add_argument("--max-frames", type=int, help="stop a video or the camera after these")
    parser.add_argument("--output", required=True, help="folder for drawn images and results.json")
    parser.add_argument("--dataset", default="", help="registered dataset whose image ids to use")
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5,
        help="keep persons scoring at least this (default %(default)s); sets"
        " MODEL.ROI_HEADS.SCORE_THRESH_TEST (with --topdown also TEST.TOPDOWN.DET_SCORE_THRESH)"
        " in place of the config's value",
    )  # fmt: skip
    scales = ", ".join(f"{v} for {k}" for k, v in KEYPOINT_DRAW_THRESHOLDS.items())
    parser.add_argument(
        "--keypoint-threshold", type=float,
        help="draw keypoints (and limbs) scoring above this; default by the model's keypoint"
        f" score scale: {scales} (the R-CNN's softmax_probability, the top-down models'"
        " heatmap_peak)",
    )  # fmt: skip
    add_allow_random_weights_argument(parser)
    parser.add_argument(
        "--topdown", action="store_true", help="a projects/TopDown config (see above)"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


@entry_point("demo")
def main(argv=None, parser=None):
    """The tool (``parser``: the script's, for its help)."""
    parser = parser or build_parser()
    args = parser.parse_args(argv)

    if (args.video_input or args.webcam) and args.topdown and args.dataset:
        parser.error("--dataset gives boxes of a dataset's images, not of video frames")
    cfg = args.cfg = setup(args)
    skip = cfg.DATALOADER.SKIP_DAMAGED_IMAGES
    try:
        listing = list_images(args.input, skip) if args.input else None
    except (FileNotFoundError, DamagedImageError) as e:
        if args.debug:
            raise
        print(f"demo: {e}", file=sys.stderr)
        return 2
    if args.topdown:
        try:
            predictor, boxes_of = topdown_predictor(cfg, args.dataset, listing, args.input)
        except (FileNotFoundError, UserError) as e:  # a box source that cannot work: one line
            if args.debug:
                raise
            print(f"demo: {e}", file=sys.stderr)
            return 2
    else:
        predictor, boxes_of = PosePredictor(cfg), None

    def predict(img, path):
        if boxes_of is None:
            return predictor(img)["instances"].to("cpu")
        boxes = boxes_of(path)
        return predictor(img, *(boxes or ()))["instances"].to("cpu")

    metadata = MetadataCatalog.get(args.dataset or cfg.DATASETS.TEST[0])
    ids = image_ids_of(args.dataset)
    os.makedirs(args.output, exist_ok=True)
    if listing is None:
        source = 0 if args.webcam else args.video_input
        stem = "webcam" if args.webcam else Path(args.video_input).stem
        try:
            n, persons, fps = run_video(args, predict, metadata, source, stem)
        except VideoError as e:
            print(f"demo: {e}", file=sys.stderr)
            return 2
        print(f"demo: {n} frames, {persons} persons, {fps:.2f} frames/s -> {args.output}")
        return 0

    results, limbs, start = [], [], time.perf_counter()
    bar = tqdm.tqdm(list(listing.images), desc="demo", unit="img")
    for i, path in bar:
        try:
            img = read_or_skip(listing, path, skip, format="BGR")
        except DamagedImageError as e:
            bar.close()
            print(f"demo: {e}", file=sys.stderr)
            return 2
        if img is None:
            continue
        instances = predict(img, path)
        vis = PoseVisualizer(img[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE,
                             keypoint_threshold=args.keypoint_threshold)  # fmt: skip
        drawn = vis.draw_instance_predictions(instances).get_image()[:, :, ::-1]
        if instances.has("pred_keypoints"):
            limbs.extend(limbs_drawn(instances.pred_keypoints, metadata, args.keypoint_threshold))
        ok, jpeg = cv2.imencode(".jpg", drawn)
        if not ok:
            raise RuntimeError(f"JPEG encoding of the drawing of {path} failed")
        with atomic_write(os.path.join(args.output, path.stem + "_pred.jpg"), "wb") as f:
            f.write(jpeg.tobytes())  # whole or not at all, like results.json
        for r in instances_to_coco_json(instances, ids.get(path.name, i)):
            r["category_id"] = 1  # the one class, person, in COCO's numbering
            r["file_name"] = str(path)
            results.append(r)
    write_json_atomic(os.path.join(args.output, "results.json"), results)
    write_results_record(os.path.join(args.output, "results.json"),
                         dataset=args.dataset or describe_images(args.input),
                         **describe_config(cfg), written_by="tools/demo.py")  # fmt: skip
    ms = 1000 * (time.perf_counter() - start) / max(len(listing.images), 1)
    for line in listing.damaged_lines():
        print(f"demo: skipped {line}", file=sys.stderr)
    drawn = f" ({limbs_summary(limbs, metadata)})" if limbs else ""
    print(f"demo: {len(listing.images)} images, {len(results)} persons{drawn}, {ms:.0f} ms/image"
          f" -> {args.output}{listing.summary()}")  # fmt: skip
    return 0
