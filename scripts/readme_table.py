"""The generated table of leaderboards/README.md: the one place that knows its markers.

    reidbench leaderboard --results leaderboards/synthreid --format compact | python3 scripts/readme_table.py

rewrites the table between the markers (scripts/regenerate-leaderboard.sh runs it);
tests/test_docs.py reads it back with :func:`table_in` and compares it with the records' table."""

from __future__ import annotations

import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "leaderboards" / "README.md"
START = "<!-- generated: reidbench leaderboard --results synthreid --format compact -->\n"
END = "<!-- end of the generated table -->"


def _split(text: str) -> tuple[str, str, str]:
    """(before the table, the table, from the end marker on)."""
    if START not in text or END not in text.split(START, 1)[1]:
        raise ValueError(f"{PAGE} has lost the markers of its generated table: put them back around the "
                         f"table ({START.strip()} ... {END})")
    head, rest = text.split(START, 1)
    table, tail = rest.split(END, 1)
    return head, table, END + tail


def table_in(text: str) -> str:
    return _split(text)[1]


def with_table(text: str, table: str) -> str:
    head, _, tail = _split(text)
    return head + START + table + tail


if __name__ == "__main__":
    try:
        PAGE.write_text(with_table(PAGE.read_text(), sys.stdin.read()))
    except ValueError as e:
        sys.exit(str(e))
    print(f"wrote the table of {PAGE}")
