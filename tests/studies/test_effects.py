"""The studies' effects tables (multitask_pose/studies/effects.py): every figure of the claims'
catalogues against the report lines it comes from (quoted here; checked against the reports'
text where they are on this machine), the verdicts against hand-computed cases, the baseline
bounds, the markdown layout, and each study writing ``effects.md`` from fake runs (no training)."""

import json
import re
from pathlib import Path

import pytest

from multitask_pose.studies import effects, tables
from multitask_pose.studies.effects import Claim

REPORTS = Path("/work/shared/reports")  # the project sessions' copy (not in the repository)
FILES = {
    "000": "000_a9ed9b04279aa3f6.txt",
    "001": "001_7619d5456e0d2700.txt",
    "002": "002_f6fc4697d6e5696a.txt",
    "003": "003_9c2ad9a6cb60639c.txt",
    "004": "004_f11e501f667c11b9.txt",
}
STUDIES = [effects.RCNN_ABLATION, effects.TOPDOWN_METHODS, effects.DETECTOR_STUDY,
           effects.DATA_STUDY]  # fmt: skip

# The report lines each figure is read from, copied from the reports: claim key -> (report,
# the section/table label the claim's source names, (text before, text after) the lines in the
# report, (method row's line, column), (compared row's line, column)); the column counts the
# decimal numbers on the line.
T3 = ("003", "Table 3", ("5.2. The Impact of Model Refinement", "Table 3: Object detection"))
T4 = ("003", "Table 4", ("Table 3: Object detection", "Table 4: Keypoint estimation"))
T5 = ("003", "Table 5", ("Table 4: Keypoint estimation", "Table 5: Instance segmentation"))
HP1 = ("004", "Table 1", ("### 3.1.", "Table 1: COCO Validation"))
HP2 = ("004", "Table 2", ("Table 1: COCO Validation", "Table 2: COCO Test-dev"))
PCR1 = ("002", "Table 1", ("Table 1: Comparisons", "Table 2: The final"))
PCR4 = ("002", "Table 4", ("Table 4: Comparisons", "#### 4. Conclusion"))
OKS = ("001", "Experiment Results", ("# Experiment Results", "# Results Visualization"))
REG3, RB3, RBH3 = ("| Regular | 53.61 | 82.12 | 58.41 | 35.98 | 61.47 | 71.04 |",
                   "| RB | 54.55 | 82.74 | 58.74 | 35.94 | 61.29 | 73.54 |",
                   "| RB+H | 54.72 | 82.97 | 59.48 | 36.02 | 61.63 | 73.37 |")  # fmt: skip
REG4, RB4, RBH4 = ("| Regular | 63.90 | 86.04 | 69.73 | 59.77 | 71.85 |",
                   "| RB | 63.61 | 85.88 | 69.28 | 58.91 | 72.79 |",
                   "| RB+H | 64.10 | 86.52 | 69.82 | 59.21 | 73.24 |")  # fmt: skip
REG5, RB5, RBH5 = ("| Regular | 46.73 | 79.27 | 50.07 | 26.92 | 52.37 | 65.49 |",
                   "| RB | 47.56 | 79.81 | 51.12 | 27.21 | 52.31 | 67.24 |",
                   "| RB+H | 47.56 | 79.76 | 51.30 | 27.24 | 52.12 | 67.30 |")  # fmt: skip
HP_BASE1, HP_BASE2 = "HRNet (Baseline)\t76.7\t81.2", "HRNet (Baseline)\t75.4\t80.2"
RR1, RR2 = "Recurrent refinement\t78.0\t82.3", "Recurrent refinement\t76.2\t81.0"
PCR_HR48 = "PCR* (HRNet-48)\t77.9\t93.5\t85.0\t73.9\t83.5\t82.9"
PCR_ENS = "PCR+* (R152,HRNet-48)\t78.9\t93.8\t86.0\t<b>75.0</b>\t84.5\t83.6"
ENS2 = "Ensemble model\t77.3\t81.8"
T4_AP = "AP\t74.8\t75.0\t75.3\t75.6"
FIGURES = {
    "rb_kp": (*T4, (RB4, 0), (REG4, 0)),
    "rb_kp75": (*T4, (RB4, 2), (REG4, 2)),
    "rb_box": (*T3, (RB3, 0), (REG3, 0)),
    "rb_mask": (*T5, (RB5, 0), (REG5, 0)),
    "rbh_kp": (*T4, (RBH4, 0), (REG4, 0)),
    "rbh_kp75": (*T4, (RBH4, 2), (REG4, 2)),
    "rbh_box": (*T3, (RBH3, 0), (REG3, 0)),
    "rbh_mask": (*T5, (RBH5, 0), (REG5, 0)),
    "h_on_rb_kp": (*T4, (RBH4, 0), (RB4, 0)),
    "h_on_rb_box": (*T3, (RBH3, 0), (RB3, 0)),
    "h_on_rb_mask": (*T5, (RBH5, 0), (RB5, 0)),
    "balanced": ("000", "Table 1", ("Table 1. 3 model's perform", "Related Attempts"),
                 ("| Model3 | 0.737 |", 0), ("| Model2 | 0.735 |", 0)),
    "mask_head": ("003", "Table 6", ("5.3. Comparison", "Table 6: Result"),
                  ("| kps & mask | 0.657 | 0.465 |", 0), ("| kps-only | 0.649 | _ |", 0)),
    "single_scale": ("003", "Table 2", ("Table 1: Performance on COCO person", "Table 2: Perf"),
                     ("| ResNet-50-FPN(single-scale) | 0.644 | 0.891 | 0.718 | 0.612 | 0.739 |",
                      0),
                     ("| ResNet-50-FPN(multi-scale) | 0.648 | 0.887 | 0.711 | 0.605 | 0.769 |",
                      0)),
    "pcr": ("002", "Table 3", ("Table 3: Ablation study", "Table 4: Comparisons"),
            ("PCR(HRNet-W32)\t✓\t✓\t$\\checkmark$\t75.8\t81.1", 0),
            ("HRNet-W32 [8]\t\t\t\t74.4\t79.8", 0)),
    "pcr_testdev": (*PCR1, (PCR_HR48, 0), ("HRNet-W48* [8]\t77.0\t92.7\t84.5\t73.4\t83.1\t82.0",
                                           0)),
    "pcr_kp75": (*PCR1, (PCR_HR48, 2), ("HRNet-W48* [8]\t77.0\t92.7\t84.5\t73.4\t83.1\t82.0",
                                        2)),
    "cue": (*HP1, ("Instance cue\t77.1\t81.5", 0), (HP_BASE1, 0)),
    "cue_testdev": (*HP2, ("Instance cue\t75.4\t80.2", 0), (HP_BASE2, 0)),
    "refine": (*HP1, (RR1, 0), (HP_BASE1, 0)),
    "refine_testdev": (*HP2, (RR2, 0), (HP_BASE2, 0)),
    "hintpose": (*HP1, ("I.C. + R.R.\t<b>78.1</b>\t<b>82.6</b>", 0), (HP_BASE1, 0)),
    "hintpose_testdev": (*HP2, ("I.C. + R.R.\t76.2\t81.0", 0), (HP_BASE2, 0)),
    "cue_on_refine": (*HP1, ("I.C. + R.R.\t<b>78.1</b>\t<b>82.6</b>", 0), (RR1, 0)),
    "cue_on_refine_testdev": (*HP2, ("I.C. + R.R.\t76.2\t81.0", 0), (RR2, 0)),
    "posefix": (*HP2, ("Ensemble model + PoseFix\t<b>77.8</b>\t<b>82.2</b>", 0), (ENS2, 0)),
    "ensemble_pcr": (*PCR1, (PCR_ENS, 0), (PCR_HR48, 0)),
    "ensemble_pcr_kp75": (*PCR1, (PCR_ENS, 2), (PCR_HR48, 2)),
    "ensemble_refine": (*HP2, (ENS2, 0), (RR2, 0)),
    "ensemble_hrnet": (*HP2, (ENS2, 0), (HP_BASE2, 0)),
    "gt_boxes": (*OKS, ("++ ground truth box\t75.5", 0), ("++ external data\t73.0", 0)),
    "aic_000": ("000", "Table 1", ("Table 1. 3 model's perform", "Related Attempts"),
                ("| Model2 | 0.735 |", 0), ("| Model1 | 0.734 |", 0)),
    "aic_001": (*OKS, ("++ external data\t73.0", 0), ("++ OKS-NMS\t71.7", 0)),
    "aic_002": (*PCR1, ("PCR* (R152)\t77.1\t93.0\t84.7\t73.2\t82.7\t82.1", 0),
                ("PCR (R152)\t75.6\t92.6\t83.3\t71.8\t81.1\t80.7", 0)),
    "pseudo": (*PCR4, (T4_AP, 3), (T4_AP, 2)),
    "hndm": (*PCR4, (T4_AP, 2), (T4_AP, 1)),
    "selection": (*OKS, ("++ data selection\t70.8", 0), ("Hourglass 8 stacks naïve\t70.3", 0)),
}  # fmt: skip
# The claims without a figure: the text that states their direction.
TEXTS = {
    "offset": ("003", "Abstract", ("Abstract", "1. Introduction"),
               "result in noticeable performance gain"),
    "offset_rbh": ("003", "Conclusion", ("6. Conclusion", "7. Acknowledgement"),
                   "Positive influences made by refinement are shown in our experiments"),
    "htc_cascade": ("000", "Person detection", ("Person detection", "Keypoints detection"),
                    "improve the mAP of the target detection"),
    "htc_faster": ("000", "Person detection", ("Person detection", "Keypoints detection"),
                   "improved on the basis of cascade renn and mask renn"),
    "inconsistent": ("001", "Data Selection", ("# Data Selection", "# External data"),
                     "## False annotations in COCO dataset"),
}  # fmt: skip


def decimals(line):
    """The decimal numbers of a report line, in AP points (fractions such as 0.734 x100)."""
    vals = [float(v) for v in re.findall(r"(?<![\w.-])\d+\.\d+", line)]
    return [round(v * 100 if v < 1.5 else v, 2) for v in vals]


def all_claims():
    return [c for s in STUDIES for c in s.claims]


def test_every_claim_is_quoted_and_keys_are_unique():
    keys = [c.key for c in all_claims()]
    assert len(keys) == len(set(keys))
    with_figure = {c.key for c in all_claims() if c.reported is not None}
    assert with_figure == set(FIGURES) and set(keys) - with_figure == set(TEXTS)


@pytest.mark.parametrize("claim", all_claims(), ids=lambda c: c.key)
def test_figures_read_from_the_quoted_report_lines(claim):
    """The catalogue's figures equal the numbers on the quoted report lines; its source names the
    report and the table or section they stand in."""
    if claim.reported is None:
        report, label, _, _ = TEXTS[claim.key]
    else:
        report, label, _, (row, i), (base, j) = FIGURES[claim.key]
        assert claim.reported == (decimals(row)[i], decimals(base)[j])
    assert claim.source.startswith(report) and label in claim.source


@pytest.mark.skipif(not REPORTS.is_dir(), reason=f"the reports' text is not at {REPORTS}")
@pytest.mark.parametrize("claim", all_claims(), ids=lambda c: c.key)
def test_quoted_lines_are_the_reports_in_their_section(claim):
    if claim.reported is None:
        report, _, (start, end), phrase = TEXTS[claim.key]
        quotes = [phrase]
    else:
        report, _, (start, end), (row, _), (base, _) = FIGURES[claim.key]
        quotes = [row, base]
    text = (REPORTS / FILES[report]).read_text()
    lo, hi = text.index(start), text.index(end, text.index(start))
    for q in quotes:
        at = text.find(q, lo)
        assert lo <= at < hi, (claim.key, q)
        if claim.reported is not None:  # a whole line of the table
            assert f"\n{q}\n" in text[at - 1 : at + len(q) + 1], (claim.key, q)


def test_claims_check_their_direction_against_their_figure():
    with pytest.raises(ValueError, match="is not higher"):
        Claim("x", "x", "a", "b", "kp", "higher", (70.0, 71.0), "s")
    with pytest.raises(ValueError, match="is not lower"):
        Claim("x", "x", "a", "b", "kp", "lower", (70.0, 70.0), "s")
    with pytest.raises(ValueError, match="metric"):
        Claim("x", "x", "a", "b", "oks", "higher", None, "s")
    assert Claim("x", "x", "a", "b", "kp", "none", (64.4, 64.8), "s").difference == -0.4


def r(kp, kp75=None):
    return {"kp": kp, "kp75": kp75}


UP = Claim("up", "an effect", "m", "b", "kp", "higher", (71.0, 70.0), "s")
DOWN = Claim("down", "an effect", "m", "b", "kp", "lower", (69.0, 70.0), "s")
ZERO = Claim("zero", "an effect", "m", "b", "kp", "none", (70.0, 70.0), "s")
NO_FIGURE = Claim("nofig", "an effect", "m", "b", "kp", "higher", None, "s")


def test_verdicts_by_hand():
    base = [r(50.0), r(52.0)]  # mean 51, spread 2
    # mean 54 (+3) against the larger spread 2 (the method's seeds spread 1)
    assert effects.effect_verdict(UP, [r(54.5), r(53.5)], base) == effects.SAME
    assert effects.effect_verdict(NO_FIGURE, [r(54.5), r(53.5)], base) == effects.SAME
    assert effects.effect_verdict(DOWN, [r(54.5), r(53.5)], base) == effects.OPPOSITE
    assert effects.effect_verdict(DOWN, [r(48.0), r(48.5)], base) == effects.SAME
    # +1.5 against the method's own spread 3 (larger than the compared row's 2)
    assert effects.effect_verdict(UP, [r(51.0), r(54.0)], base) == effects.WITHIN
    # exactly the spread: not beyond it (as the studies' tables)
    assert effects.effect_verdict(UP, [r(53.0), r(53.0)], base) == effects.WITHIN
    assert effects.effect_verdict(ZERO, [r(52.0), r(51.0)], base) == effects.NONE_WITHIN
    assert effects.effect_verdict(ZERO, [r(47.0), r(48.0)], base) == effects.NONE_BEYOND
    assert effects.effect_verdict(UP, [r(60.0)], base) == effects.ONE_SEED
    assert effects.effect_verdict(UP, [r(60.0), r(61.0)], [r(50.0)]) == effects.ONE_SEED
    assert effects.effect_verdict(UP, None, base) == effects.NOT_RUN
    assert effects.effect_verdict(UP, [r(None), r(1.0)], base) == effects.NOT_RECORDED


def test_spread_is_the_studies_one():
    """tables.versus_first and the effects share tables.mean_difference."""
    runs, first = [r(40.0), r(43.0)], [r(50.0), r(52.0)]
    assert tables.mean_difference(runs, first) == (-9.5, 3.0)
    assert tables.mean_difference(first, runs) == (9.5, 3.0)
    assert tables.versus_first(runs, first) == "-0.095 (spread 0.030: yes)"


def test_baseline_bounds():
    ok = effects.baseline_check([r(45.0, 30.0), r(46.0, 31.0)], "topdown", "hrnet")
    assert ok.ok and ok.line.startswith("Baseline hrnet: keypoint AP 0.455, AP75 0.305 (mean of 2")
    low75 = effects.baseline_check([r(60.0, 29.0), r(60.0, 30.0)], "topdown", "hrnet")
    assert not low75.ok and "below the bounds (keypoint AP >= 0.450 and AP75 >= 0.300" in low75.line
    assert effects.baseline_check([r(30.0, 15.0)], "rcnn", "plain").ok
    low = effects.baseline_check([r(29.9, 40.0)], "rcnn", "plain")
    assert not low.ok and "AP >= 0.300 and AP75 >= 0.150 for the R-CNN" in low.line
    assert not effects.baseline_check(None, "rcnn", "plain").ok
    assert "not recorded" in effects.baseline_check([r(50.0)], "rcnn", "plain").line


def test_markdown_layout_and_refusal():
    runs = {"b": [r(50.0, 35.0), r(52.0, 36.0)], "m": [r(54.5), r(53.5)]}
    claims = (UP, ZERO, NO_FIGURE, Claim("gone", "e", "x", "b", "kp", "higher", None, "s", "n"))
    check = effects.baseline_check(runs["b"], "topdown", "b")
    text = effects.effects_table(claims, runs, check, reasons={"up": "more limbs found"})
    lines = text.splitlines()
    assert lines[0] == check.line and lines[1] == ""
    assert lines[2] == ("| effect | row vs compared row | metric | report | source | measured here"
                        " | verdict | reason |")  # fmt: skip
    assert lines[3] == "|---|---|---|---|---|---|---|---|"
    assert lines[4] == ("| an effect [up] | m vs b | keypoint AP | 0.700 -> 0.710 (+0.010) | s |"
                        " +0.030 (spread 0.020; 2/2 seeds) | same direction, beyond the spread |"
                        " more limbs found |")  # fmt: skip
    assert "| 0.700 -> 0.700 (+0.000), no effect claimed | s |" in lines[5]
    assert lines[5].endswith(f"| {effects.NONE_BEYOND} |  |")
    assert "| no figure (text: higher) | s |" in lines[6]
    assert lines[7].endswith("| - | not run |  |") and lines[-1] == "- [gone] n"
    # below the bounds: the differences, no verdicts
    low = effects.baseline_check([r(40.0, 35.0), r(41.0, 36.0)], "topdown", "b")
    refused = effects.effects_table(claims, runs, low).splitlines()
    assert refused[0] == low.line and "below the bounds" in refused[0]
    assert refused[4].endswith(f"| +0.030 (spread 0.020; 2/2 seeds) | {effects.BELOW} |  |")
    assert not any(v in refused[5] for v in (effects.NONE_BEYOND, effects.NONE_WITHIN))
    one = effects.effects_table((UP,), {"b": [r(50.0, 35.0)], "m": [r(55.0)]})
    assert one.splitlines()[2].endswith("| +0.050 (1/1 seeds) | one seed: no verdict |  |")


def test_document_has_a_section_per_setting_and_the_unmeasured_claims():
    study = effects.TOPDOWN_METHODS
    good = {"hrnet": [r(60.0, 45.0), r(61.0, 46.0)], "pcr": [r(63.0, 47.0), r(62.5, 48.0)]}
    low = {"hrnet": [r(20.0, 5.0), r(21.0, 5.0)], "pcr": [r(23.0, 7.0), r(22.5, 8.0)]}
    doc = effects.effects_document(study, [("basic, GT boxes", good), ("crowd", low)])
    parts = doc.split("\n## ")
    assert parts[0] == "# Effects the reports claim, measured by the top-down methods study\n"
    assert parts[1].startswith("basic, GT boxes\n\nBaseline hrnet: keypoint AP 0.605")
    assert "| PCR decoder on HRNet [pcr] | pcr vs hrnet | keypoint AP | 0.744 -> 0.758" in parts[1]
    assert "+0.022 (spread 0.010; 2/2 seeds) | same direction, beyond the spread |" in parts[1]
    assert "below the bounds" in parts[2] and effects.SAME not in parts[2]
    assert parts[3].startswith("Claimed by the reports, not measured by this study")
    assert len(parts[3].strip().splitlines()) == 2 + len(study.not_measured)


# Each study's main writes effects.md beside its table: fake runs (no training), the runner's
# steps replaced; each row's keypoint AP (AP75) per seed, in AP points.
FAKE = {
    "hrnet": [(60.0, 45.0), (61.0, 46.0)], "pcr": [(63.0, 47.0), (62.5, 48.0)],
    "posefix": [(60.5, 45.0), (61.5, 45.5)], "ensemble": [(64.0, 50.0), (65.0, 50.0)],
    "hintpose": [(61.0, 46.0), (62.0, 46.0)], "hintpose_cue_only": [(60.0, 45.0), (62.0, 46.0)],
    "hintpose_refine_only": [(62.0, 47.0), (62.0, 47.5)],
    "hintpose_ensemble": [(66.0, 51.0), (67.0, 51.0)],
    "baseline": [(50.0, 35.0), (51.0, 36.0)], "aic": [(49.0, 34.0), (53.0, 35.0)],
    "inconsistent": [(45.0, 30.0), (46.0, 30.0)],
    "inconsistent_selected": [(48.0, 33.0), (48.6, 33.0)],
    "gt": [(58.0, 41.0)],
}  # fmt: skip


def fake_eval(config, eval_dir, dataset, opts, what, topdown, prefix="ablate"):
    """The row's figures of FAKE; 30 points lower on dataset "b" and on detector boxes."""
    model, seed = what.split()[0], int(what.split()[2])
    ap, ap75 = FAKE["gt" if model == "the" else model][seed - 1]
    low = 30.0 * (dataset == "b" or what.endswith("detector boxes"))
    return fake_results(eval_dir, dataset, ap - low, ap75 - low)


def fake_results(eval_dir, dataset, ap, ap75=16.0):
    """An evaluation's results, and a results file where the study's runner expects it that
    names its keypoint AP (for :func:`fake_costs`)."""
    from multitask_pose.studies import runner

    path = runner.results_file(eval_dir, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kp": ap, "dataset": dataset}))
    return {"keypoints": {"AP": ap, "AP75": ap75}}


@pytest.fixture(autouse=True)
def fake_costs(monkeypatch):
    """The error analysis replaced: a fake results file's AP is all it knows, and everything it
    lacks of 1 is jitter; the reasons then show which files fed which rows."""
    from multitask_pose.studies import reasons

    def costs(path, dataset):
        info = json.loads(Path(path).read_text())
        assert info["dataset"] == dataset
        c = {"AP": info["kp"] / 100, "corrected": 1.0, **{k: 0.0 for k, _ in reasons.COSTS}}
        c["jitter"] = 1.0 - c["AP"]
        return {"AP": c, "AP75": c}

    monkeypatch.setattr(reasons, "error_costs", costs)


def jitter(base_aps, row_aps):
    """The reason :func:`fake_costs` gives for rows of these keypoint APs per seed (AP points),
    computed as the reason does (means over seeds of each file's costs)."""
    b, r = (sum(1.0 - a / 100 for a in aps) / len(aps) for aps in (base_aps, row_aps))
    diff = sum(a / 100 for a in row_aps) / len(row_aps) - sum(a / 100 for a in base_aps) / len(
        base_aps
    )
    return f"| {diff:+.3f}: jitter {b:.3f} -> {r:.3f} ({b - r:+.3f}), "


def fake_run(name, path, args, out_root, seed):
    """A finished run's row, as the runner gives it with its final evaluation's results."""
    from multitask_pose.studies import runner

    kp, dataset = 30.0 + 2 * seed + (name == "dcn_rb") * 3, "synth_people_basic_val"
    out = out_root / name / f"seed{seed}"
    fake_results(out, dataset, kp)
    return {"name": name, "seed": seed, "dataset": dataset, "box": 40.0 + seed,
            "mask": 30.0, "kp": kp, "kp50": 50.0, "kp75": 16.0, "train_min": 1.0,
            "infer_ms": 10.0, "results": str(runner.results_file(out, dataset))}  # fmt: skip


def effects_lines(path, section=1):
    """A section's table rows of an effects.md (the first by default), by claim key."""
    first = path.read_text().split("\n## ")[section]
    return {ln.split(" | ")[0].split("[")[-1].rstrip("] "): ln
            for ln in first.splitlines() if ln.startswith("| ") and "[" in ln}


def test_rcnn_ablation_writes_effects(tmp_path, monkeypatch):
    from multitask_pose.studies import rcnn_ablation

    monkeypatch.setattr(rcnn_ablation, "run_one", fake_run)
    rcnn_ablation.main(["--output", str(tmp_path), "--seeds", "1", "2", "--configs", "plain",
                        "dcn_rb"])  # fmt: skip
    text = (tmp_path / "effects.md").read_text()
    assert "## On synth_people_basic_val\n\nBaseline plain: keypoint AP 0.330, AP75 0.160" in text
    # dcn_rb 3 points above plain in both seeds, each row spread 2 (kp 32/34 vs 35/37)
    line = effects_lines(tmp_path / "effects.md")["rb_kp"]
    assert "| +0.030 (spread 0.020; 2/2 seeds) | opposite, beyond the spread |" in line
    assert jitter((32.0, 34.0), (35.0, 37.0)) in line
    assert effects_lines(tmp_path / "effects.md")["balanced"].endswith("| - | not run |  |")


def test_topdown_study_writes_effects_per_setting(tmp_path, monkeypatch):
    from multitask_pose.studies import runner, topdown_methods

    monkeypatch.setattr(runner, "run_one", lambda *a: {"dataset": "d", "train_min": 1.0})
    monkeypatch.setattr(runner, "evaluate_run", fake_eval)
    topdown_methods.main(["--output", str(tmp_path), "--seeds", "1", "2", "--no-detector",
                          "--models", "hrnet", "pcr", "hintpose", "hintpose_cue_only",
                          "hintpose_refine_only", "--ensemble", "hrnet", "pcr",
                          "--datasets", "a", "b"])  # fmt: skip
    doc = (tmp_path / "effects.md").read_text()
    assert doc.count("\n## a, ground-truth boxes\n\nBaseline hrnet: keypoint AP 0.605") == 1
    assert "\n## b, ground-truth boxes\n\nBaseline hrnet: keypoint AP 0.305, AP75 0.155" in doc
    assert "below the bounds" in doc.split("\n## b,")[1] and "below" not in doc.split("## b,")[0]
    rows = effects_lines(tmp_path / "effects.md")
    assert "| +0.022 (spread 0.010; 2/2 seeds) | same direction, beyond the spread |" in rows["pcr"]
    assert "| posefix vs hrnet |" in rows["posefix"] and "+0.005 (spread 0.010" in rows["posefix"]
    assert "| +0.018 (spread 0.010; 2/2 seeds) | same direction" in rows["ensemble_pcr"]
    # each row's reason from its own evaluations' results
    assert jitter((60.0, 61.0), (63.0, 62.5)) in rows["pcr"]
    assert jitter((60.0, 61.0), (60.5, 61.5)) in rows["posefix"]
    assert jitter((63.0, 62.5), (64.0, 65.0)) in rows["ensemble_pcr"]
    on_b = effects_lines(tmp_path / "effects.md", 2)  # dataset b
    assert jitter((30.0, 31.0), (33.0, 32.5)) in on_b["pcr"]
    # the HintPose report's ensemble row against its best member and against the baseline
    assert "| hintpose_ensemble vs hintpose_refine_only |" in rows["ensemble_refine"]
    assert "| +0.045 (spread 0.010; 2/2 seeds) | same direction" in rows["ensemble_refine"]
    assert "| +0.060 (spread 0.010; 2/2 seeds) | same direction" in rows["ensemble_hrnet"]
    assert jitter((62.0, 62.0), (66.0, 67.0)) in rows["ensemble_refine"]
    assert "| +0.005 (spread 0.020; 2/2 seeds) | within the spread" in rows["cue"]


def test_detector_study_writes_effects_per_dataset(tmp_path, monkeypatch):
    from multitask_pose.studies import detector_study, runner

    td = tmp_path / "td"
    td.mkdir()
    (td / "config.yaml").write_text("")
    (td / "model_final.pth").write_text("")
    boxes = {"faster": (30.0, 50.0), "cascade": (38.0, 52.0), "htc": (39.0, 53.0)}

    def run(name, path, args, out_root, seed, needs_weights=False):
        return {"train_min": 1.0, "infer_ms": 1.0, "stem": name, "seed": seed}

    monkeypatch.setattr(runner, "run_one", run)
    monkeypatch.setattr(runner, "detect_persons", lambda run_dir, d, path, prefix: path)
    # <output>/<detector>/seed<seed>/detections/<dataset>.json
    monkeypatch.setattr(detector_study, "box_ap_ar", lambda det, d: (
        boxes[det.parents[2].name.split("_")[0]][0] + int(det.parents[1].name[-1]),
        boxes[det.parents[2].name.split("_")[0]][1]))  # fmt: skip
    # the top-down model's AP on each box source: 58 on GT boxes, 50 + seed on a detector's
    monkeypatch.setattr(runner, "evaluate_run", lambda cfg, eval_dir, d, *a, **k: fake_results(
        eval_dir, d, 58.0 if eval_dir.parent.name != "topdown" else
        50.0 + int(eval_dir.parent.parent.name[-1]), 41.0))  # fmt: skip
    cfgs = detector_study.DETECTORS
    names = ["faster_rcnn_R_18_FPN_synth_basic", "cascade_mask_rcnn_R_18_FPN_synth_basic",
             "htc_R_18_FPN_synth_basic"]  # fmt: skip
    detector_study.main(["--output", str(tmp_path / "ds"), "--seeds", "1", "2", "--topdown",
                         str(td), "--datasets", "a", "--configs",
                         *(str(cfgs / f"{n}.yaml") for n in names)])  # fmt: skip
    doc = (tmp_path / "ds" / "effects.md").read_text()
    assert "## a\n\nBaseline gt: keypoint AP 0.580, AP75 0.410 (mean of 1 seed), within" in doc
    rows = effects_lines(tmp_path / "ds" / "effects.md")
    # box AP 39+seed against 38+seed: +0.010, spread 0.010 -> within
    assert "| +0.010 (spread 0.010; 2/2 seeds) | within the spread |" in rows["htc_cascade"]
    assert "| +0.090 (spread 0.010; 2/2 seeds) | same direction" in rows["htc_faster"]
    assert "| +0.065 (1/2 seeds) | one seed: no verdict |" in rows["gt_boxes"]
    # from the results on the Faster R-CNN's boxes (per seed) and on the GT boxes
    assert jitter((51.0, 52.0), (58.0,)) in rows["gt_boxes"]


def test_data_study_writes_effects_per_box_source(tmp_path, monkeypatch):
    from multitask_pose.studies import data_study, runner

    dets = tmp_path / "dets.json"
    dets.write_text("[]")
    monkeypatch.setattr(runner, "run_one", lambda *a: {"train_min": 1.0})
    monkeypatch.setattr(runner, "evaluate_run", fake_eval)
    monkeypatch.setattr(data_study, "data_counts", lambda *a: [])
    data_study.main(["--output", str(tmp_path / "ds"), "--seeds", "1", "2", "--rows", "baseline",
                     "aic", "inconsistent", "inconsistent_selected", "--val", "v",
                     "--detections", f"v={dets}"])  # fmt: skip
    doc = (tmp_path / "ds" / "effects.md").read_text()
    assert "## v, GT boxes\n\nBaseline baseline: keypoint AP 0.505, AP75 0.355" in doc
    assert "## v, detector boxes\n\nBaseline baseline: keypoint AP 0.205, AP75 0.055" in doc
    rows = effects_lines(tmp_path / "ds" / "effects.md")
    assert "| +0.005 (spread 0.040; 2/2 seeds) | within the spread |" in rows["aic_000"]
    assert "| +0.028 (spread 0.010; 2/2 seeds) | same direction" in rows["selection"]
    assert "| -0.050 (spread 0.010; 2/2 seeds) | same direction" in rows["inconsistent"]
    assert jitter((45.0, 46.0), (48.0, 48.6)) in rows["selection"]
    assert jitter((50.0, 51.0), (45.0, 46.0)) in rows["inconsistent"]
    assert rows["pseudo"].endswith("| - | not run |  |")
