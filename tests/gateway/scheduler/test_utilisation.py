"""Bus utilisation: the running sum equals the spans in the window added up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.scheduler.timing import Utilisation


def naive(spans: list[tuple[float, float]], now: float, window: float, started: float) -> float:
    horizon = now - window
    busy = sum(e - max(s, horizon) for s, e in spans if e > horizon)
    span = min(window, now - started)
    return 0.0 if span <= 0 else max(0.0, min(1.0, busy / span))


@given(
    gaps=st.lists(st.tuples(st.floats(0, 5), st.floats(0.001, 3)), min_size=1, max_size=200),
    window=st.floats(1, 30),
)
def test_the_running_sum_matches_adding_up_the_spans_in_the_window(
    gaps: list[tuple[float, float]], window: float
) -> None:
    u = Utilisation(window)
    started = u._started
    t = started
    spans: list[tuple[float, float]] = []
    for idle, busy in gaps:
        start, end = t + idle, t + idle + busy
        u.add(start, end)
        spans.append((start, end))
        t = end
        assert abs(u.ratio(end) - naive(spans, end, window, started)) < 1e-6
    # Long after the last span the line was idle.
    assert u.ratio(t + window + 1) == 0.0
