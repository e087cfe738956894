"""The studies' library: each study trains configs once per seed with one budget, evaluates,
and tabulates; the scripts (tools/ablate.py, tools/data_study.py, tools/detector_study.py,
projects/TopDown/study.py) parse their options with the study's parser and call its ``main``.

- :mod:`.runner`: one training run per config and seed (resumable, read back when finished),
  person detection, evaluation, each step skipped when its output exists;
- :mod:`.jobs`: the seeds shared among processes (``--jobs``), the CPU's threads divided;
- :mod:`.tables`: the table cells (mean and every seed), the comparison with the seed spread and
  the markdown table every study writes;
- :mod:`.effects`: each study's catalogue of the effects the reports claim, judged against the
  seed spread once the baseline is above the noise (``effects.md`` beside each table);
- one module per study, each with its rows and settings, steps and table:
  :mod:`.rcnn_ablation` (the R-CNN methods), :mod:`.data_study` (the data strategies),
  :mod:`.detector_study` (person detectors and their boxes for the top-down stage),
  :mod:`.topdown_methods` (the top-down report models).
"""
