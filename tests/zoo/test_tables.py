"""The one Markdown table writer."""
from __future__ import annotations

from zoo.tables import md_table


def test_md_table_writes_header_rule_and_rows_with_the_cell_format():
    assert md_table(("a", "b"), [(1, "x"), (2.5, "")]) == (
        "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 |  |\n")
    assert md_table(("v",), [(0.123456,)], cell=lambda v: f"{v:.2f}") == (
        "| v |\n|---|\n| 0.12 |\n")
    assert md_table(("a",), []) == "| a |\n|---|\n"
