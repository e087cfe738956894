"""The code of ``tools/pseudo_label.py``, whose docstring is its help text."""

import json
import os
import sys

import multitask_pose  # noqa: F401  (registers the built-in datasets)
from multitask_pose.data.keypoints import LAYOUTS
from multitask_pose.data.pseudo_labels import pseudo_label, threshold_scale
from multitask_pose.engine.cli import argument_parser, entry_point
from multitask_pose.evaluation.results_record import (
    SCORE_SCALES,
    ResultsDatasetError,
    check_boxes_in_images,
    check_record_dataset,
    describe_images,
    read_results_record,
)
from multitask_pose.shared.atomic_io import write_json_atomic


def images_of(args):
    """COCO image entries (id, file_name, width, height) of --dataset or --images."""
    if args.dataset:
        from detectron2.data import DatasetCatalog

        if args.dataset not in DatasetCatalog.list():
            raise ValueError(f"dataset {args.dataset!r} is not registered")
        return [{"id": d["image_id"], "file_name": d["file_name"], "width": d["width"],
                 "height": d["height"]} for d in DatasetCatalog.get(args.dataset)]  # fmt: skip
    from PIL import Image

    with open(args.images) as f:
        listed = json.load(f)
    out = []
    for e in listed:
        if not os.path.isfile(e["file_name"]):
            raise ValueError(f"{args.images}: image {e['id']}: no file {e['file_name']}")
        with Image.open(e["file_name"]) as im:
            out.append({"id": e["id"], "file_name": e["file_name"], "width": im.size[0],
                        "height": im.size[1]})  # fmt: skip
    return out


def build_parser(doc=None):
    """The tool's options; ``doc``: the help's description (the first line of the script's
    docstring)."""
    ap = argument_parser(doc and doc.split("\n")[0])
    ap.add_argument("--results", required=True, help="COCO keypoint results (with bbox, score)")
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a registered dataset the results are on")
    source.add_argument("--images", help="detect_persons.py's <output>.images.json")
    ap.add_argument("--output", required=True)
    ap.add_argument("--kp-thresh", type=float, default=0.9)
    ap.add_argument(
        "--kp-thresh-scale",
        choices=sorted(set(SCORE_SCALES) - {"unknown"}),
        help="the scale of --kp-thresh and of the file's keypoint scores (default:"
        " the report's, top-down heatmap peaks, which the file's record must state)",
    )
    ap.add_argument("--min-keypoints", type=int, default=4)
    ap.add_argument("--box-thresh", type=float, default=0.0)
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="coco")
    return ap


@entry_point("pseudo_label")
def main(argv=None, parser=None):
    """The tool (``parser``: the script's, for its help)."""
    ap = parser or build_parser()
    args = ap.parse_args(argv)
    spec = LAYOUTS[args.layout]
    try:
        record = read_results_record(args.results)
        images = images_of(args)
        # The images the results must be on: the dataset, or the folder (or file) holding the
        # listed images, which detect_persons' record names the same way.
        listed = [os.path.abspath(im["file_name"]) for im in images]
        where = args.dataset or describe_images([os.path.commonpath(listed)] if listed else [])
        check_record_dataset(record, where, args.results)
        scale = threshold_scale(record, args.kp_thresh_scale, args.results)
        with open(args.results) as f:
            results = json.load(f)
        if not isinstance(results, list):
            raise ValueError("not a COCO results list")
        check_boxes_in_images([r for r in results if isinstance(r, dict)],
                              {im["id"]: (im["height"], im["width"]) for im in images},
                              where, args.results)  # fmt: skip
        data, report = pseudo_label(
            results, images, spec.num_keypoints, args.kp_thresh, args.min_keypoints,
            args.box_thresh,
        )  # fmt: skip
    except ResultsDatasetError as e:  # names the file itself
        print(f"pseudo_label: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as e:
        print(f"pseudo_label: {args.results}: {e}", file=sys.stderr)
        return 2
    idx = {n: i + 1 for i, n in enumerate(spec.keypoint_names)}
    data["categories"][0].update(
        keypoints=list(spec.keypoint_names),
        skeleton=[[idx[a], idx[b]] for a, b, _ in spec.connection_rules],
    )
    write_json_atomic(args.output, data)
    print(
        f"pseudo_label: {report['persons']} persons ({report['labelled_keypoints']} keypoints"
        f" above {args.kp_thresh}, {scale}) on {report['images_with_persons']} of"
        f" {report['images']}"
        f" images from {report['detections']} detections; dropped {report['dropped'] or 0}"
        f" -> {args.output}"
    )
    return 0
