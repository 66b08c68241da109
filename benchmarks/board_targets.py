"""Issue 18's targets read from a board's records (no attack is run): per row of the board,

* ``auto``'s per-query worst case over its components against the per-query worst case over every
  other gradient attack of the row under the same threat (white-box on a model without test-time
  defense, adaptive through one; SMA, LTA, M-IFGSM, FNA, ODFA) -- ``auto`` holds when it is at or
  below it in R1 and in mAP -- and against each of those attacks alone; where it does not hold, the
  excess is given with whether it lies inside the records' precision (each query's AP is kept to 4
  decimals, so a mean over queries is exact to 0.005 points of mAP: a smaller excess is a tie the
  records cannot resolve, reported as such and not counted as holding);
* the cell's own ``unconverged`` self-check: ``auto`` on its fixed subset of queries against ``auto``
  with 4x the iterations on the same subset -- converged when within 1 point;
* the attack seconds of the ``auto`` cell over those of the SMA cell (15 steps, same queries, same
  threat), as recorded: the cells ran one after another on the same machine, but not necessarily
  under the same load, which the record does not know (benchmarks/auto_targets.py measures the ratio
  in one run).

    python benchmarks/board_targets.py --results leaderboards/synthreid [--json out.json]

``benchmarks/auto_targets.py`` measures the same from a checkpoint, running every attack itself.
"""

from __future__ import annotations

import argparse
import json
import sys

from reidbench.leaderboard.tables import ADAPTIVE, WHITE_BOX, records_frame, worst_case
from reidbench.matrix import iter_records
from reidbench.matrix.runner import PER_QUERY_AP_DIGITS
from reidbench.registry import parse_attack

OTHERS = ("sma", "lta", "mifgsm", "fna", "odfa")  # the library's gradient attacks besides auto
MAP_RESOLUTION = 100 * 0.5 * 10.0 ** -PER_QUERY_AP_DIGITS  # points of mAP: the rounding of the records' per-query APs


def row_targets(records: list) -> list[dict]:
    df = records_frame(records)
    df = df[df["threat"].isin([WHITE_BOX, ADAPTIVE])].copy()  # not clean, oblivious or transfer cells
    df["name"] = [parse_attack(a).name for a in df["attack"]]  # aliases and arguments resolved by the registry
    auto_name, sma_name = parse_attack("auto").name, parse_attack("sma").name
    other_names = [parse_attack(n).name for n in OTHERS]
    seconds = {r.key: r.provenance.get("attack_seconds") for r in records}
    checks = {r.key: r.checks for r in records}
    out = []
    for (dataset, model, defense), g in df.groupby(["dataset", "model", "defense"], sort=False):
        auto, others = g[g["name"] == auto_name], g[g["name"].isin(other_names)]
        if auto.empty:
            continue
        for threat, a in auto.groupby("threat"):
            o = others[others["threat"] == threat]
            a_r1, a_map = worst_case(a)
            row = {"dataset": dataset, "model": model, "defense": defense, "threat": threat,
                   "auto": [round(a_r1, 3), round(a_map, 3)],
                   "others": sorted(o["name"]), "others_worst": None, "holds": None}
            if not o.empty:
                o_r1, o_map = worst_case(o)
                row["others_worst"] = [round(o_r1, 3), round(o_map, 3)]
                row["holds"] = bool(a_r1 <= o_r1 and a_map <= o_map)
                if not row["holds"]:  # R1 counts whole queries (no rounding): only an mAP excess can be a tie
                    row["excess"] = {"R1": round(max(0.0, a_r1 - o_r1), 3), "mAP": round(max(0.0, a_map - o_map), 3),
                                     "within_precision": bool(a_r1 <= o_r1 and a_map - o_map <= MAP_RESOLUTION)}
                each = [worst_case(o[o["name"] == n]) for n in sorted(set(o["name"]))]
                row["below_each"] = bool(all(a_r1 <= r1 and a_map <= m for r1, m in each))
            unconv = (checks[a["key"].iloc[0]] or {}).get("unconverged")
            if unconv:  # the target's "within 1 point" either way (the check itself fires on a drop only)
                gap = max(abs(unconv["R1"] - unconv["R1_check"]), abs(unconv["mAP"] - unconv["mAP_check"]))
                row["check_4x"] = {k: unconv[k] for k in ("queries", "steps", "steps_check", "R1", "R1_check",
                                                          "mAP", "mAP_check")}
                row["converged"] = bool(gap <= 1.0)
            sma = o[o["name"] == sma_name]
            s_auto = seconds[a["key"].iloc[0]]
            s_sma = seconds[sma["key"].iloc[0]] if len(sma) else None
            if s_auto and s_sma:
                row["seconds"] = {"auto": s_auto, "sma": s_sma, "ratio": round(s_auto / s_sma, 2)}
            out.append(row)
    return out


def _excess(e: dict) -> str:
    by = ", ".join(f"{e[k]:.3f} {k}" for k in ("R1", "mAP") if e[k] > 0)
    return f" by {by}" + (f", a tie inside the records' {MAP_RESOLUTION:.3f}-point precision" if e["within_precision"] else "")


def render(rows: list[dict]) -> str:
    lines = ["| row | threat | auto worst R1 / mAP | others' worst R1 / mAP | holds (each alone) | 4x check (subset) mAP | "
             "converged | auto / SMA seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ow = r["others_worst"]
        c = r.get("check_4x")
        s = r.get("seconds")
        lines.append(
            f"| {r['model']} / {r['defense']} | {r['threat']} | {r['auto'][0]:.2f} / {r['auto'][1]:.3f} | "
            + (f"{ow[0]:.2f} / {ow[1]:.3f} ({len(r['others'])} attacks)" if ow else "-") + " | "
            + {True: "yes", False: "**no**", None: "-"}[r["holds"]]
            + (_excess(r["excess"]) if r.get("excess") else "")
            + (f" ({'yes' if r['below_each'] else '**no**'})" if ow else "") + " | "
            + (f"{c['mAP']:.2f} -> {c['mAP_check']:.2f} ({c['steps']} -> {c['steps_check']} its, {c['queries']} q)"
               if c else "-") + " | "
            + ({True: "yes", False: "**no**"}[r["converged"]] if c else "-") + " | "
            + (f"{s['auto']:.0f} / {s['sma']:.0f} s = {s['ratio']:.1f}x" if s else "-") + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="a board's results folder (records/ inside)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    records = list(iter_records(args.results))
    if not records:
        print(f"no records under {args.results}", file=sys.stderr)
        return 2
    rows = row_targets(records)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
