"""Fuzz `kubemu check` (property-based, Hypothesis): any file ends in exit 0, or exit 2 with one line.

Inputs: random YAML documents built from the scenario and topology schemas' keys and
awkward scalars, anchors and aliases, deep nesting, long strings and binary junk; and
random mutations of the shipped scenarios (their topologies and manifests resolve, so
mutations reach the deep checks). The CLI runs in-process (click's CliRunner); a
traceback, a second line or another exit code fails the property. The number of
examples is bounded to keep the test well under a minute.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from emulator.cli import main
from emulator.config.loader import json_schemas

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[3]
ERROR_RE = re.compile(r"^error: /[^:\s]+(:\d+)?: \S")
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
MANIFESTS = sorted((ROOT / "scenarios" / "manifests").glob("*.yaml"))
# KUBEMU_FUZZ_EXAMPLES=2000 for a longer, randomly seeded search (CI runs the fixed 60).
EXAMPLES = int(os.environ.get("KUBEMU_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=60_000, database=None, derandomize="KUBEMU_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


def _schema_keys() -> list[str]:
    """Every property name of the scenario and topology JSON Schemas."""
    keys: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            keys.update(node.get("properties", {}))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(json_schemas())
    return sorted(keys)


KEYS = _schema_keys() + ["apiVersion", "kind", "metadata", "spec", "replicas", "namespace", "containers"]
AWKWARD = ["-f", "--help", "1e9", "-1", "0x10", ".inf", ".nan", "null", "~", "yes", "no", "on", "'", '"', "{", "[",
           "*x", "&x", "!!python/object:os.system", "!!binary AA==", "2023-13-45", "10.0.0.0/33", "pod/a/b/c",
           "http://a b/", "{clusterip:web}", "{pod:x}:80", "x" * 300, "a" * 63 + "." + "b" * 200, "\t", "é\u202e"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(AWKWARD), st.sampled_from(KEYS),
    st.text(max_size=40))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), inner, max_size=6)),
    max_leaves=40)


def _yaml_text(data: Any) -> str:
    """A document as YAML text (JSON is YAML 1.2 flow style)."""
    return json.dumps(data, allow_nan=True)


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    """`a0: &a0 [x, x, ...]`, `a1: &a1 [*a0, *a0, ...]`, ...: exponential once expanded."""
    width, depth = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


@st.composite
def deep_nesting(draw: st.DrawFn) -> str:
    """Flow or block nesting hundreds of levels deep."""
    depth = draw(st.integers(1, 600))
    style = draw(st.sampled_from(["list", "map", "block"]))
    if style == "list":
        return "steps: " + "[" * depth + "]" * depth + "\n"
    if style == "map":
        return "steps: " + "{a: " * depth + "1" + "}" * depth + "\n"
    return "".join("  " * i + "- \n" for i in range(depth))


SNIPPETS = ["name: x", "name: !!binary AA==", "name: !foo bar", "topology: !!set {a, b}", "steps: !!omap [a: 1]",
            "%YAML 1.1\n---", "---", "...", "<<: {steps: []}", "steps:\n  - <<: *nope", "? [a, b]\n: 1",
            "steps: &s [*s]", "topology: ../topologies/regional-3.yaml", "topology: /dev/zero", "topology: .",
            "manifests: [manifests/quickstart.yaml, /dev/null, /etc]", "steps: [{sleep: 1e9}]",
            "steps: [{scale: {deployment: web, replicas: -1}}]", "name: " + "9" * 5000, "a: 2023-13-45",
            "steps:\n  - traffic: {name: t, from: pod/client, ping: {host: '-f'}}", "\ufeffname: x", "\x00"]
raw_texts = st.one_of(
    documents.map(_yaml_text), alias_bombs(), deep_nesting(),
    st.lists(st.sampled_from(SNIPPETS), max_size=6).map("\n".join),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#%@` \n\t,?abc01")), max_size=200))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of scenarios/ and topologies/ so mutated scenarios find their files."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "scenarios", root / "scenarios")
    shutil.copytree(ROOT / "topologies", root / "topologies")
    return root


def _assert_clean_outcome(path: Path) -> None:
    """`kubemu check PATH`: exit 0 with a summary, or exit 2 with one `error: FILE[:LINE]: ...` line."""
    result = CliRunner().invoke(main, ["check", str(path)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception    # a traceback: the property fails with it
    err = result.stderr.strip()
    assert result.exit_code in (0, 2), (result.exit_code, err)
    if result.exit_code == 0:
        assert ": ok: " in result.stdout and not err
    else:
        # The file named may be one the scenario refers to (a manifest, a topology).
        assert len(err.splitlines()) == 1 and ERROR_RE.match(err), err


@FUZZ
@given(text=raw_texts)
def test_random_documents(workdir: Path, text: str) -> None:
    path = workdir / "scenarios" / "fuzz-doc.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _assert_clean_outcome(path)


def _mutate(draw: st.DrawFn, lines: list[str]) -> str:
    """`lines` with a few deleted, duplicated, cut, inserted, or with a value replaced."""
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "value", "cut", "insert"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        elif op == "insert":
            lines.insert(i, draw(st.text(alphabet=st.sampled_from(list(":-[]{}&* abc12")), max_size=20)))
        elif ":" in lines[i]:
            value = draw(st.one_of(st.sampled_from(AWKWARD), scalars.map(_yaml_text)))
            lines[i] = lines[i].split(":", 1)[0] + ": " + value
    return "\n".join(lines) + "\n"


@st.composite
def mutated_scenarios(draw: st.DrawFn) -> str:
    """A shipped scenario, mutated."""
    return _mutate(draw, draw(st.sampled_from(SCENARIOS)).read_text(encoding="utf-8").splitlines())


@st.composite
def mutated_manifests(draw: st.DrawFn) -> str:
    """A shipped manifest file, mutated."""
    return _mutate(draw, draw(st.sampled_from(MANIFESTS)).read_text(encoding="utf-8").splitlines())


@FUZZ
@given(text=mutated_scenarios())
def test_mutated_scenarios(workdir: Path, text: str) -> None:
    path = workdir / "scenarios" / "fuzz-mutant.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _assert_clean_outcome(path)


@FUZZ
@given(text=mutated_manifests())
def test_mutated_manifests(workdir: Path, text: str) -> None:
    """A scenario whose only manifest file is a mutated shipped one."""
    (workdir / "scenarios" / "manifests" / "fuzz-objects.yaml").write_text(text, encoding="utf-8")
    path = workdir / "scenarios" / "fuzz-manifest-user.yaml"
    path.write_text("name: fuzz\ntopology: ../topologies/regional-3-lb.yaml\n"
                    "manifests: [manifests/fuzz-objects.yaml]\n", encoding="utf-8")
    _assert_clean_outcome(path)


def test_shipped_scenarios_pass(workdir: Path) -> None:
    """The unmutated scenarios are fine (so mutations start from valid files)."""
    for path in SCENARIOS:
        _assert_clean_outcome(workdir / "scenarios" / path.name)
