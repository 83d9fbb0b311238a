"""Markdown pieces shared by the report's sections: escaped cells and tables."""
from __future__ import annotations

from typing import Any, Sequence


def esc(x: Any) -> str:
    """A table cell: `|` escaped, newlines as spaces."""
    return str(x).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> list[str]:
    """A markdown table's lines; columns in `right` are right-aligned."""
    align = ["---:" if i in right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return lines
