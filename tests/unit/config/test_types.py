"""Durations, comparisons and CIDRs as written in scenario files."""
from __future__ import annotations

import ipaddress

import pytest

from emulator.config import Comparison, parse_cidr, parse_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, seconds", [
    ("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0), ("1m30s", 90.0), ("1.5s", 1.5),
    ("3", 3.0), (2, 2.0), (0.25, 0.25), ("0s", 0.0),
])
def test_duration_parses_to_seconds(text: object, seconds: float) -> None:
    """Units ms/s/m/h, combinations, and plain numbers are seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2 sec", "s", "-1s", -1, True, "1x", "", "1s 2s", None, [1]])
def test_duration_rejects_bad_values(text: object) -> None:
    """Anything else is a ValueError naming the value."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text, value, holds", [
    (">= 1.0", 1.0, True), (">= 1.0", 0.999, False), ("> 5", 5, False), ("<500", 499.9, True),
    ("<= 2e3", 2000, True), ("== 1", 1.0, True), (" == 0.5 ", 0.4, False), ("< -1", -2, True),
])
def test_comparison_holds(text: str, value: float, holds: bool) -> None:
    """`OP NUMBER` compares a measured value."""
    assert Comparison.parse(text).holds(value) is holds


def test_comparison_text_round_trips() -> None:
    """str() gives back a parseable bound."""
    c = Comparison.parse(">=0.99")
    assert (c.op, c.value, str(c)) == (">=", 0.99, ">= 0.99")
    assert Comparison.parse(str(c)) == c


@pytest.mark.parametrize("text", ["at least 1", "=> 1", ">= ", "1", 1.0, "!= 3"])
def test_comparison_rejects_bad_text(text: object) -> None:
    """Unknown operators, missing numbers, bare numbers are errors."""
    with pytest.raises(ValueError, match="invalid comparison"):
        Comparison.parse(text)


def test_cidr_parses_and_rejects() -> None:
    """Networks with host bits, bad masks or no mask are errors."""
    assert parse_cidr("10.4.0.0/14") == ipaddress.IPv4Network("10.4.0.0/14")
    for bad in ("10.4.0.1/14", "10.4.0.0/33", "10.4.0.0", "fd00::/64", 10):
        with pytest.raises(ValueError, match="invalid CIDR"):
            parse_cidr(bad)
