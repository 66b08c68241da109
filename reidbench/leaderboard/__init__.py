"""Leaderboards from matrix records alone: records -> pandas DataFrame -> CSV / Markdown / HTML, or
a static site (:mod:`.site`); model cards per row (:mod:`.cards`); several record sets merged into
one board and checked before they join (:mod:`.merge`).

One row per (dataset, model, test-time defense); columns: clean, every attack (R1 and mAP; the
adaptive twin beside the oblivious number), the per-query worst case over every attack the row
faced, and flags where the evaluation is suspect. With several seeds, the mean (and the standard
deviation in the text formats)."""

from .cards import ModelCard, card_from_checkpoint, read_cards, write_card
from .merge import SubmissionError, load_board_records, validate_submission
from .site import write_site
from .tables import (FLAG_HELP, attack_title, build_leaderboard, load_records, render, render_csv, render_html,
                     render_markdown, worst_case)

__all__ = ["load_records", "build_leaderboard", "worst_case", "render", "render_csv", "render_markdown",
           "render_html", "attack_title", "FLAG_HELP", "write_site", "ModelCard", "card_from_checkpoint", "read_cards",
           "write_card", "load_board_records", "validate_submission", "SubmissionError"]
