"""Hostile input: files that are not files, too big, too deep, alias bombs, names the kernel cannot
take, absurd counts and option-like traffic targets all end in one line and exit 2, quickly.

The YAML fixtures live in fixtures/bad (hostile-*.yaml and friends, checked by test_fixtures);
what cannot be a fixture file (FIFOs, devices, 50 MB) is made here.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from emulator.cli import main
from emulator.config import check, limits
from emulator.config.loader import load_scenario
from emulator.config.size_checks import kernel_name_problems, size_problems
from emulator.errors import ConfigError
from emulator.naming import NETNS_NAME_MAX, RunNames
from emulator.traffic.kinds import generator_argv
from emulator.traffic.ping_probe import ping_command

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parents[3]


def _cli_check(path: str | os.PathLike[str]) -> tuple[int, str, str]:
    """`kubemu check PATH` in-process: exit code, stdout, stderr."""
    result = CliRunner().invoke(main, ["check", str(path)])
    return result.exit_code, result.stdout, result.stderr


def _one_line_error(code: int, err: str, path: str | os.PathLike[str], text: str) -> None:
    """Exit 2 and one line naming the file with `text` in it."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}") and text in lines[0], err
    assert "Traceback" not in err


def test_device_refused_without_reading() -> None:
    code, _, err = _cli_check("/dev/zero")
    _one_line_error(code, err, "/dev/zero", "is a device, not a regular file")


def test_directory_refused(tmp_path: Path) -> None:
    code, _, err = _cli_check(tmp_path)
    _one_line_error(code, err, tmp_path, "is a directory")


def test_fifo_refused_without_hanging(tmp_path: Path) -> None:
    """A FIFO nobody writes to would block a reader forever: the CLI refuses it from its stat."""
    fifo = tmp_path / "scenario.yaml"
    os.mkfifo(fifo)
    proc = subprocess.run([sys.executable, "-m", "emulator.cli", "check", str(fifo)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _one_line_error(proc.returncode, proc.stderr, fifo, "is a FIFO, not a regular file")


def test_manifest_fifo_refused(tmp_path: Path) -> None:
    """A manifest path of a scenario that names a FIFO is refused the same way."""
    os.mkfifo(tmp_path / "objects.yaml")
    topo = (FIXTURES / "common" / "topology.yaml").resolve()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"name: s\ntopology: {topo}\nmanifests: [objects.yaml]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is a FIFO"):
        check(scenario)


def test_big_file_refused_by_size(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(50 << 20)             # 50 MB (sparse): refused from its size, never parsed
    code, _, err = _cli_check(big)
    _one_line_error(code, err, big, f"more than the limit of {limits.MAX_FILE_BYTES} bytes")


def test_file_at_the_limit_is_read(tmp_path: Path) -> None:
    """A comment-padded file of exactly MAX_FILE_BYTES is still read (the limit is inclusive)."""
    text = (FIXTURES / "common" / "topology.yaml").read_text(encoding="utf-8")
    pad = limits.MAX_FILE_BYTES - len(text.encode()) - 1
    path = tmp_path / "topology.yaml"
    path.write_text(text + "#" + "x" * (pad - 1) + "\n", encoding="utf-8")
    assert path.stat().st_size == limits.MAX_FILE_BYTES
    assert ": ok: " in check(path)


def test_files_of_a_scenario_share_one_byte_budget(tmp_path: Path) -> None:
    """The same big manifest named five times is refused by the total, not read five times."""
    web = (FIXTURES / "common" / "web.yaml").read_text(encoding="utf-8")
    (tmp_path / "big.yaml").write_text(web + "#" + "x" * (limits.MAX_FILE_BYTES - len(web) - 2) + "\n",
                                       encoding="utf-8")
    topo = (FIXTURES / "common" / "topology.yaml").resolve()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"name: s\ntopology: {topo}\nmanifests: [big.yaml, big.yaml, big.yaml, big.yaml, big.yaml]\n",
                        encoding="utf-8")
    with pytest.raises(ConfigError, match="MAX_TOTAL_BYTES") as info:
        check(scenario)
    assert info.value.file.endswith("big.yaml")


def test_reading_stops_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_PARSE_SECONDS the composer refuses (here a deadline already passed)."""
    monkeypatch.setattr(limits, "MAX_PARSE_SECONDS", -1.0)
    with pytest.raises(ConfigError, match=r"reading took longer than -1 s \(MAX_PARSE_SECONDS"):
        check(FIXTURES / "good" / "scenario-files.yaml")


@pytest.mark.parametrize("body, text", [
    (b"name: x\n\xff\xfe\n", "not UTF-8"),
    (b"name: x\nsteps: [\x00]\n", "invalid YAML"),
    (b"name: 2023-13-45\n", "invalid YAML value"),
    (b"a: &a [1]\nb: &a [2]\nc: *a\n", "name: required field missing"),   # redefined anchor: no warning text
])
def test_junk_is_one_line(tmp_path: Path, body: bytes, text: str) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(body)
    code, _, err = _cli_check(path)
    _one_line_error(code, err, path, text)


def test_run_refuses_before_the_kernel(tmp_path: Path) -> None:
    """`kubemu run` validates first: the same one line and exit 2 (no run id, no namespaces)."""
    result = CliRunner().invoke(main, ["run", str(FIXTURES / "bad" / "hostile-anchor-bomb.yaml"),
                                       "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "more than 100000 YAML nodes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_pod_netns_names_distinct_and_short() -> None:
    """The names that collided (`x-y/z`, `x/y-z`) differ; a 253-character pod name fits the kernel."""
    names = RunNames("ab12")
    assert names.pod_netns("x-y", "z") != names.pod_netns("x", "y-z")
    long = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    mapped = names.pod_netns("a" * 63, long)
    assert len(mapped) == NETNS_NAME_MAX and mapped.startswith("kubemuab12-pod-")
    assert mapped != names.pod_netns("a" * 63, long[:-1] + "e")
    # A short name that looks like a cut one is shorter than any cut name: no collision.
    assert len(names.pod_netns("default", "web")) < NETNS_NAME_MAX - 20


def test_kernel_name_check_catches_a_colliding_or_long_mapping() -> None:
    """The check itself: with the old mapping (`-` between namespace and pod, no cut) it names both."""
    scenario = load_scenario(FIXTURES / "good" / "scenario-kernel-names.yaml")
    assert kernel_name_problems(scenario.objects) == []

    def old(namespace: str, pod: str) -> str:
        return f"kubemuab12-pod-{namespace}-{pod}"
    problems = [message for _, _, message in kernel_name_problems(scenario.objects, old)]
    assert any("pods x-y/z (" in m and "and x/y-z map to the same network namespace 'kubemuab12-pod-x-y-z'" in m
               for m in problems), problems
    too_long = [m for m in problems if f"at most {NETNS_NAME_MAX} characters" in m]
    assert len(too_long) == 2 and "it maps to" in too_long[0] and "(276 characters)" in too_long[0], problems
    assert "its pods map to" in too_long[1] and "-xxxxxxxxxx-xxxxx' (293 characters)" in too_long[1], problems


def test_memory_estimate_names_the_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(FIXTURES / "good" / "scenario-files.yaml")
    monkeypatch.setattr(limits, "machine_memory_mib", lambda: 64)
    problems = size_problems(scenario.objects, [], 3, 1)
    assert [loc for loc, _ in problems] == [("topology",)]
    assert "need about" in problems[0][1] and "this machine has 64 MiB" in problems[0][1]
    monkeypatch.setattr(limits, "machine_memory_mib", lambda: 1 << 20)
    assert size_problems(scenario.objects, [], 3, 1) == []
    assert "MAX_PODS" in size_problems(scenario.objects, [limits.MAX_PODS], 3, 1)[0][1]


@pytest.mark.parametrize("kind, params", [
    ("ping", {"host": "-f", "count": 1, "interval": 0.2, "timeout": 1.0}),
    ("tcp", {"host": "-f", "port": 80, "send": "-x", "requests": 1, "duration": None, "concurrency": None,
             "rate": None}),
    ("udp", {"host": "-f", "port": 80, "message": "-x", "requests": 1}),
    ("iperf3", {"host": "-f", "port": 5201, "duration": 1.0}),
    ("http", {"url": "-f", "requests": 1}),
])
def test_generators_never_read_a_target_as_an_option(kind: str, params: dict) -> None:
    """Even a target that slipped past the check reaches the generator as a value, not an option."""
    argv = generator_argv(kind, params, "out", "py")
    values = [a for a in argv if a.endswith("=-f") or a.endswith("=-x")]
    assert values and all(a.startswith("--") for a in values), argv
    p = argparse.ArgumentParser()
    for a in argv[3:]:
        if a.startswith("--"):
            p.add_argument(a.split("=")[0], nargs="?")
    parsed = vars(p.parse_args(argv[3:]))
    assert "-f" in parsed.values()


def test_ping_gets_its_host_after_double_dash() -> None:
    cmd = ping_command("-f", 3, 0.2, 1.0)
    assert cmd[-2:] == ["--", "-f"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "-f" in proc.stderr and "invalid" not in proc.stderr.lower()
