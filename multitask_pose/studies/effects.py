"""The effects tables of the studies: each effect a report claims (:class:`Claim`: the study's
row with the method, the row it is compared against, the metric, the report's figure and where
it stands), the difference measured here over seeds against the seed spread, and a verdict.

A table first shows its baseline is above the noise (:func:`baseline_check`: keypoint AP and
AP75 bounds per kind of model); below them it gives the differences and no verdicts. A verdict
needs two seeds or more in both rows (:func:`effect_verdict`). The catalogues (one per study)
hold every effect the reports claim that the study has rows for; :class:`NotMeasured` lists the
others. Figures are AP points (x100, as detectron2 reports them), the report's value of the
method's row first, then the compared row's."""

from dataclasses import dataclass

from .reasons import LEGEND, reasons_for
from .tables import fmt, markdown, mean_difference

__all__ = [
    "BOUNDS",
    "DATA_STUDY",
    "DETECTOR_STUDY",
    "RCNN_ABLATION",
    "TOPDOWN_METHODS",
    "BaselineCheck",
    "Claim",
    "NotMeasured",
    "StudyEffects",
    "baseline_check",
    "effect_verdict",
    "effects_document",
    "effects_table",
]

METRICS = {
    "kp": "keypoint AP",
    "kp75": "keypoint AP75",
    "box": "box AP",
    "mask": "mask AP",
    "ar": "box AR@100",
}
# The report's direction of the effect: the method's row higher or lower than the compared one,
# or no effect.
DIRECTIONS = ("higher", "lower", "none")
# (keypoint AP, AP75) a study's baseline must reach, in AP points, before its effects are judged.
BOUNDS = {"topdown": (45.0, 30.0), "rcnn": (30.0, 15.0)}
KINDS = {"topdown": "a top-down model", "rcnn": "the R-CNN"}

SAME = "same direction, beyond the spread"
WITHIN = "within the spread"
OPPOSITE = "opposite, beyond the spread"
NONE_WITHIN = "within the spread, as the report claims (no effect)"
NONE_BEYOND = "beyond the spread, where the report claims no effect"
ONE_SEED = "one seed: no verdict"
NOT_RUN = "not run"
NOT_RECORDED = "not recorded"
BELOW = "no verdict: baseline below the bounds"


@dataclass(frozen=True)
class Claim:
    """One effect a report claims, as this study measures it. ``reported``: the report's
    (method row, compared row) values in AP points, None when the report gives no figure (then
    ``direction`` is the text's); ``note``: how the report's setting differs from the study's."""

    key: str
    effect: str
    row: str
    baseline: str
    metric: str
    direction: str
    reported: tuple | None
    source: str
    note: str = ""

    def __post_init__(self):
        if self.metric not in METRICS or self.direction not in DIRECTIONS:
            raise ValueError(f"{self.key}: metric {self.metric!r}, direction {self.direction!r}")
        if self.reported is not None and self.direction != "none":
            if (self.difference > 0) != (self.direction == "higher") or not self.difference:
                raise ValueError(f"{self.key}: {self.reported} is not {self.direction}")

    @property
    def difference(self):
        """The report's difference in AP points (None without a figure)."""
        if self.reported is None:
            return None
        return round(self.reported[0] - self.reported[1], 2)


@dataclass(frozen=True)
class NotMeasured:
    """An effect a report claims that the study has no row (or no metric) for."""

    effect: str
    figure: str
    source: str
    why: str


@dataclass(frozen=True)
class StudyEffects:
    """A study's catalogue: its claims, the claims it cannot measure, the row whose level is
    checked and its kind (a key of :data:`BOUNDS`)."""

    name: str
    claims: tuple
    not_measured: tuple
    baseline: str
    kind: str


@dataclass(frozen=True)
class BaselineCheck:
    ok: bool
    line: str


def baseline_check(runs, kind, row):
    """Whether the baseline ``row``'s runs (one dict per seed with "kp" and "kp75") reach the
    bounds of ``kind`` in the mean over seeds; ``line``: the sentence the table starts with."""
    ap_min, ap75_min = BOUNDS[kind]
    bounds = f"keypoint AP >= {fmt(ap_min)} and AP75 >= {fmt(ap75_min)} for {KINDS[kind]}"
    if not runs:
        return BaselineCheck(False, f"Baseline {row} not run: no verdicts ({bounds} needed).")
    vals = {k: [r.get(k) for r in runs] for k in ("kp", "kp75")}
    if any(v is None for vs in vals.values() for v in vs):
        return BaselineCheck(
            False, f"Baseline {row}: keypoint AP or AP75 not recorded: no verdicts ({bounds})."
        )
    ap, ap75 = (sum(v) / len(v) for v in vals.values())
    seeds = f"{len(runs)} seed" + "s" * (len(runs) > 1)
    level = f"Baseline {row}: keypoint AP {fmt(ap)}, AP75 {fmt(ap75)} (mean of {seeds})"
    if ap >= ap_min and ap75 >= ap75_min:
        return BaselineCheck(True, f"{level}, within the bounds ({bounds}): effects judged.")
    return BaselineCheck(
        False,
        f"{level}, below the bounds ({bounds}): no verdicts; at this level the differences"
        " below are noise.",
    )


def effect_verdict(claim, runs, base_runs):
    """The verdict on ``claim`` from the seeds' runs of its row and of its compared row: the
    difference of the means against the seed spread (:func:`tables.mean_difference`), in the
    report's direction or against its no effect; no verdict with fewer than two seeds."""
    if not runs or not base_runs:
        return NOT_RUN
    if any(r.get(claim.metric) is None for r in (*runs, *base_runs)):
        return NOT_RECORDED
    if min(len(runs), len(base_runs)) < 2:
        return ONE_SEED
    diff, spread = mean_difference(runs, base_runs, claim.metric)
    beyond = abs(diff) > spread
    if claim.direction == "none":
        return NONE_BEYOND if beyond else NONE_WITHIN
    if not beyond:
        return WITHIN
    return SAME if (diff > 0) == (claim.direction == "higher") else OPPOSITE


def _reported(claim):
    if claim.reported is None:
        return "no figure (text: " + ("no effect" if claim.direction == "none" else
                                       claim.direction) + ")"  # fmt: skip
    method, other = claim.reported
    text = f"{fmt(other)} -> {fmt(method)} ({claim.difference / 100:+.3f})"
    return text + (", no effect claimed" if claim.direction == "none" else "")


def _measured(claim, runs, base_runs):
    if not runs or not base_runs or any(
        r.get(claim.metric) is None for r in (*runs, *base_runs)
    ):
        return "-"
    diff, spread = mean_difference(runs, base_runs, claim.metric)
    seeds = f"{len(runs)}/{len(base_runs)} seeds"
    if min(len(runs), len(base_runs)) < 2:
        return f"{diff / 100:+.3f} ({seeds})"
    return f"{diff / 100:+.3f} (spread {spread / 100:.3f}; {seeds})"


def effects_table(claims, runs_by_row, check=None, reasons=None):
    """The markdown effects table of ``claims`` on ``runs_by_row`` ({row: [one dict per seed
    with the metrics]}): ``check`` (a :class:`BaselineCheck`) heads it and, when failed,
    withholds every verdict; ``reasons``: {claim key: the reason found by the error analysis}
    (empty cells otherwise). Each claim's note follows the table."""
    reasons = reasons or {}
    header = ["effect", "row vs compared row", "metric", "report", "source", "measured here",
              "verdict", "reason"]  # fmt: skip
    rows = []
    for c in claims:
        runs, base = runs_by_row.get(c.row), runs_by_row.get(c.baseline)
        verdict = effect_verdict(c, runs, base)
        if check is not None and not check.ok and verdict not in (NOT_RUN, NOT_RECORDED):
            verdict = BELOW
        rows.append([f"{c.effect} [{c.key}]", f"{c.row} vs {c.baseline}", METRICS[c.metric],
                     _reported(c), c.source, _measured(c, runs, base), verdict,
                     reasons.get(c.key, "")])  # fmt: skip
    text = markdown(check.line if check is not None else "", header, rows).lstrip("\n")
    notes = [f"- [{c.key}] {c.note}" for c in claims if c.note]
    return text + ("\n" + "\n".join(notes) + "\n" if notes else "")


def effects_document(study, sections):
    """A study's ``effects.md``: for each (title, runs_by_row) of ``sections`` (e.g. one per
    evaluation setting), its baseline check and effects table, with the reasons the error
    analysis finds where the runs name their keypoint results (:mod:`.reasons`: "results" and
    "dataset" in each seed's dict); then the claims the study cannot measure."""
    parts = [f"# Effects the reports claim, measured by the {study.name}\n"]
    for title, runs_by_row in sections:
        check = baseline_check(runs_by_row.get(study.baseline), study.kind, study.baseline)
        reasons = reasons_for(study.claims, runs_by_row)
        table = effects_table(study.claims, runs_by_row, check, reasons)
        parts.append(f"## {title}\n\n" + table + (f"\n{LEGEND}\n" if reasons else ""))
    if study.not_measured:
        parts.append(
            "## Claimed by the reports, not measured by this study\n\n"
            + "\n".join(f"- {n.effect}: {n.figure} ({n.source}); {n.why}"
                        for n in study.not_measured)  # fmt: skip
            + "\n"
        )
    return "\n".join(parts)


# The reports (/work/shared/reports in the project's sessions; quoted in the tests):
# 000 COCO Keypoint 2019 (HTC + HRNet, AIC joint training, balanced loss); 001 Team OKS
# (hourglass, rescoring, NMS, data selection, hard AIC examples); 002 PCR; 003 Offset / multitask
# R-CNN; 004 HintPose.

_DCN = "003 §5.2 Table {} (COCO person val)"
_HRNET = "the report's HRNet on COCO + AIC data (top-down); here the R-CNN's keypoint head"
RCNN_ABLATION = StudyEffects(
    name="R-CNN ablation",
    baseline="plain",
    kind="rcnn",
    claims=(
        Claim("offset", "keypoint offsets", "offset", "plain", "kp", "higher", None,
              "003 Abstract, §6 Conclusion",
              "no table of the report isolates the offsets; its text claims a gain"),
        Claim("offset_rbh", "keypoint offsets on RB+H", "dcn_rb_h_offset", "dcn_rb_h", "kp",
              "higher", None, "003 Abstract, §6 Conclusion"),
        Claim("rb_kp", "DCN in res3-res5 (RB)", "dcn_rb", "plain", "kp", "lower",
              (63.61, 63.90), _DCN.format(4),
              "the report's text calls refinement positive in all three tasks; its table has RB"
              " below the regular model in keypoint AP and AP75"),
        Claim("rb_kp75", "DCN in res3-res5 (RB)", "dcn_rb", "plain", "kp75", "lower",
              (69.28, 69.73), _DCN.format(4)),
        Claim("rb_box", "DCN in res3-res5 (RB)", "dcn_rb", "plain", "box", "higher",
              (54.55, 53.61), _DCN.format(3)),
        Claim("rb_mask", "DCN in res3-res5 (RB)", "dcn_rb", "plain", "mask", "higher",
              (47.56, 46.73), _DCN.format(5)),
        Claim("rbh_kp", "DCN in res3-res5 and keypoint head (RB+H)", "dcn_rb_h", "plain", "kp",
              "higher", (64.10, 63.90), _DCN.format(4)),
        Claim("rbh_kp75", "DCN in res3-res5 and keypoint head (RB+H)", "dcn_rb_h", "plain",
              "kp75", "higher", (69.82, 69.73), _DCN.format(4)),
        Claim("rbh_box", "DCN in res3-res5 and keypoint head (RB+H)", "dcn_rb_h", "plain", "box",
              "higher", (54.72, 53.61), _DCN.format(3)),
        Claim("rbh_mask", "DCN in res3-res5 and keypoint head (RB+H)", "dcn_rb_h", "plain",
              "mask", "higher", (47.56, 46.73), _DCN.format(5)),
        Claim("h_on_rb_kp", "deformable keypoint-head convs on RB", "dcn_rb_h", "dcn_rb", "kp",
              "higher", (64.10, 63.61), _DCN.format(4)),
        Claim("h_on_rb_box", "deformable keypoint-head convs on RB", "dcn_rb_h", "dcn_rb", "box",
              "higher", (54.72, 54.55), _DCN.format(3)),
        Claim("h_on_rb_mask", "deformable keypoint-head convs on RB", "dcn_rb_h", "dcn_rb",
              "mask", "none", (47.56, 47.56), _DCN.format(5)),
        Claim("balanced", "class-balanced keypoint loss", "balanced", "plain", "kp", "higher",
              (73.7, 73.5), "000 Result, Table 1 (Model3 vs Model2, COCO test-challenge)",
              _HRNET),
        Claim("mask_head", "mask head beside the keypoint head", "plain", "kp_only", "kp",
              "higher", (65.7, 64.9), "003 §5.3 Table 6",
              "the report's full model (DCN in backbone and head); here the plain recipe"),
        Claim("single_scale", "single-scale FPN", "single_scale", "plain", "kp", "none",
              (64.4, 64.8), "003 §5.1.1 finding 2, Table 2 (COCO test-dev)",
              "the report's single scale is the FPN on conv5 only; here the RPN and ROI heads"
              " on P2 only"),
    ),  # fmt: skip
    not_measured=(
        NotMeasured("4 GPUs against 1 (regular model)", "keypoint AP 0.557 -> 0.639, box"
                    " 0.486 -> 0.536, mask 0.416 -> 0.467", "003 §5.4 Table 7",
                    "no row: one CPU"),
        NotMeasured("DCN on box AP75, AP50 and AP by size; keypoint AP50 and AP by size",
                    "per column", "003 §5.2 Tables 3-5",
                    "the table records box and mask AP, keypoint AP and AP75 only here"),
        NotMeasured("DCN in HRNet", "no figure (no gain)", "000 Related Attempts",
                    "no top-down DCN row"),
    ),  # fmt: skip
)

_HP1 = "004 §3.2 Table 1 (COCO val, HTC boxes)"
_HP2 = "004 §3.2 Table 2 (COCO test-dev)"
_ENS = "the report's ensemble members differ from the study's --ensemble"
_HP_ENS = ("the report averages six models, two of each kind (footnote 2); here one of each kind"
           " of the same seed")
TOPDOWN_METHODS = StudyEffects(
    name="top-down methods study",
    baseline="hrnet",
    kind="topdown",
    claims=(
        Claim("pcr", "PCR decoder on HRNet", "pcr", "hrnet", "kp", "higher", (75.8, 74.4),
              "002 §3.3 Table 3 (HRNet-W32, COCO minival)"),
        Claim("pcr_testdev", "PCR decoder on HRNet", "pcr", "hrnet", "kp", "higher",
              (77.9, 77.0), "002 §3.2 Table 1 and text (HRNet-48, external data, test-dev)"),
        Claim("pcr_kp75", "PCR decoder on HRNet", "pcr", "hrnet", "kp75", "higher",
              (85.0, 84.5), "002 §3.2 Table 1 (HRNet-48, external data, test-dev)"),
        Claim("cue", "HintPose instance cue", "hintpose_cue_only", "hrnet", "kp", "higher",
              (77.1, 76.7), _HP1),
        Claim("cue_testdev", "HintPose instance cue", "hintpose_cue_only", "hrnet", "kp", "none",
              (75.4, 75.4), _HP2,
              "the report: the cue matters less where fewer boxes are crowded (§3.2)"),
        Claim("refine", "HintPose recurrent refinement", "hintpose_refine_only", "hrnet", "kp",
              "higher", (78.0, 76.7), _HP1),
        Claim("refine_testdev", "HintPose recurrent refinement", "hintpose_refine_only", "hrnet",
              "kp", "higher", (76.2, 75.4), _HP2),
        Claim("hintpose", "HintPose cue + refinement", "hintpose", "hrnet", "kp", "higher",
              (78.1, 76.7), _HP1),
        Claim("hintpose_testdev", "HintPose cue + refinement", "hintpose", "hrnet", "kp",
              "higher", (76.2, 75.4), _HP2 + " and text (+0.8 mAP)"),
        Claim("cue_on_refine", "instance cue added to the refinement", "hintpose",
              "hintpose_refine_only", "kp", "higher", (78.1, 78.0), _HP1 + " and its text"),
        Claim("cue_on_refine_testdev", "instance cue added to the refinement", "hintpose",
              "hintpose_refine_only", "kp", "none", (76.2, 76.2), _HP2,
              "the report: the cue matters less where fewer boxes are crowded (§3.2)"),
        Claim("posefix", "PoseFix refinement", "posefix", "hrnet", "kp", "higher", (77.8, 77.3),
              _HP2, "the report refines its ensemble's results; here HRNet's"),
        Claim("ensemble_pcr", "heatmap ensemble over its best member", "ensemble", "pcr", "kp",
              "higher", (78.9, 77.9), "002 §3.2 Table 1 (PCR+* vs PCR* HRNet-48, test-dev)",
              _ENS + " (PCR on R152 and HRNet-48)"),
        Claim("ensemble_pcr_kp75", "heatmap ensemble over its best member", "ensemble", "pcr",
              "kp75", "higher", (86.0, 85.0), "002 §3.2 Table 1 (PCR+* vs PCR* HRNet-48)"),
        Claim("ensemble_refine", "HintPose ensemble over its best member", "hintpose_ensemble",
              "hintpose_refine_only", "kp", "higher", (77.3, 76.2), _HP2, _HP_ENS),
        Claim("ensemble_hrnet", "HintPose ensemble over the baseline", "hintpose_ensemble",
              "hrnet", "kp", "higher", (77.3, 75.4), _HP2, _HP_ENS),
    ),  # fmt: skip
    not_measured=(
        NotMeasured("keypoint AR of PCR, HintPose, the ensembles and PoseFix", "e.g. HRNet-W32"
                    " 0.798 -> PCR 0.811; HRNet 0.812 -> I.C. + R.R. 0.826",
                    "002 Tables 1, 3, 4; 004 Tables 1, 2",
                    "the evaluator reports keypoint AR for CrowdPose data only"),
        NotMeasured("PCR's CAM branches SE, HDC, AD (R50)", "0.704 -> 0.728 / 0.726 / 0.730,"
                    " all 0.738", "002 §3.3 Table 3",
                    "recipes pcr_..._se_only / hdc_only / ad_only exist, no study row"),
        NotMeasured("box rescoring by keypoint score", "box score 0.703 -> rescoring 0.715"
                    " (keypoint score alone 0.561)", "001 Box Candidates Rescoring",
                    "a switch (TEST.TOPDOWN.RESCORE), no study row"),
        NotMeasured("IoU-NMS then OKS-NMS", "0.715 -> 0.717", "001 Experiment Results",
                    "a switch (TEST.TOPDOWN.IOU_NMS_THRESH), no study row"),
        NotMeasured("pose network architectures", "8-stack hourglass 0.734, Inception-ResNet-v2"
                    " 0.694, ResNet-269 0.697; 2 stacks 0.701, searched network 0.705",
                    "001 Explore new architecture", "no study row"),
        NotMeasured("HintPose's gain larger on crowded data", "no figure (an expectation)",
                    "004 §4", "the crowded setting's section shows it beside the basic one"),
        NotMeasured("PCR decoder on SimpleBaseline R152", "0.737 -> 0.756 (test-dev)",
                    "002 §3.2 Table 1 and text", "no SimpleBaseline or PCR-SimpleBaseline row"),
        NotMeasured("ResNeXt backbone; regression and heatmap losses together", "no figure (no"
                    " gain)", "000 Related Attempts", "no study row"),
    ),  # fmt: skip
)

DETECTOR_STUDY = StudyEffects(
    name="detector study",
    baseline="gt",
    kind="topdown",
    claims=(
        Claim("htc_cascade", "HTC against Cascade R-CNN", "htc_R_18_FPN_synth_basic",
              "cascade_mask_rcnn_R_18_FPN_synth_basic", "box", "higher", None,
              "000 Person detection"),
        Claim("htc_faster", "HTC against a single box head (Faster R-CNN)",
              "htc_R_18_FPN_synth_basic", "faster_rcnn_R_18_FPN_synth_basic", "box", "higher",
              None, "000 Person detection",
              "the report names Mask R-CNN, whose box head is Faster R-CNN's"),
        Claim("gt_boxes", "ground-truth boxes for the detector's", "gt",
              "faster_rcnn_R_18_FPN_synth_basic", "kp", "higher", (75.5, 73.0),
              "001 Experiment Results ('++ ground truth box')",
              "the report's detector: FPN + Mask R-CNN on R-50 (box AP 52.1); the study's"
              " ground-truth row is one evaluation of one top-down model"),
    ),  # fmt: skip
    not_measured=(
        NotMeasured("the detectors' levels", "box AP 0.521, AR 0.613 (001); person AP 0.606"
                    " (002); 0.605 (004); HTC mAP 0.507 (000)", "001 Person Detection; 002"
                    " §3.2; 004 §3.1; 000 Person detection", "levels, not effects"),
        NotMeasured("the pose network matters more than the detector", "no figure",
                    "001 What we learned?", "qualitative"),
        NotMeasured("Cascade against Faster R-CNN; HTC + keypoints", "no claim", "-",
                    "rows of the study the reports do not compare"),
    ),  # fmt: skip
)

_T4 = "002 §3.3 Table 4 ({})"
DATA_STUDY = StudyEffects(
    name="data study",
    baseline="baseline",
    kind="topdown",
    claims=(
        Claim("aic_000", "joint training with AIC data", "aic", "baseline", "kp", "higher",
              (73.5, 73.4), "000 Result, Table 1 (Model2 vs Model1, test-challenge)"),
        Claim("aic_001", "joint training with AIC data", "aic", "baseline", "kp", "higher",
              (73.0, 71.7), "001 Experiment Results ('++ external data')",
              "the report adds the AIC examples its model finds hard, after data selection,"
              " rescoring and OKS-NMS"),
        Claim("aic_002", "joint training with external data", "aic", "baseline", "kp", "higher",
              (77.1, 75.6), "002 §3.2 Table 1 (PCR* vs PCR, R152, test-dev)",
              "the report's external data: AIC and pseudo-labelled unlabelled COCO"),
        Claim("pseudo", "pseudo-labels of unlabelled images", "pseudo", "baseline", "kp",
              "higher", (75.6, 75.3), _T4.format("ACHU->CH vs ACH->CH"),
              "the report adds them to AIC + HNDM training"),
        Claim("hndm", "hard-negative detection mining", "hndm", "baseline", "kp", "higher",
              (75.3, 75.0), _T4.format("ACH->CH vs AC->C"),
              "the report adds it to AIC joint training"),
        Claim("selection", "data selection", "inconsistent_selected", "inconsistent", "kp",
              "higher", (70.8, 70.3), "001 Experiment Results ('++ data selection')"),
        Claim("inconsistent", "inconsistent annotations", "inconsistent", "baseline", "kp",
              "lower", None, "001 Data Selection ('False annotations in COCO dataset')",
              "the report's slide shows examples without a figure; the direction follows from"
              " data selection's gain (0.703 -> 0.708)"),
    ),  # fmt: skip
    not_measured=(
        NotMeasured("joint training against transfer from AIC", "A->C 0.748 -> AC->C 0.750",
                    _T4.format("A->C vs AC->C"), "no transfer row"),
        NotMeasured("keypoint AR of the strategies", "0.801 / 0.804 / 0.804 / 0.807",
                    _T4.format("AR"), "the evaluator reports keypoint AR for CrowdPose only"),
        NotMeasured("the AIC examples the model finds hard, not all AIC data", "no figure of"
                    " its own (inside '++ external data', 0.717 -> 0.730)", "001 External data",
                    "the aic row joins all AIC data (tools/select_hard_examples.py selects"
                    " them; no study row)"),
        NotMeasured("HNDM at IoU < 0.3, with or without labelled keypoints", "no claim", "-",
                    "the study's own variants of the report's rule"),
    ),  # fmt: skip
)
