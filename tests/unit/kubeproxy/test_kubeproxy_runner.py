"""The iptables adapter: backend choice and error reporting (no root needed)."""
import shutil

import pytest

from emulator.errors import KernelError
from emulator.kernel.iptables import IptablesRunner, choose_backend, failing_line, node_lock_file

pytestmark = pytest.mark.unit


def test_auto_prefers_legacy_when_installed(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/sbin/" + tool)
    assert choose_backend("auto") == "legacy"
    monkeypatch.setattr(shutil, "which", lambda tool: None if "legacy" in tool else "/usr/sbin/" + tool)
    assert choose_backend("auto") == "nft"
    assert choose_backend("nft") == "nft"
    with pytest.raises(ValueError):
        choose_backend("ipvs")


def test_failing_line_is_quoted_from_the_payload():
    payload = "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j NOPE\nCOMMIT\n"
    assert failing_line(payload, "iptables-restore: line 3 failed") == "line 3: -A KUBE-SERVICES -j NOPE"
    assert failing_line(payload, "Error occurred at line: 3") == "line 3: -A KUBE-SERVICES -j NOPE"
    assert failing_line(payload, "something else") == ""


@pytest.mark.skipif(shutil.which("iptables-legacy-restore") is None, reason="needs iptables-legacy")
def test_restore_error_names_the_failing_line():
    # A stand-in for `ip netns exec NS`: swallow stdin, complain like iptables-restore.
    fake_exec = ["sh", "-c", 'cat >/dev/null; echo "iptables-restore: line 2 failed" >&2; exit 1', "sh"]
    runner = IptablesRunner(fake_exec, "legacy")
    with pytest.raises(KernelError) as err:
        runner.restore("*filter\n-A BAD\nCOMMIT\n")
    assert "line 2: -A BAD" in str(err.value)
    assert runner.backend == "legacy"


@pytest.mark.skipif(shutil.which("iptables-legacy") is None, reason="needs iptables-legacy")
def test_chain_exists_reads_the_exit_status():
    assert IptablesRunner(["sh", "-c", "exit 0", "sh"], "legacy").chain_exists("mangle", "KUBE-PROXY-CANARY")
    assert not IptablesRunner(["sh", "-c", "exit 1", "sh"], "legacy").chain_exists("mangle", "X")
    with pytest.raises(KernelError):
        IptablesRunner(["sh", "-c", "exit 4", "sh"], "legacy").chain_exists("mangle", "X")



@pytest.mark.skipif(shutil.which("iptables-legacy") is None, reason="needs iptables-legacy")
def test_each_node_runs_iptables_with_its_own_lock_file(tmp_path):
    """XTABLES_LOCKFILE reaches the tools, one file per node; without one, the host's lock."""
    # A stand-in for `ip netns exec NS`: report the lock file the tool would use.
    show_env = ["sh", "-c", 'cat >/dev/null; echo "lock=${XTABLES_LOCKFILE:-none}" >&2; exit 1', "sh"]

    def lock_seen(runner: IptablesRunner) -> str:
        with pytest.raises(KernelError) as err:
            runner.restore("*filter\nCOMMIT\n")
        return err.value.output.strip()
    locks = [node_lock_file(str(tmp_path), ns) for ns in ("kubemu1a2b-n1", "kubemu1a2b-n2")]
    assert locks[0] != locks[1] and all(lk.startswith(str(tmp_path / "xtables")) for lk in locks)
    seen = [lock_seen(IptablesRunner(show_env, "legacy", lock_file=lk)) for lk in locks]
    assert seen == [f"lock={lk}" for lk in locks]
    assert (tmp_path / "xtables").is_dir()
    assert lock_seen(IptablesRunner(show_env, "legacy")) == "lock=none"
