"""The hybrid logical clock: string order is time order, ticks never run backwards, merges hold."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chairside.domain.hlc import Clock, format_ts, is_valid, newer, parse


class FakeWall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (None, None, False),
        (format_ts(1, 0, "cloud"), None, True),
        (None, format_ts(1, 0, "cloud"), False),
        (format_ts(2, 0, "a"), format_ts(1, 9999, "z"), True),  # wall first
        (format_ts(1, 10, "a"), format_ts(1, 9, "z"), True),  # then counter (10 > 9 as strings too)
        (format_ts(1, 9, "b"), format_ts(1, 9, "a"), True),  # then node
        (format_ts(1, 9, "a"), format_ts(1, 9, "a"), False),  # not strictly newer than itself
        (format_ts(999, 0, "a"), format_ts(1000, 0, "a"), False),  # 999 < 1000 despite '9' > '1'
    ],
)
def test_newer(a: str | None, b: str | None, expected: bool) -> None:
    assert newer(a, b) is expected


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (wall ms before the tick, or "observe:<ts>") -> timestamps made
        ([5, 5, 5], ["0000000000005-0000-n", "0000000000005-0001-n", "0000000000005-0002-n"]),
        ([5, 7], ["0000000000005-0000-n", "0000000000007-0000-n"]),
        ([9, 3], ["0000000000009-0000-n", "0000000000009-0001-n"]),  # wall stepped back: counter goes on
        ([5, "observe:0000000000020-0003-x", 6], ["0000000000005-0000-n", "0000000000020-0004-n"]),
        ([30, "observe:0000000000020-0003-x", 30], ["0000000000030-0000-n", "0000000000030-0001-n"]),
    ],
)
def test_ticks(steps: list[int | str], expected: list[str]) -> None:
    wall = FakeWall(0)
    clock = Clock("n", wall)
    made = []
    for step in steps:
        if isinstance(step, str):
            clock.observe(step.removeprefix("observe:"))
        else:
            wall.ms = step
            made.append(clock.now())
    assert made == expected


def test_counter_overflow_borrows_the_next_millisecond() -> None:
    clock = Clock("n", FakeWall(100))
    stamps = [clock.now() for _ in range(10_001)]
    assert stamps[-2] == "0000000000100-9999-n"
    assert stamps[-1] == "0000000000101-0000-n"
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_parse_and_validation() -> None:
    assert parse("0000000001234-0005-cloud") == (1234, 5, "cloud")
    for bad in ["", "1234-0005-cloud", "0000000001234-5-cloud", "0000000001234-0005-", "x" * 20,
                "0000000001234-0005-no spaces"]:
        assert not is_valid(bad)
        with pytest.raises(ValueError, match="hybrid logical clock"):
            parse(bad)
    with pytest.raises(ValueError, match="node id"):
        Clock("bad node")
    with pytest.raises(ValueError, match="hybrid logical clock"):
        Clock("n").observe("yesterday")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=60))
def test_monotonic_whatever_the_wall_does(walls: list[int]) -> None:
    wall = FakeWall(0)
    clock = Clock("a1b2c3d4", wall)
    stamps = []
    for ms in walls:
        wall.ms = ms
        stamps.append(clock.now())
    assert all(newer(later, earlier) for earlier, later in itertools.pairwise(stamps))
    assert all(parse(ts)[0] >= ms for ts, ms in zip(stamps, walls, strict=True))  # never behind its wall


@settings(max_examples=200, deadline=None)
@given(
    skew=st.integers(min_value=-10**7, max_value=10**7),
    events=st.lists(st.tuples(st.sampled_from("ab"), st.integers(min_value=0, max_value=50)), min_size=1, max_size=60),
)
def test_messages_between_skewed_clocks_keep_cause_before_effect(skew: int, events: list[tuple[str, int]]) -> None:
    """Two nodes whose walls differ by `skew` pass every timestamp on: each reply is newer than its cause."""
    base = 10**9
    walls = {"a": FakeWall(base), "b": FakeWall(base + skew)}
    clocks = {name: Clock(name, walls[name]) for name in "ab"}
    last: str | None = None
    for name, advance in events:
        for w in walls.values():
            w.ms += advance
        if last is not None:
            clocks[name].observe(last)
        stamp = clocks[name].now()
        assert newer(stamp, last)
        last = stamp


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=2, max_size=40))
def test_same_millisecond_gives_a_total_order(nodes: list[str]) -> None:
    """Nodes ticking in the same millisecond never make equal timestamps; string order is a total order."""
    wall = FakeWall(42)
    clocks = {n: Clock(n, wall) for n in "abc"}
    stamps = [clocks[n].now() for n in nodes]
    assert len(set(stamps)) == len(stamps)
    for x in stamps:
        for y in stamps:
            assert newer(x, y) + newer(y, x) + (x == y) == 1
