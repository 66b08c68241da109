#!/usr/bin/env bash
# Figures of the committed synthreid board, embedded by leaderboards/README.md. Run after
# scripts/regenerate-leaderboard.sh on the same machine: the heat-map comes from the records alone,
# the ranked lists and the perturbation panel need the board's checkpoints (checked against the
# SHA-256 the records name).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=leaderboards/synthreid
ckpt() {  # the store's checkpoint of model $1 whose SHA-256 the board's records name
  python3 "$(dirname "$0")/board_checkpoints.py" "$OUT" "$1"
}
time reidbench viz heatmap --results "$OUT" --out "$OUT/heatmap.png" --title "synthreid: robust mAP, eps 5/255 (DMR 16/255)"
base=$(ckpt baseline)
jad=$(ckpt jad)
time reidbench viz ranks --checkpoint "$base" --attack lta --attack sma --queries 0,120,240 --out "$OUT/ranks-baseline.png" \
  --title "baseline: clean, LTA and SMA (eps 5/255)"
time reidbench viz ranks --checkpoint "$jad" --defense cs --attack lta --queries 0,120,240 --out "$OUT/ranks-jad.png" \
  --title "JAD (PD + CS): clean and LTA oblivious of CS"
time reidbench viz perturbation --checkpoint "$base" --attack lta --queries 0,120 --out "$OUT/perturbation-lta.png"
