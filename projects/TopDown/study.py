#!/usr/bin/env python
"""The report models compared on SynthPeople: HRNet, PCR, HintPose (with cue and refinement, cue
only, refinement only), HRNet + PoseFix and heatmap ensembles, with one training budget and the
same seeds, on ground-truth and detector boxes of each evaluation dataset.

    PY=$(tools/install/setup_env.sh)
    $PY projects/TopDown/study.py --detector zoo://multitask_rcnn_R_18_FPN_synthpeople --seeds 42 43

Steps, each skipped when its output exists, so a killed study resumes with the same command:

1. the detector's boxes (and keypoints) on each evaluation dataset, with tools/detect_persons.py
   and the detector run's config.yaml and model_final.pth: ``<output>/detections/<dataset>.json``;
2. seed by seed, each model's CPU recipe (``configs/Synthetic/<recipe>_synth_basic*.yaml``)
   trained with the studies' runner into ``<output>/<recipe>/seed<seed>`` (TEST.EVAL_PERIOD 0
   and the overrides after ``--``; ``--max-iter`` as in tools/ablate.py), then evaluated on each
   dataset with both box sources (``--eval-only`` into ``<run>/eval/<dataset>_<gt|det>``); a
   HintPose with a cue is cued, as in training, by another model's joints
   (TEST.TOPDOWN.HINT.SOURCE "keypoints", the report's cue): on GT boxes by HRNet's results of
   the same seed and setting (TEST.TOPDOWN.HINT.FILE; its training's final evaluation too, so
   HRNet comes first), on detector boxes by the detector's own keypoints;
3. the seed's PoseFix refiner (trained on GT poses with synthesised errors, so independent of
   HRNet's training), then evaluated on HRNet's results of the same seed, dataset and boxes;
4. the seed's ensembles (MODEL.TOPDOWN.POSE_NET "HeatmapEnsemble", equal weights; members with
   a cue get it): ``--ensemble``'s, and the HintPose report's (``--hintpose-ensemble``: one model
   of each kind, cue and refinement, cue only, refinement only; the report averages two of each),
   evaluated like the models;
5. with ``--record DIR``, each run is recorded once evaluated in every setting (rows, metrics,
   error analysis; HRNet's results, which later runs read; no weights), and a study whose output
   folder was lost resumes from the record (the detector's boxes made again);
6. the table: keypoint AP per (dataset, boxes) as ``mean (seed values)``, keypoint AP75 on the
   first, and whether each row's difference from HRNet on the first setting exceeds the seed
   spread; written to ``<output>/study.md`` and printed, with a one-line summary.
"""

import sys

from multitask_pose.engine.cli import entry_point
from multitask_pose.studies import topdown_methods


def build_parser():
    return topdown_methods.build_parser(__doc__)


@entry_point("topdown study")
def main(argv=None):
    """The study (multitask_pose/studies/topdown_methods.py)."""
    topdown_methods.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
