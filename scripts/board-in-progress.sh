#!/usr/bin/env bash
# The committed synthreid board takes longer to regenerate than one sitting of a 2-core machine (the
# `auto` cells and GOAT's training on EfficientNet-Lite0 take hours), and the machines that run it are
# not the same from one sitting to the next. This script carries the regeneration over:
#
#   scripts/board-in-progress.sh run    # resume it: the pinned code, its trained models and its records
#   scripts/board-in-progress.sh save   # copy what it has finished into leaderboards/synthreid-next/
#   scripts/board-in-progress.sh publish  # once complete: records, cards, figures, tables, site into
#                                         # leaderboards/synthreid/ (with the current code)
#
# leaderboards/synthreid-next/ holds the run in progress: PIN (the commit whose code computes every
# cell, so that the board's records share one source fingerprint), records/ (finished cells),
# partial/ (the query batches of a cell cut off mid-way) and store/ (the trained checkpoints and the
# fitted DMR generator: training on another CPU gives other weights, and the records name their
# checkpoint by SHA-256) and data/ (the generated synthreid files: their fingerprint is in every key,
# and another CPU's floating point could generate other files), and COMPLETE once every cell of the
# board has its record. `publish` then writes the board from those records with the current code
# (its tables, site, cards and figures read records; they compute no cell).
#
# Leave REIDBENCH_HOME unset: the transfer (DMR) cells' keys hold the generator's path in the store
# (a defect of the pinned code), so every sitting must use the same store path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NEXT="$ROOT/leaderboards/synthreid-next"
WORK="${BOARD_WORK:-/tmp/reidbench-board}"
export REIDBENCH_HOME="${REIDBENCH_HOME:-/tmp/rbhome3}"  # the store path of the first sitting (see above)
STORE="$REIDBENCH_HOME/checkpoints"
RESULTS="$WORK/results"
PIN="$(cat "$NEXT/PIN")"

case "${1:-}" in
run)
  if [ ! -d "$WORK/src" ]; then
    git -C "$ROOT" worktree prune  # a worktree of an earlier sitting whose folder is gone
    git -C "$ROOT" worktree add --detach "$WORK/src" "$PIN"
  fi
  [ "$(git -C "$WORK/src" rev-parse HEAD)" = "$PIN" ] || { echo "$WORK/src is not at $PIN" >&2; exit 1; }
  mkdir -p "$STORE" "$RESULTS/records"
  [ -d "$NEXT/store" ] && cp -rn "$NEXT/store/." "$STORE/"
  [ -d "$NEXT/data" ] && mkdir -p "$REIDBENCH_HOME/data" && cp -rn "$NEXT/data/." "$REIDBENCH_HOME/data/"
  for d in records partial; do [ -d "$NEXT/$d" ] && cp -rn "$NEXT/$d" "$RESULTS/"; done
  cd "$WORK/src"
  export PYTHONPATH="$WORK/src"
  python3 -c 'import reidbench, sys; sys.exit(0 if reidbench.__file__.startswith(sys.argv[1]) else
              f"reidbench is imported from {reidbench.__file__}, not the pinned tree {sys.argv[1]}")' "$WORK/src"
  echo "== $(date -u +%FT%TZ) board at $PIN: $(ls "$RESULTS/records" | wc -l) records so far"
  # README's first command (its cells are the board's), then the whole board
  python3 -m reidbench.cli matrix --models baseline,jad --attacks all --results "$RESULTS"
  python3 -m reidbench.cli matrix --models baseline,pd,jad,at-lta,goat,goat-ft --attacks all --results "$RESULTS"
  echo "$PIN" > "$RESULTS/COMPLETE"
  echo "== $(date -u +%FT%TZ) board complete"
  ;;
save)
  mkdir -p "$NEXT/records" "$NEXT/store"
  cp -u "$RESULTS"/records/*.json "$NEXT/records/" 2>/dev/null || true
  rm -rf "$NEXT/partial"
  if [ -d "$RESULTS/partial" ]; then
    # only the batches of cells that have no record yet
    for cell in "$RESULTS"/partial/*/; do
      [ -d "$cell" ] || continue
      ls "$RESULTS/records/"*"__$(basename "$cell" | cut -c1-16).json" >/dev/null 2>&1 && continue
      mkdir -p "$NEXT/partial" && cp -r "$cell" "$NEXT/partial/"
    done
  fi
  # finished trainings (model.pt and its sidecars) and fitted generators; not the optimiser states
  (cd "$STORE" && find . -name model.pt -o -name model.json -o -name config.json -o -name 'generator.*') |
    while read -r f; do
      dir="$(dirname "$f")"
      [ -f "$STORE/$dir/model.pt" ] || [ -f "$STORE/$dir/generator.pt" ] || continue
      mkdir -p "$NEXT/store/$dir" && cp -u "$STORE/$f" "$NEXT/store/$f"
    done
  for d in "$REIDBENCH_HOME"/data/synthreid-default-*; do
    [ -d "$d" ] && [ ! -d "$NEXT/data/$(basename "$d")" ] && mkdir -p "$NEXT/data" && cp -r "$d" "$NEXT/data/"
  done
  [ -f "$RESULTS/COMPLETE" ] && cp "$RESULTS/COMPLETE" "$NEXT/COMPLETE"
  echo "saved $(ls "$NEXT/records" | wc -l) records, $(find "$NEXT/partial" -name '*.pt' 2>/dev/null | wc -l) partial batches and $(find "$NEXT/store" -name model.pt | wc -l) checkpoints into $NEXT"
  ;;
publish)
  [ "$(cat "$NEXT/COMPLETE" 2>/dev/null)" = "$PIN" ] ||
    { echo "the board run is not complete ($NEXT/COMPLETE is written by 'run' then 'save'): resume it with '$0 run'" >&2; exit 1; }
  OUT="$ROOT/leaderboards/synthreid"
  cd "$ROOT"
  python3 -c 'import reidbench, sys; sys.exit(0 if reidbench.__file__.startswith(sys.argv[1]) else
              f"reidbench is imported from {reidbench.__file__}, not this checkout {sys.argv[1]}: pip install -e .")' "$ROOT"
  [ -d "$NEXT/store" ] && mkdir -p "$STORE" && cp -rn "$NEXT/store/." "$STORE/"
  rm -rf "$OUT/records" "$OUT/cards"
  cp -r "$NEXT/records" "$OUT/records"
  # a card per row, from the checkpoint whose SHA-256 the row's records name
  python3 scripts/board_checkpoints.py "$STORE" "$OUT" | while IFS=$'\t' read -r model defense ckpt; do
    reidbench card --checkpoint "$ckpt" --results "$OUT" --model "$model" --defense "$defense" \
      --by "reidbench maintainers (scripts/board-in-progress.sh, 2-core CPU)"
  done
  scripts/board-figures.sh
  SKIP_MATRIX=1 scripts/regenerate-leaderboard.sh
  echo "published into $OUT: check leaderboards/README.md, then 'git rm -r leaderboards/synthreid-next'"
  ;;
*)
  echo "usage: $0 run|save|publish" >&2
  exit 2
  ;;
esac
