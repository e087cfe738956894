"""The studies' library: each study trains configs once per seed with one budget, evaluates,
and tabulates (tools/ablate.py, tools/data_study.py, tools/detector_study.py,
projects/TopDown/study.py are its scripts).

- :mod:`.runner`: one training run per config and seed (resumable, read back when finished),
  person detection, evaluation, each step skipped when its output exists;
- :mod:`.jobs`: the seeds shared among processes (``--jobs``), the CPU's threads divided;
- :mod:`.tables`: the table cells (mean and every seed) and the comparison with the seed spread.
"""
