"""Markdown pipe tables, as every results file here writes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def pipe_table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """Lines of a markdown table; ``align`` gives each column's rule (default ``---``)."""
    rules = align.split() if align else ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rules) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
