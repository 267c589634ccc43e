"""Modbus request merging: fewest requests within the gap and size limits."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus import RegisterSpan, plan_reads
from protocols.modbus_profile import resolve_profile


def span(key: str, address: int, count: int = 2, function: int = 4) -> RegisterSpan:
    return RegisterSpan(key, function, address, count)


def test_neighbours_merge_into_one_request() -> None:
    spans = [span("a", 0), span("b", 2), span("c", 4)]
    blocks = plan_reads(spans)
    assert [(b.address, b.count) for b in blocks] == [(0, 6)]
    assert {s.key for s in blocks[0].spans} == {"a", "b", "c"}


def test_gap_limit_splits() -> None:
    spans = [span("a", 0), span("b", 12), span("c", 30)]
    # a ends at 2; b starts 10 registers later (gap 10 <= 10); c is 16 after b's end.
    assert [(b.address, b.count) for b in plan_reads(spans, max_gap=10)] == [(0, 14), (30, 2)]
    assert len(plan_reads(spans, max_gap=0)) == 3
    assert len(plan_reads(spans, max_gap=100)) == 1


def test_size_limit_and_function_codes_split() -> None:
    spans = [span("a", 0), span("b", 10), span("c", 0, function=3)]
    blocks = plan_reads(spans, max_gap=20, max_registers=8)
    assert [(b.function, b.address, b.count) for b in blocks] == [(3, 0, 2), (4, 0, 2), (4, 10, 2)]


def test_sdm630_profile_needs_few_requests() -> None:
    profile = resolve_profile("sdm630")
    spans = [RegisterSpan(s.key, s.function, s.address, s.count) for s in profile.registers]
    merged = plan_reads(spans, max_gap=10)
    unmerged = plan_reads(spans, max_gap=0, max_registers=2)
    assert len(unmerged) == len(spans)
    assert len(merged) < len(spans) // 2
    assert sum(len(b.spans) for b in merged) == len(spans)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([3, 4]), st.integers(0, 300), st.sampled_from([1, 2, 4])),
        min_size=1,
        max_size=30,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.integers(0, 20),
    st.integers(4, 125),
)
def test_every_span_is_covered_within_limits(
    raw: list[tuple[int, int, int]], gap: int, limit: int
) -> None:
    spans = [RegisterSpan(f"k{i}", fc, addr, n) for i, (fc, addr, n) in enumerate(raw)]
    blocks = plan_reads(spans, max_gap=gap, max_registers=limit)
    seen = [s for b in blocks for s in b.spans]
    assert sorted(seen, key=lambda s: s.key) == sorted(spans, key=lambda s: s.key)
    for b in blocks:
        assert b.count <= max(limit, max(s.count for s in b.spans))
        for s in b.spans:
            assert s.function == b.function
            assert b.address <= s.address
            assert s.end <= b.address + b.count
    # No two consecutive blocks of one function could have been merged.
    for a, b in itertools.pairwise(blocks):
        if a.function == b.function:
            merged_count = max(a.address + a.count, b.address + b.count) - a.address
            assert b.address - (a.address + a.count) > gap or merged_count > limit
