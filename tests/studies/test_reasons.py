"""The effects tables' reason column (multitask_pose/studies/reasons.py) on results built from the
real COCO sample's ground truth with known errors: the difference it explains is pycocotools' AP
difference, the costs add up to it, the kind of error that was changed is named first with the
right sign, and a study's effects.md carries the reason where its runs name their results."""

import json
import re

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from multitask_pose.studies import effects, reasons

SAMPLE = "coco_person_sample"


def _gt():
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(SAMPLE)
    return COCO(meta.json_file), np.asarray(meta.keypoint_oks_sigmas)


def _results(path, jittered=lambda i: False, drop=()):
    """Every counted person's ground-truth keypoints as a detection (score 1), those of the
    persons ``jittered(position)`` moved right by the distance at which each joint's OKS term is
    0.6 (coco-analyze's jitter: 0.5 <= ks < 0.85, corrected to 0.85), the persons at the positions
    in ``drop`` left out; returns the number of counted persons."""
    coco, sigmas = _gt()
    anns = [a for a in coco.loadAnns(coco.getAnnIds()) if not a["iscrowd"] and a["num_keypoints"]]
    out = []
    for i, a in enumerate(anns):
        if i in drop:
            continue
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        if jittered(i):
            # ks = exp(-d^2 / (2 area (2 sigma)^2)) = 0.6
            kp[:, 0] += np.sqrt(-2 * np.log(0.6) * a["area"]) * 2 * sigmas
        kp[:, 2] = 1
        out.append({"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                    "keypoints": kp.ravel().round(2).tolist()})  # fmt: skip
    path.write_text(json.dumps(out))
    return len(anns)


NUM, SIGNED = r"(\d\.\d{3})", r"([+-]\d\.\d{3})"
KIND = rf"([\w ]+) {NUM} -> {NUM} \({SIGNED}\)"  # a kind of error: its costs, its share
REASON = re.compile(rf"{SIGNED}: {KIND}, {KIND}, rest {SIGNED}")


def _coco_ap(path, metric_index=0):
    coco, sigmas = _gt()
    ev = COCOeval(coco, coco.loadRes(str(path)), "keypoints")
    ev.params.kpt_oks_sigmas = sigmas
    ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats[metric_index]


def _reason(row, base, metric="kp"):
    text = reasons.effect_reason(metric, [{"results": str(row), "dataset": SAMPLE}],
                                 [{"results": str(base), "dataset": SAMPLE}])  # fmt: skip
    m = REASON.fullmatch(text)
    assert m, text
    assert float(m[5]) + float(m[9]) + float(m[10]) == pytest.approx(float(m[1]), abs=2e-3)
    return m


def test_the_reason_explains_pycocotools_difference_by_the_changed_error(tmp_path):
    names = ("every", "third", "perfect", "dropped")
    every, third, perfect, dropped = (tmp_path / f"{n}.json" for n in names)
    assert _results(every, jittered=lambda i: True) >= 6
    _results(third, jittered=lambda i: i % 3 == 0)
    _results(perfect)
    _results(dropped, drop=(1,))

    # less jitter: the gain, named first, its cost lower in the row
    m = _reason(third, every)
    diff = _coco_ap(third) - _coco_ap(every)
    assert float(m[1]) == pytest.approx(diff, abs=6e-4) and diff > 0.1
    assert m[2] == "jitter" and float(m[3]) > float(m[4]) and float(m[5]) > 0.1
    # a person not found: a loss, named as a false negative
    m = _reason(dropped, perfect)
    diff = _coco_ap(dropped) - _coco_ap(perfect)
    assert float(m[1]) == pytest.approx(diff, abs=6e-4) and diff < -0.05
    assert m[2] == "FN" and float(m[3]) < float(m[4]) and float(m[5]) < -0.05

    # the costs add up exactly: AP = the fully corrected AP less every kind's cost
    for path in (every, third, dropped):
        costs = reasons.error_costs(path, SAMPLE)
        for metric, index in (("AP", 0), ("AP75", 2)):
            c = costs[metric]
            assert c["AP"] == pytest.approx(_coco_ap(path, index), abs=1e-9)
            assert c["corrected"] - sum(c[k] for k, _ in reasons.COSTS) == pytest.approx(c["AP"])
    assert (tmp_path / "third.json.costs.json").is_file()  # analysed once
    assert float(_reason(third, every, "kp75")[1]) == pytest.approx(
        _coco_ap(third, 2) - _coco_ap(every, 2), abs=6e-4
    )

    runs = [{"results": str(third), "dataset": SAMPLE}]
    assert reasons.effect_reason("box", runs, runs) == ""  # not a keypoint metric
    # a model that found nobody: said in the cell, the study's table still written
    (tmp_path / "empty.json").write_text("[]")
    empty = [{"results": str(tmp_path / "empty.json"), "dataset": SAMPLE}]
    assert reasons.effect_reason("kp", empty, runs).startswith("no error analysis: ")
    assert "empty" in reasons.effect_reason("kp", empty, runs)
    assert reasons.effect_reason("kp", runs, [{"results": str(tmp_path / "none.json")}]) == ""


def test_effects_document_gives_the_reason_where_runs_name_their_results(tmp_path):
    base, row = tmp_path / "base.json", tmp_path / "row.json"
    _results(base, jittered=lambda i: True)
    _results(row, jittered=lambda i: i % 2 == 0)
    study = effects.TOPDOWN_METHODS

    def runs(path, aps):
        return [{"kp": ap, "kp75": ap - 10, "results": str(path), "dataset": SAMPLE} for ap in aps]

    section = {"hrnet": runs(base, (60.0, 61.0)), "pcr": runs(row, (63.0, 63.5))}
    doc = effects.effects_document(study, [("GT boxes", section)])
    line = next(x for x in doc.splitlines() if x.startswith("| PCR decoder on HRNet [pcr]"))
    assert line.split(" | ")[-1].startswith(reasons.effect_reason("kp", section["pcr"],
                                                                  section["hrnet"]))  # fmt: skip
    assert " jitter 0." in line and reasons.LEGEND in doc
    # without results files: empty reason cells and no legend
    bare = {k: [{"kp": r["kp"], "kp75": r["kp75"]} for r in v] for k, v in section.items()}
    doc = effects.effects_document(study, [("GT boxes", bare)])
    assert reasons.LEGEND not in doc
    assert next(x for x in doc.splitlines() if "[pcr]" in x).endswith("|  |")


def test_a_finished_run_names_its_final_evaluations_results(tmp_path):
    from multitask_pose.studies import runner

    row = {"name": "plain", "dataset": "synth_people_basic_val", "kp": 30.0}
    assert runner._with_results(row, tmp_path) == row  # no evaluation written: no reason
    path = tmp_path / "inference" / "synth_people_basic_val" / "coco_instances_results.json"
    path.parent.mkdir(parents=True)
    path.write_text("[]")
    assert runner._with_results(row, tmp_path) == dict(row, results=str(path))
