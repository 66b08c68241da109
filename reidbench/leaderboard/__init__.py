"""Leaderboards from matrix records alone: records -> pandas DataFrame -> CSV / Markdown / HTML.

One row per (dataset, model, test-time defense); columns: clean, every attack (R1 and mAP; the
adaptive twin beside the oblivious number), the per-query worst case over every attack the row
faced, and flags where the evaluation is suspect. With several seeds, the mean (and the standard
deviation in the text formats)."""

from .tables import (FLAG_HELP, attack_title, build_leaderboard, load_records, render, render_csv, render_html,
                     render_markdown, worst_case)

__all__ = ["load_records", "build_leaderboard", "worst_case", "render", "render_csv", "render_markdown",
           "render_html", "attack_title", "FLAG_HELP"]
