"""The one Markdown table writer behind every generated table (latency, compare, transfer,
parity catalog, keras-seed, parity-time).

In ``zoo`` because the converters (parity catalog) and the benchmarks both write tables.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
             cell: Callable[[Any], str] = str) -> str:
    """A GitHub Markdown table ending in a newline; ``cell`` turns each value into its text."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
