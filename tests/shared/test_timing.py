"""The benchmarks' timer on a scripted clock: the median of the timed calls, the warm-up calls
untimed, and a clear error for no repeats."""

import pytest

from multitask_pose.shared import timing


def test_median_of_timed_calls_after_untimed_warmup(monkeypatch):
    # Each call of fn advances the clock by its scripted duration; perf_counter reads the clock.
    durations = iter([100.0, 100.0, 3.0, 1.0, 2.0, 50.0, 4.0])  # two warm-ups, then five
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def fn():
        clock[0] += next(durations)

    assert timing.median_seconds(fn, repeats=5, warmup=2) == 3.0
    with pytest.raises(StopIteration):  # exactly 2 + 5 calls were made
        fn()


def test_no_repeats_is_refused():
    with pytest.raises(ValueError, match="repeats must be at least 1, got 0"):
        timing.median_seconds(lambda: None, repeats=0)
