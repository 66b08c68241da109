#!/usr/bin/env bash
# Regenerate leaderboards/synthreid: run (or resume) the matrix, then write the tables from the records.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=leaderboards/synthreid
# SKIP_MATRIX=1: the records are there (computed elsewhere, e.g. over several sittings pinned at one commit
# as scripts/board-in-progress.sh did for the committed board: `git show 1894c57:scripts/board-in-progress.sh`)
[ -n "${SKIP_MATRIX:-}" ] || reidbench matrix --models baseline,pd,jad,at-lta,goat,goat-ft --attacks all --results "$OUT" "$@"
# a model card per row, from the store's checkpoint whose SHA-256 the row's records name (before the site,
# which shows them); where the store does not hold the board's checkpoints, the committed cards stay
if rows=$(python3 scripts/board_checkpoints.py "$OUT"); then
  rm -rf "$OUT/cards"
  while IFS=$'\t' read -r model defense ckpt; do
    reidbench card --checkpoint "$ckpt" --results "$OUT" --model "$model" --defense "$defense" \
      --by "${CARD_BY:-reidbench maintainers (scripts/regenerate-leaderboard.sh)}"
  done <<< "$rows"
else
  echo "the board's checkpoints are not all in the store: its model cards are left as they are" >&2
fi
for fmt in md csv html; do
  reidbench leaderboard --results "$OUT" --format "$fmt" --title "reidbench leaderboard: synthreid" --out "$OUT/board.$fmt"
done
reidbench leaderboard --results "$OUT" --format md --rerank --title "reidbench leaderboard: synthreid, re-ranked" \
  --out "$OUT/board-rerank.md"
# the static site: sortable board, rules and flags, a page per row (cards, per-attack numbers, figures)
reidbench leaderboard --results "$OUT" --format site --title "reidbench leaderboard: synthreid" --out "$OUT/site"
# the narrow table of leaderboards/README.md, between its markers (tests/test_docs.py checks it against the records)
reidbench leaderboard --results "$OUT" --format compact | python3 scripts/readme_table.py
