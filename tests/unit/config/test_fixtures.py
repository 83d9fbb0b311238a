"""Every fixture file: good ones load, bad ones fail with the exact file, line, field and message.

A bad fixture states its expected error on its first line:
`# expect: FILE:LINE: FIELD: MESSAGE-START` (FILE relative to the fixture, FIELD `-` for none).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from emulator.config import check
from emulator.errors import ConfigError

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures"
EXPECT_RE = re.compile(r"^# expect: (?P<file>[^:]+):(?P<line>\d+): (?P<field>\S+): (?P<message>.+)$")
BAD = sorted(p for p in (FIXTURES / "bad").glob("*.yaml"))
GOOD = sorted(p for p in (FIXTURES / "good").glob("*.yaml"))


def _expectation(path: Path) -> dict[str, str]:
    """The `# expect:` line of a bad fixture."""
    m = EXPECT_RE.match(path.read_text(encoding="utf-8").splitlines()[0])
    assert m, f"{path} has no '# expect: FILE:LINE: FIELD: MESSAGE' first line"
    return m.groupdict()


WARNS_RE = re.compile(r"^# warns: (?P<file>[^:]+):(?P<line>\d+): (?P<rest>.+)$")


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_fixture_loads(path: Path) -> None:
    """A good fixture passes `check` with an 'ok' summary; `# warns:` states its one warning line."""
    summary, *warnings = check(path).split("\n")
    assert ": ok: " in summary
    m = WARNS_RE.match(path.read_text(encoding="utf-8").splitlines()[0])
    if not m:
        assert warnings == []
        return
    file = os.path.normpath(os.path.join(path.parent, m["file"]))
    assert len(warnings) == 1 and warnings[0].startswith(f"{file}:{m['line']}: {m['rest']}"), warnings


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_fixture_names_file_line_field(path: Path) -> None:
    """A bad fixture raises one ConfigError with the expected file, line, field and message."""
    want = _expectation(path)
    with pytest.raises(ConfigError) as info:
        check(path)
    err = info.value
    file = os.path.normpath(os.path.join(path.parent, want["file"]))
    field = None if want["field"] == "-" else want["field"]
    assert (os.path.normpath(err.file), err.line, err.field) == (file, int(want["line"]), field), str(err)
    assert err.message.startswith(want["message"]), str(err)
    where = f"{err.file}:{want['line']}: " + (f"{field}: " if field else "")
    assert str(err) == where + err.message
    assert "\n" not in str(err)
