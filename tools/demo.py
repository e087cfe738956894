#!/usr/bin/env python
r"""Run a trained model on images: draw masks and skeletons, write COCO-format results.

    python tools/demo.py --config-file configs/Synthetic/multitask_rcnn_R_18_FPN_synth.yaml \
        --input datasets/samples/coco --output output/demo MODEL.WEIGHTS output/.../model_final.pth
    python tools/demo.py --topdown \
        --config-file projects/TopDown/configs/Synthetic/hrnet_w18_small_synth_rcnn_boxes.yaml \
        --input ... --output ... MODEL.WEIGHTS output/.../hrnet/model_final.pth

``--topdown`` runs a top-down config (projects/TopDown) through ``TopDownPredictor``: person boxes
from its detector (TEST.TOPDOWN.BOX_SOURCE "detector"), or with ``--dataset`` from that dataset's
annotations ("gt") or detection file ("file"), or for photos (no ``--dataset``) from the file
tools/detect_persons.py wrote over the same ``--input`` folder (BOX_SOURCE "file",
TEST.TOPDOWN.DET_FILE; a file made on other images is refused):

    python tools/detect_persons.py --config-file <detector.yaml> --input photos --output dets.json
    python tools/demo.py --topdown --config-file <top-down.yaml> --input photos --output out
    (each with MODEL.WEIGHTS <its model_final.pth>; the second also with
    TEST.TOPDOWN.BOX_SOURCE file TEST.TOPDOWN.DET_FILE dets.json)

Paths: ``--config-file`` and MODEL.WEIGHTS are taken from the current directory (detectron2's
rule; ``_BASE_`` from the yaml that names it); a relative TEST.TOPDOWN.DETECTOR_CONFIG,
DETECTOR_WEIGHTS or DET_FILE from the current directory and, when no such file is there, from
the repository root (where the shipped configs' paths start), so the command works from any
directory.

Thresholds: ``--confidence-threshold`` keeps persons scoring at least this (it sets
MODEL.ROI_HEADS.SCORE_THRESH_TEST, and with ``--topdown`` TEST.TOPDOWN.DET_SCORE_THRESH, in place
of the config's: the run prints which). ``--keypoint-threshold`` draws a keypoint, and the limbs
between two drawn ones, when its score is above it; its default depends on what the model's
keypoint scores are (the R-CNN's softmax probabilities are small, the top-down heatmap peaks near
1). Both only filter what is drawn and written; they do not change the model.

The model must be trained: an empty MODEL.WEIGHTS, or a checkpoint without weights for part of
the model (e.g. an ImageNet backbone alone), is refused naming the key; ``--allow-random-weights``
runs anyway, for smoke tests.

``--input`` takes image files and/or folders. Files of a folder that are not images (by
extension) are skipped and counted; damaged images (empty, cut short, not an image, not
decodable) stop the run before it starts, naming the file, unless DATALOADER.SKIP_DAMAGED_IMAGES
True skips them (counted, each with its reason): the rule of tools/detect_persons.py and of
training (multitask_pose/data/image_folder.py). Writes one drawn image per input into ``--output``
and ``results.json`` there: a COCO results list (boxes xywh, RLE masks, keypoints, scores), each
entry with the ``file_name`` it came from and, when ``--dataset`` names a registered dataset that
contains the image, that dataset's ``image_id`` (otherwise the input's position). Every results
file gets its record, ``<results>.meta.json`` (multitask_pose/evaluation/results_record.py): the
dataset or input, the model type and what its keypoint scores are.

``--video-input FILE`` runs on every frame of a video (OpenCV reads it) and writes the drawn
video, ``<stem>_pred.mp4`` (same size and frame rate, MPEG-4), and ``<stem>_results.json``: the
COCO results list with ``image_id`` = ``frame`` = the frame's index and ``time_s`` its time.
``--webcam`` does the same on camera 0 until Ctrl-C or ``--max-frames``, into ``webcam_pred.mp4``
and ``webcam_results.json``. Both are written whole or not at all; the progress bar shows frames
per second. A file OpenCV cannot open or decode, or a machine without a camera, is an error
naming it.

    python tools/demo.py --config-file ... --video-input walk.mp4 --output output/demo_video \
        MODEL.WEIGHTS output/.../model_final.pth
"""

import multitask_pose  # noqa: F401  (first: registers models and datasets, filters a warning)

# isort: split
import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import tqdm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils.visualizer import ColorMode

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
from multitask_pose.shared.errors import UserError
from multitask_pose.shared.visualizer import (
    KEYPOINT_DRAW_THRESHOLDS,
    PoseVisualizer,
    default_keypoint_threshold,
)


def setup(args):
    cfg = multitask_pose.get_multitask_cfg()
    if args.topdown:
        from pose_topdown import add_topdown_config

        add_topdown_config(cfg)
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


@entry_point("demo")
def main(argv=None):
    parser = argument_parser(__doc__)
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
        from pose_topdown.predictor import predictor_and_boxes  # (the top-down project's, if asked)

        try:
            predictor, boxes_of = predictor_and_boxes(cfg, args.dataset, listing, args.input)
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

    results, start = [], time.perf_counter()
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
    print(f"demo: {len(listing.images)} images, {len(results)} persons, {ms:.0f} ms/image"
          f" -> {args.output}{listing.summary()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
