#!/usr/bin/env bash
# Regenerate leaderboards/synthreid: run (or resume) the matrix, then write the tables from the records.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=leaderboards/synthreid
# SKIP_MATRIX=1: the records are there (computed elsewhere: scripts/board-in-progress.sh publish)
[ -n "${SKIP_MATRIX:-}" ] || reidbench matrix --models baseline,pd,jad,at-lta,goat,goat-ft --attacks all --results "$OUT" "$@"
for fmt in md csv html; do
  reidbench leaderboard --results "$OUT" --format "$fmt" --title "reidbench leaderboard: synthreid" --out "$OUT/board.$fmt"
done
reidbench leaderboard --results "$OUT" --format md --rerank --title "reidbench leaderboard: synthreid, re-ranked" \
  --out "$OUT/board-rerank.md"
# the static site: sortable board, rules and flags, a page per row (cards, per-attack numbers, figures)
reidbench leaderboard --results "$OUT" --format site --title "reidbench leaderboard: synthreid" --out "$OUT/site"
# the narrow table of leaderboards/README.md, between its markers (tests/test_docs.py checks it against the records)
reidbench leaderboard --results "$OUT" --format compact | python3 scripts/readme_table.py
