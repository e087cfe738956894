"""Results files say what made them: the record beside each (dataset, producer, keypoint score
scale), written by the evaluator and the tools, read by every reader (a file without one loads
with a warning), and the pseudo-label threshold checked against it."""

import json
import logging
import os

import numpy as np
import pytest
import torch
from coco_testing import gt_as_predictions  # tests/coco_testing.py
from detectron2.data import DatasetCatalog
from pycocotools.coco import COCO

import multitask_pose  # noqa: F401  (registers the datasets)
from conftest import ROOT
from multitask_pose.commands import pseudo_label
from multitask_pose.data.paths import samples_root
from multitask_pose.evaluation import PoseCOCOEvaluator
from multitask_pose.evaluation.results_record import (
    SCORE_SCALES,
    describe_config,
    read_results_record,
    record_path,
    write_results_record,
)

SAMPLE = "coco_person_sample"
GT_JSON = samples_root() / "coco" / "test_coco.json"
RECORD_LOGGER = "multitask_pose.evaluation.results_record"
RCNN_CONFIG = ROOT / "configs" / "Synthetic" / "multitask_rcnn_R_18_FPN_synth_basic.yaml"


def _sample_results(score=0.95):
    """The sample's persons as a keypoint results list, every keypoint scoring ``score``."""
    gt = json.loads(GT_JSON.read_text())
    out = []
    for a in gt["annotations"]:
        kp = np.array(a["keypoints"], dtype=np.float64).reshape(17, 3)
        kp[:, 2] = np.where(kp[:, 2] > 0, score, 0.01)
        out.append({"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
                    "score": 0.8, "keypoints": kp.reshape(-1).tolist()})  # fmt: skip
    return out


# ---------------------------------------------------------------- the record itself
def test_record_round_trip_beside_a_list_pycocotools_still_loads(tmp_path, caplog):
    results = tmp_path / "coco_instances_results.json"
    results.write_text(json.dumps(_sample_results()))
    with caplog.at_level(logging.WARNING, logger=RECORD_LOGGER):
        assert read_results_record(results) is None
    assert "has no record of what made it" in caplog.text and str(results) in caplog.text
    written = write_results_record(results, dataset=SAMPLE, producer="TopDownPoseEstimator / X",
                                   score_scale="heatmap_peak", weights="w.pth")  # fmt: skip
    assert record_path(results) == str(results) + ".meta.json"
    assert (
        read_results_record(results)
        == written
        == json.loads((tmp_path / "coco_instances_results.json.meta.json").read_text())
    )
    assert written["score_scale_meaning"] == SCORE_SCALES["heatmap_peak"]
    assert written["dataset"] == SAMPLE and written["weights"] == "w.pth"
    COCO(str(GT_JSON)).loadRes(str(results))  # the list itself is untouched
    with pytest.raises(ValueError, match="'logits' is not one of"):
        write_results_record(results, dataset=SAMPLE, producer="x", score_scale="logits")
    (tmp_path / "coco_instances_results.json.meta.json").write_text("[1]")
    with pytest.raises(ValueError, match="not a results record"):
        read_results_record(results)


# ---------------------------------------------------------------- where the scales come from
def test_each_codec_states_its_scale_and_decodes_on_it():
    """Each codec's ``score_scale`` (a table of the sources) and its decode's scores checked
    against the scale's meaning, computed here: the map's maximum, or the softmax probability
    of the peak over the whole map."""
    from multitask_pose.codecs import CODEC_REGISTRY
    from multitask_pose.codecs.gaussian_heatmap import GaussianHeatmapCodec
    from multitask_pose.codecs.roi_heatmap import RoIHeatmapCodec
    from multitask_pose.codecs.simcc import SimCCCodec
    from multitask_pose.codecs.soft_argmax import SoftArgmaxCodec

    table = [  # (codec, its scale, source)
        (GaussianHeatmapCodec((48, 64), (12, 16)), "heatmap_peak", "MSRA heatmaps: the maximum"),
        (SoftArgmaxCodec((48, 64), (12, 16)), "softmax_probability", "PoseFix: softmax maps"),
        (RoIHeatmapCodec(8, "softmax"), "softmax_probability",
         "detectron2 heatmaps_to_keypoints, kept by keypoint_rcnn_inference"),
        (RoIHeatmapCodec(8, "gaussian_mse"), "heatmap_peak", "Gaussian targets: the peak"),
        (SimCCCodec((48, 64), (12, 16)), "simcc_maximum",
         "MMPose get_simcc_maximum: min over x, y of the raw outputs' maxima"),
    ]  # fmt: skip
    for codec, scale, source in table:
        assert codec.score_scale == scale, (type(codec).__name__, source)
    ours = {n for n, c in CODEC_REGISTRY if c.__module__.startswith("multitask_pose.codecs")}
    assert ours == {type(c).__name__ for c, _, _ in table}  # every codec of the package
    assert all(c.score_scale in SCORE_SCALES and c.score_scale != "unknown" for c, _, _ in table)

    torch.manual_seed(0)
    maps = torch.randn(2, 3, 16, 12)
    flat = maps.flatten(-2)
    assert torch.allclose(table[0][0].decode(maps)[1], flat.amax(-1))
    assert torch.allclose(table[1][0].decode(maps)[1], torch.softmax(flat, -1).amax(-1))
    x, y = torch.randn(2, 3, 96), torch.randn(2, 3, 128)
    assert torch.equal(table[4][0].decode((x, y))[1], torch.minimum(x.amax(-1), y.amax(-1)))
    # detectron2's own keypoint R-CNN score: on a box of S x S pixels (no resampling) it is the
    # softmax probability of the peak over the S x S grid.
    from detectron2.structures.keypoints import heatmaps_to_keypoints

    rois = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    roi_maps = torch.randn(1, 3, 8, 8)
    d2 = heatmaps_to_keypoints(roi_maps, rois)[..., 3]
    assert torch.allclose(d2, torch.softmax(roi_maps.flatten(-2), -1).amax(-1), atol=1e-6)
    assert torch.allclose(table[2][0].decode(roi_maps, rois)[1], d2, atol=1e-6)


def test_describe_config_asks_the_classes_the_config_names():
    from multitask_pose.config import get_multitask_cfg
    from pose_topdown import get_topdown_cfg

    def rcnn(*opts):
        cfg = get_multitask_cfg()
        cfg.merge_from_file(str(RCNN_CONFIG))
        cfg.merge_from_list(list(opts))
        return describe_config(cfg)

    def topdown(config, *opts):
        cfg = get_topdown_cfg()
        cfg.merge_from_file(str(ROOT / "projects/TopDown/configs/Synthetic" / config))
        cfg.merge_from_list(list(opts))
        return describe_config(cfg)

    d2_head = rcnn("MODEL.WEIGHTS", "m.pth")
    assert d2_head == {"producer": "GeneralizedRCNN / MultiTaskROIHeads /"
                       " KRCNNConvDeconvUpsampleHead", "score_scale": "softmax_probability",
                       "weights": "m.pth"}  # fmt: skip
    offset = rcnn("MODEL.ROI_KEYPOINT_HEAD.NAME", "KeypointOffsetHead")
    assert offset["producer"].endswith("/ KeypointOffsetHead")
    assert offset["score_scale"] == "softmax_probability"
    gaussian = rcnn("MODEL.ROI_KEYPOINT_HEAD.NAME", "KeypointOffsetHead",
                    "MODEL.ROI_KEYPOINT_HEAD.HEATMAP_LOSS", "gaussian_mse")  # fmt: skip
    assert gaussian["score_scale"] == "heatmap_peak"
    assert rcnn("MODEL.KEYPOINT_ON", "False")["score_scale"] is None  # boxes only
    hrnet = topdown("hrnet_w18_small_synth_basic.yaml")
    assert hrnet["producer"] == "TopDownPoseEstimator / PoseHighResolutionNet"
    assert hrnet["score_scale"] == "heatmap_peak"
    soft = topdown("hrnet_w18_small_synth_basic.yaml", "MODEL.TOPDOWN.CODEC.NAME",
                   "SoftArgmaxCodec", "MODEL.TOPDOWN.HEAD.NAME", "SoftArgmaxHead")  # fmt: skip
    assert soft["score_scale"] == "softmax_probability"  # from the codec, not the model's name
    posefix = topdown("posefix_hrnet_w18_small_synth_basic.yaml")
    assert posefix == {"producer": "PoseFixEstimator / PoseFixHRNet",
                       "score_scale": "person_score",
                       "weights": "zoo://hrnet_w18_small_synthpeople"}  # fmt: skip


# ---------------------------------------------------------------- writers
def test_the_evaluator_writes_the_record_of_its_results_file(tmp_path):
    from multitask_pose.config import get_multitask_cfg
    from multitask_pose.engine import MultiTaskTrainer
    from pose_topdown import get_topdown_cfg
    from pose_topdown.engine import TopDownTrainer

    pairs = gt_as_predictions(DatasetCatalog.get(SAMPLE))

    def run(evaluator):
        evaluator.reset()
        for inp, out in pairs:
            evaluator.process([inp], [out])
        evaluator.evaluate()
        results = tmp_path / evaluator.name / "coco_instances_results.json"
        return json.loads(results.read_text()), read_results_record(results, warn=False)

    rcnn_cfg = get_multitask_cfg()
    rcnn_cfg.merge_from_file(str(RCNN_CONFIG))
    td_cfg = get_topdown_cfg()
    td_cfg.merge_from_file(
        str(ROOT / "projects/TopDown/configs/Synthetic/hrnet_w18_small_synth_basic.yaml")
    )
    built = {
        "rcnn": MultiTaskTrainer.build_evaluator(rcnn_cfg, SAMPLE, str(tmp_path / "rcnn")),
        "topdown": TopDownTrainer.build_evaluator(td_cfg, SAMPLE, str(tmp_path / "topdown")),
        "plain": PoseCOCOEvaluator(SAMPLE, tasks=("keypoints",), distributed=False,
                                   output_dir=str(tmp_path / "plain")),
    }  # fmt: skip
    for name, evaluator in built.items():
        evaluator.name = name
    results, record = run(built["rcnn"])
    assert len(results) == sum(len(o["instances"]) for _, o in pairs)
    assert record["dataset"] == SAMPLE and record["score_scale"] == "softmax_probability"
    assert record["producer"].startswith("GeneralizedRCNN / ")
    _, record = run(built["topdown"])
    assert (record["producer"], record["score_scale"]) == (
        "TopDownPoseEstimator / PoseHighResolutionNet", "heatmap_peak")  # fmt: skip
    _, record = run(built["plain"])  # built by hand, not told what makes its predictions
    assert (record["dataset"], record["producer"], record["score_scale"]) == (
        SAMPLE, "unknown", "unknown")  # fmt: skip
    # An evaluation that writes no results (no predictions) leaves an older file without a
    # record: the record describes the file written beside it, nothing else.
    stale = PoseCOCOEvaluator(SAMPLE, tasks=("keypoints",), distributed=False,
                              output_dir=str(tmp_path / "stale"))  # fmt: skip
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "coco_instances_results.json").write_text("[]")
    stale.reset()
    stale.evaluate()
    assert not os.path.exists(record_path(tmp_path / "stale" / "coco_instances_results.json"))


# ---------------------------------------------------------------- readers
def test_readers_load_a_file_without_record_with_a_warning(tmp_path, caplog):
    from multitask_pose.data.detection_file import read_detection_file as hndm_file
    from multitask_pose.data.keypoints import keypoint_spec_of
    from multitask_pose.evaluation.error_analysis import load_results
    from pose_topdown.data import load_detection_file as topdown_file

    path = tmp_path / "results.json"
    path.write_text(json.dumps(_sample_results()))
    ids = [d["image_id"] for d in DatasetCatalog.get(SAMPLE)]
    coco = COCO(str(GT_JSON))
    readers = {
        "top-down DET_FILE / HINT.FILE / PoseFix input": lambda: topdown_file(
            str(path), ids, with_keypoints=True),
        "hard negatives": lambda: hndm_file(str(path), "INPUT.HARD_NEGATIVES.FILE"),
        "error analysis / hard examples": lambda: load_results(
            str(path), coco, keypoint_spec_of(SAMPLE), SAMPLE),
    }  # fmt: skip
    for name, read in readers.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=RECORD_LOGGER):
            assert read()  # it loads
        assert "has no record of what made it" in caplog.text, name
    write_results_record(path, dataset=SAMPLE, producer="p", score_scale="heatmap_peak")
    for name, read in readers.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=RECORD_LOGGER):
            read()
        assert "has no record" not in caplog.text, name


# ---------------------------------------------------------------- the pseudo-label threshold
def test_pseudo_label_tool_checks_the_threshold_against_the_records_scale(tmp_path, capsys, caplog):
    """PCR report (002), section 2.3: "We train a keypoint detector using a ResNet-152 backbone.
    For the detected person instances on the unlabelled dataset, we keep all keypoints with
    scores above 0.9": a top-down network's heatmap peaks. A file of an R-CNN's softmax
    probabilities, or of an unknown scale, is refused with the scale named; a top-down file is
    accepted; --kp-thresh-scale states another scale for both."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_sample_results()))
    base = ["--results", str(path), "--dataset", SAMPLE, "--output", str(tmp_path / "pl.json")]

    def run(*extra):
        code = pseudo_label.main([*base, *extra])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, _, err = run()  # no record
    assert code == 2 and "the scale of its keypoint scores is unknown" in err
    assert "heatmap_peak" in err and "--kp-thresh-scale" in err

    rcnn = {"dataset": SAMPLE, "producer": "GeneralizedRCNN / MultiTaskROIHeads / X"}
    write_results_record(path, **rcnn, score_scale="softmax_probability")
    code, _, err = run()
    assert code == 2 and "keypoint scores are softmax_probability" in err
    assert "the keypoint threshold is on heatmap_peak" in err and "GeneralizedRCNN" in err
    assert not (tmp_path / "pl.json").exists()
    code, out, _ = run("--kp-thresh", "0.5", "--kp-thresh-scale", "softmax_probability")
    assert code == 0 and "above 0.5, softmax_probability" in out
    code, _, err = run("--kp-thresh-scale", "heatmap_peak")  # stated, but not the file's
    assert code == 2 and "keypoint scores are softmax_probability" in err

    write_results_record(path, dataset=SAMPLE, producer="TopDownPoseEstimator / PoseHighRes"
                         "olutionNet", score_scale="heatmap_peak")  # fmt: skip
    code, out, _ = run()
    assert code == 0 and "above 0.9, heatmap_peak" in out
    labelled = json.loads((tmp_path / "pl.json").read_text())["annotations"]
    assert labelled and all(a["num_keypoints"] >= 4 for a in labelled)

    write_results_record(path, dataset=SAMPLE, producer="detector", score_scale=None)
    code, _, err = run()
    assert code == 2 and "has no keypoint scores" in err

    os.remove(record_path(path))
    with caplog.at_level(logging.WARNING):
        code, out, _ = run("--kp-thresh-scale", "heatmap_peak")  # on the caller's word
    assert code == 0 and "taking the threshold's, heatmap_peak, as stated" in caplog.text
