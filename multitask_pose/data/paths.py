"""Where the project's data lives: the real samples shipped with the repository and the cache of
generated and converted datasets."""

import os
from pathlib import Path

__all__ = ["samples_root", "synth_cache_root"]


def samples_root() -> Path:
    """The real sample data shipped with the repository (``datasets/samples``)."""
    return Path(
        os.environ.get("MTP_SAMPLES", Path(__file__).resolve().parents[2] / "datasets" / "samples")
    )


def synth_cache_root() -> Path:
    """Where generated datasets are cached: ``$MTP_DATASETS_CACHE`` or
    ~/.cache/multitask_pose/datasets (outside the clone, so a fresh clone reuses what an earlier
    one generated)."""
    default = Path.home() / ".cache" / "multitask_pose" / "datasets"
    return Path(os.environ.get("MTP_DATASETS_CACHE", default))
