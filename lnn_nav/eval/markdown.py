"""Markdown pieces shared by the report sections (a leaf: it imports nothing of lnn_nav)."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub markdown table; the first ``left`` columns (names) left-aligned, the numbers right-aligned."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([" --- "] * left + [" ---: "] * (len(header) - left)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def number_or_dash(x: float | None, fmt: str) -> str:
    """``x`` formatted with ``fmt``, or an en dash where there is no value (older results)."""
    return "–" if x is None else format(x, fmt)
