"""`kubemu clean` never takes another run's live driver for a leftover."""
import pytest

pytestmark = pytest.mark.unit


def test_a_live_driver_that_inherited_a_dead_runs_id_is_not_that_runs_leftover(monkeypatch):
    """A driver started by a process that once ran run `dead` carries KUBEMU_RUN_ID=dead in
    its /proc environ: cleaning `dead` must not kill it while it drives its own run."""
    from emulator.runner import cleanup
    monkeypatch.setattr(cleanup.netns, "names", lambda: [])
    monkeypatch.setattr(cleanup, "_pids", lambda: [101, 202])
    monkeypatch.setattr(cleanup, "_proc_info", lambda pid: ("python -m emulator.cli run x.yaml", "dead", None))
    monkeypatch.setattr(cleanup, "driver_pid", lambda run_id: None)
    monkeypatch.setattr(cleanup, "live_drivers", lambda: {202})
    assert cleanup.run_processes("dead") == [101]
