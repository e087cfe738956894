"""The one wall-clock timer of the benchmarks and of the tools that report a speed: the median
of repeated calls after warm-up calls (the median, not the mean, so that one call slowed by
another process does not move the figure)."""

import statistics
import time
from typing import Callable

__all__ = ["median_ms", "median_seconds"]


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls
    (first-call costs: allocator, caches, lazy initialisation)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """:func:`median_seconds` in milliseconds."""
    return 1000 * median_seconds(fn, repeats, warmup)
