"""HTTP status codes in flow summaries and the `statuses_seen` assertion."""
import pytest

from emulator.report.stats import summarize

pytestmark = pytest.mark.unit


def test_statuses_count_every_answer_whatever_the_outcome():
    recs = [{"outcome": "ok", "status": 200, "t_start": 0.0, "total_ms": 1.0},
            {"outcome": "http_error", "status": 404, "t_start": 0.1, "total_ms": 1.0},
            {"outcome": "http_error", "status": 404, "t_start": 0.2, "total_ms": 1.0},
            {"outcome": "timeout", "status": None, "t_start": 0.3, "total_ms": 2000.0}]
    s = summarize(recs)
    assert s.statuses == {"404": 2, "200": 1}
    assert s.success_ratio == 0.25
