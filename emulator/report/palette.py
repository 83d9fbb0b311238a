"""What every figure of the report shares: resolution and colors."""
from __future__ import annotations

from matplotlib import colormaps

DPI = 110


def colors(n: int) -> list:
    """n distinct colors (tab10, then tab20 for more)."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]
