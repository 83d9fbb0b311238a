"""The link impairment model: units, ranges, merging of topology and scenario values."""
import pytest
from pydantic import ValidationError

from emulator.config.impairments import Impairments, LinkImpairment, parse_loss, parse_rate

pytestmark = pytest.mark.unit


def test_loss_accepts_percent_and_ratio():
    assert parse_loss("5%") == pytest.approx(0.05)
    assert parse_loss(0.25) == 0.25 and parse_loss("0.5") == 0.5 and parse_loss(0) == 0
    for bad in ("100%", 1, -0.1, "lots", True, [1]):
        with pytest.raises(ValueError):
            parse_loss(bad)


def test_rate_units_are_tc_units():
    assert parse_rate("10mbit") == 10_000_000 and parse_rate("1gbit") == 10 ** 9
    assert parse_rate("500kbit") == 500_000 and parse_rate("2mbps") == 16_000_000   # bytes/s, as tc
    for bad in ("10", "10 megabits", 5, "1bit", "500gbit"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_link_impairment_bounds_and_text():
    li = LinkImpairment(delay="1ms", jitter="0.2ms", loss="1%", rate="10mbit")
    assert (li.delay, li.jitter, li.loss, li.rate) == (0.001, 0.0002, 0.01, 10_000_000)
    assert li.describe() == "delay 1ms ±0.2ms, loss 1%, rate 10mbit"
    assert LinkImpairment().empty and LinkImpairment().describe() == "none"
    with pytest.raises(ValidationError, match="jitter"):
        LinkImpairment(delay="1ms", jitter="2ms")
    with pytest.raises(ValidationError, match="longer than"):
        LinkImpairment(delay="11s")


def test_scenario_classes_replace_the_topology_ones():
    topo = Impairments(inter_zone={"delay": "2ms"}, internet={"delay": "20ms"})
    over = Impairments.model_validate({"inter_node": {"delay": "1ms"}, "internet": None})
    merged = topo.merged(over)
    assert list(merged.active()) == ["inter_zone", "inter_node"]
    assert merged.inter_node.delay == 0.001 and merged.inter_zone.delay == 0.002
    assert topo.merged(None) is topo
    assert Impairments(inter_node={"loss": 0}).active() == {}   # a class that does nothing


def test_scenario_file_impairments():
    from pathlib import Path

    from emulator.config import load_scenario
    path = Path(__file__).parents[1] / "config" / "fixtures" / "good" / "scenario-impairments.yaml"
    s = load_scenario(path)
    imp = s.link_impairments()
    assert {k: v.describe() for k, v in imp.active().items()} == {
        "inter_zone": "delay 2ms ±0.5ms, loss 1%", "inter_node": "delay 1ms"}
    step1, step2 = (st.impair for st in s.steps)
    assert imp.merged(step1).inter_node.describe() == "delay 3ms, loss 1%"
    assert list(imp.merged(step1).merged(step2).active()) == ["inter_zone"]
