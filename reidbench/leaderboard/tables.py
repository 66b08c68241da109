"""Records -> tables. Everything here reads records only (no model, no dataset)."""

from __future__ import annotations

import html
import os
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..matrix.records import METRIC_KEYS
from ..protocol import CLEAN, Threat
from ..registry import ATTACKS, DefenseSpec, UnknownNameError, format_eps, parse_defense
from .merge import load_board_records

__all__ = ["load_records", "records_frame", "build_leaderboard", "worst_case", "render", "render_csv", "render_markdown",
           "render_html", "render_compact", "attack_title", "FLAG_HELP"]

METRICS = METRIC_KEYS

FLAG_HELP = {
    "adaptive-weaker": "an adaptive attack left a higher mAP than its oblivious twin (more than 1 point): the "
                       "adaptive attack is broken or unconverged, so the row's robustness is overstated",
    "no-eot": "a randomised test-time defense was attacked adaptively without EOT (eot_samples <= 1)",
    "no-adaptive": "a test-time defense was evaluated against oblivious attacks only",
    "transfer-stronger": "a transfer attack beat every white-box/adaptive attack of the same budget "
                         "(a sign of gradient masking)",
    "no-effect": "a white-box or adaptive attack lowered mAP by less than 1 point (gradient masking or a bug)",
    "mixed-versions": "the row's records come from different reidbench versions",
    "mixed-code": "the row's records were computed by different source code (source fingerprints differ; for records "
                  "that predate fingerprints, git commits differ): rerun the matrix with one version of the code",
    "unconverged": "on a fixed subset of queries, the same attack with 4x the iterations lowered mAP by more than "
                   "1 point: the attack had not converged, so the cell overstates robustness",
    "zero-gradient": "more than 1 % of the queries had an all-zero input gradient at the attack's first step "
                     "(gradient masking, a saturated loss or a bug)",
    "randomised-no-eot": "two evaluations of the attacked model on the same input differed (a randomised defense, "
                         "detected) and the attack averaged no EOT samples",
}


def _entry(name: str):
    try:
        return ATTACKS.entry(name)
    except UnknownNameError:  # a plugin attack whose plugin is not loaded here: its name stands for it
        return None


def attack_title(text: str) -> str:
    """The column title of an attack spec: its class's ``title`` (``M-IFGSM``), the arguments kept."""
    name, _, args = text.partition("(")
    e = _entry(name)
    return (e.title if e is not None else name) + (f"({args}" if args else "")


def _attack_order(text: str) -> int:
    e = _entry(text.partition("(")[0])
    return int(e.attr("order", 100)) if e is not None else 100


def _randomised(defense: str) -> bool:
    try:
        return parse_defense(defense).randomised
    except UnknownNameError:  # a plugin defense whose plugin is not loaded here
        return False


def load_records(results: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per record: the cell, its metrics (``rr_``: re-ranked), the per-query arrays.
    ``results``: a results folder, or several merged into one board (:mod:`.merge`)."""
    recs = load_board_records(results)
    if not recs:
        where = results if isinstance(results, (str, os.PathLike)) else " ".join(map(str, results))
        raise ValueError(f"no records under {where}: run `reidbench matrix --results DIR` first")
    return records_frame(recs)


def records_frame(records) -> pd.DataFrame:
    """The :func:`load_records` table of records already loaded (:class:`~reidbench.matrix.Record`)."""
    rows = []
    for rec in records:
        cell, attack = rec.cell, rec.attack_text
        row = {"dataset": cell["dataset"], "model": cell["model"], "defense": cell["defense"],
               "attack": attack, "threat": rec.threat, "seed": int(cell["seed"]), "eps": rec.resolved_eps,
               "eot": rec.config.get("eot"), "deterministic": not _randomised(cell["defense"]),
               "version": rec.provenance.get("reidbench_version"), "git_sha": rec.provenance.get("git_sha"),
               "device_name": rec.provenance.get("device_name"), "key": rec.key, "n": rec.n_queries,
               "models_order": tuple(rec.config.get("matrix", {}).get("models", ())),
               "io": rec.config.get("io"), "ap_definition": rec.config.get("ap"),
               "source": rec.source, "checks_fired": rec.fired_checks}
        for k in METRICS:
            row[k] = rec.metrics[k]
            row[f"rr_{k}"] = (rec.metrics_rerank or {}).get(k, np.nan)
        row["r1_hits"], row["r1_hits_rerank"] = rec.hits(), rec.hits(rerank=True)
        row["ap"], row["ap_rerank"] = rec.ap(), rec.ap(rerank=True)
        row["components"], row["components_rerank"] = rec.component_results(), rec.component_results(rerank=True)
        rows.append(row)
    if not rows:
        raise ValueError("no records")
    return pd.DataFrame(rows)


def worst_case(cells: pd.DataFrame, rerank: bool = False) -> tuple[float, float]:
    """Per-query worst case over attack cells (same queries, same order) and the components of
    ensemble cells (``auto``): rank-1 counts for a query only if it is a hit under every attack; its
    AP is the minimum over attacks. Returns (R1, mAP) in percent over the queries with a true match
    (AP >= 0)."""
    hits_col = "r1_hits_rerank" if rerank else "r1_hits"
    ns = set(int(n) for n in cells["n"])
    if len(ns) != 1:
        raise ValueError(f"worst case over cells with different query counts {sorted(ns)}")
    all_hits, all_aps = list(cells[hits_col]), list(cells["ap_rerank" if rerank else "ap"])
    if "components" in cells:
        for comps in cells["components_rerank" if rerank else "components"]:
            for h, a in comps or ():
                all_hits.append(h)
                all_aps.append(a)
    hits = np.logical_and.reduce(np.stack(all_hits), axis=0)
    aps = np.stack(all_aps)
    if aps.shape[1] != len(hits):
        raise ValueError("the records hold no per-query APs for this metric")
    valid = (aps >= 0).all(0)
    r1 = 100.0 * hits[valid].mean() if valid.any() else float("nan")
    m_ap = 100.0 * aps[:, valid].min(0).mean() if valid.any() else float("nan")
    return float(r1), float(m_ap)


def _fmt_eps(eps: float | None) -> str:
    return "default" if eps is None else format_eps(eps)


ADAPTIVE, OBLIVIOUS = Threat.ADAPTIVE.value, Threat.OBLIVIOUS.value
TRANSFER, WHITE_BOX = Threat.TRANSFER.value, Threat.WHITE_BOX.value
NO_DEFENSE = DefenseSpec.NONE_TEXT


def _title(attack: str, eps: float | None, threat: str) -> str:
    t = f"{attack_title(attack)} {_fmt_eps(eps)}"
    return t + " adapt." if threat == ADAPTIVE else t


def _attack_sort_key(attack: str, eps: float | None, threat: str):
    return (eps if eps is not None else 0.0, _attack_order(attack), attack, threat == ADAPTIVE)


def build_leaderboard(df: pd.DataFrame, rerank: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The wide numeric table (one row per dataset / model / test-time defense) and its notes
    (column titles in order, the flags that fired, provenance summary)."""
    pre = "rr_" if rerank else ""
    order = next((o for o in df["models_order"] if o), ())
    model_rank = {m: i for i, m in enumerate(order)}
    attacked = df[df["attack"] != CLEAN]
    # white-box (no defense), oblivious (defended row) and transfer share a column; adaptive twins beside
    combos = sorted({(r.attack, r.eps, ADAPTIVE if r.threat == ADAPTIVE else "main")
                     for r in attacked.itertuples()}, key=lambda c: _attack_sort_key(*c))
    titles = [_title(*c) for c in combos]
    eps_levels = sorted({e for e in attacked["eps"] if e is not None and not pd.isna(e)})
    worst_titles = (["worst"] if len(eps_levels) <= 1 else [f"worst <= {_fmt_eps(e)}" for e in eps_levels])
    rows, fired = [], {}
    groups = df.groupby(["dataset", "model", "defense"], sort=False)
    keys = sorted(groups.groups, key=lambda k: (k[0], model_rank.get(k[1], len(model_rank)), k[1], k[2] != NO_DEFENSE, k[2]))
    for key in keys:
        g = groups.get_group(key)
        dataset, model, defense = key
        row: dict[str, Any] = {"dataset": dataset, "model": model, "defense": defense,
                               "seeds": int(g["seed"].nunique())}

        def put(title: str, sub: pd.DataFrame) -> None:
            for m in ("R1", "mAP"):
                vals = sub[pre + m].astype(float)
                row[f"{title} {m}"] = float(vals.mean()) if len(vals) else np.nan
                row[f"{title} {m} std"] = float(vals.std(ddof=0)) if len(vals) > 1 else 0.0

        put(CLEAN, g[g["attack"] == CLEAN])
        for combo, title in zip(combos, titles):
            a, e, t = combo
            threat_ok = g["threat"] == ADAPTIVE if t == ADAPTIVE else g["threat"] != ADAPTIVE
            sub = g[(g["attack"] == a) & threat_ok & (g["eps"].apply(lambda v: v == e))]
            if len(sub):
                put(title, sub)
        att = g[g["attack"] != CLEAN]
        for wt, level in zip(worst_titles, eps_levels or [None]):
            vals = []
            for _, gs in att.groupby("seed"):
                sel = gs if level is None else gs[gs["eps"].apply(lambda v: v is not None and v <= level + 1e-9)]
                if len(sel):
                    vals.append(worst_case(sel, rerank))
            for i, m in enumerate(("R1", "mAP")):
                row[f"{wt} {m}"] = float(np.mean([v[i] for v in vals])) if vals else np.nan
                row[f"{wt} {m} std"] = float(np.std([v[i] for v in vals])) if len(vals) > 1 else 0.0
        flags = _flags(g, pre)
        for f in flags:
            fired[f] = FLAG_HELP.get(f, f)
        row["flags"] = ",".join(flags)
        rows.append(row)
    # ranked like RobustBench: per dataset, the most robust row first -- by the worst case over every
    # attack (auto's components included) at the first budget, mAP then R1; rows without attacks last
    head = worst_titles[0]

    def rank(r: dict) -> tuple:
        m, r1 = r.get(f"{head} mAP", np.nan), r.get(f"{head} R1", np.nan)
        missing = m is None or pd.isna(m)
        return (r["dataset"], missing, 0.0 if missing else -m, 0.0 if missing else -r1)

    rows.sort(key=rank)  # stable: ties keep the models' order
    codes = sorted(set(_code_identity(df))) if "source" in df else []
    if len(codes) > 1:  # the board as a whole mixes code, even where each row is of one piece
        fired["mixed-code"] = (FLAG_HELP["mixed-code"].replace("the row's records", "the board's records")
                               + f" ({len(codes)} versions of the code: {', '.join(c[:16] for c in codes)})")
    wide = pd.DataFrame(rows)
    columns = [{"title": CLEAN, "kind": CLEAN, "eps": None, "threat": "any"}]
    for (a, e, t), title in zip(combos, titles):
        threats = set(attacked[(attacked["attack"] == a) & attacked["eps"].apply(lambda v: v == e)]["threat"])
        kind = ADAPTIVE if t == ADAPTIVE else (TRANSFER if threats == {TRANSFER} else WHITE_BOX)
        columns.append({"title": title, "kind": "attack", "attack": a, "eps": e, "threat": kind})
    columns += [{"title": wt, "kind": "worst", "eps": level, "threat": "any"}
                for wt, level in zip(worst_titles, eps_levels or [None])]
    notes = {"titles": [CLEAN, *titles, *worst_titles], "columns": columns, "flags": fired, "rerank": rerank, "ranked_by": head,
             "sources": sorted({str(v) for v in df["source"] if v}) if "source" in df else [],
             "versions": sorted({str(v) for v in df["version"]}),
             "git_shas": sorted({str(v) for v in df["git_sha"] if v}),
             "devices": sorted({str(v) for v in df["device_name"] if v}),
             "seeds": sorted(int(s) for s in df["seed"].unique()),
             "queries": sorted({int(n) for n in df["n"]})}
    return wide, notes


def _code_identity(g: pd.DataFrame) -> pd.Series:
    """Which code computed each record: its source fingerprint; for a record written before
    fingerprints existed, its git commit (else unknown)."""
    git = g["git_sha"].map(lambda s: f"git:{s}" if s else "unknown")
    return g["source"].where(g["source"].notna(), git)


def _flags(g: pd.DataFrame, pre: str) -> list[str]:
    flags = []
    clean = g[g["attack"] == CLEAN][pre + "mAP"].mean()
    att = g[g["attack"] != CLEAN]
    by = att.groupby(["attack", "eps", "seed"], dropna=False)
    for (_, _, _), sub in by:
        obl, ada = sub[sub["threat"] == OBLIVIOUS], sub[sub["threat"] == ADAPTIVE]
        if len(obl) and len(ada) and float(ada[pre + "mAP"].iloc[0]) > float(obl[pre + "mAP"].iloc[0]) + 1.0:
            flags.append("adaptive-weaker")
    has_defense = bool((g["defense"] != NO_DEFENSE).any())
    ada = att[att["threat"] == ADAPTIVE]
    if has_defense and len(att[att["threat"] == OBLIVIOUS]) and not len(ada):
        flags.append("no-adaptive")
    if has_defense and len(ada) and not bool(g["deterministic"].all()):
        if any(e is None or pd.isna(e) or int(e) <= 1 for e in ada["eot"]):
            flags.append("no-eot")
    wb = att[att["threat"].isin([WHITE_BOX, ADAPTIVE])]
    for r in att[att["threat"] == TRANSFER].itertuples():
        same = wb[(wb["eps"].apply(lambda v: v == r.eps)) & (wb["seed"] == r.seed)]
        if len(same) and getattr(r, pre + "mAP") < float(same[pre + "mAP"].min()) - 1.0:
            flags.append("transfer-stronger")
    if not pd.isna(clean) and len(wb) and bool((wb[pre + "mAP"] >= clean - 1.0).any()):
        flags.append("no-effect")
    if g["version"].nunique() > 1:
        flags.append("mixed-versions")
    if "source" in g and _code_identity(g).nunique() > 1:
        flags.append("mixed-code")
    if "checks_fired" in g:
        from ..checks import CHECK_FLAGS

        for fired in g["checks_fired"]:
            flags.extend(CHECK_FLAGS.get(name, name) for name in fired or ())
    return list(dict.fromkeys(flags))


def _cell_text(row: pd.Series, title: str, seeds: int) -> str:
    r1, m = row.get(f"{title} R1"), row.get(f"{title} mAP")
    if r1 is None or pd.isna(r1):
        return "-"
    if seeds > 1:
        return (f"{r1:.1f}±{row.get(f'{title} R1 std', 0.0):.1f} / {m:.1f}±{row.get(f'{title} mAP std', 0.0):.1f}")
    mtxt = "-" if pd.isna(m) else f"{m:.1f}"
    return f"{r1:.1f} / {mtxt}"


def _display(wide: pd.DataFrame, notes: dict[str, Any]) -> pd.DataFrame:
    multi_ds = wide["dataset"].nunique() > 1
    out = []
    for _, row in wide.iterrows():
        d: dict[str, Any] = {}
        if multi_ds:
            d["dataset"] = row["dataset"]
        d["model"] = row["model"]
        d["test-time defense"] = row["defense"]
        for t in notes["titles"]:
            d[t] = _cell_text(row, t, int(row["seeds"]))
        d["flags"] = row["flags"] or ""
        out.append(d)
    return pd.DataFrame(out)


def _footnotes(notes: dict[str, Any]) -> list[str]:
    lines = [
        "Cells: R1 / mAP in percent" + (" after k-reciprocal re-ranking" if notes["rerank"] else "")
        + "; every query attacked, gallery clean; eps in 0-255 pixel units.",
        "Threats: a model without test-time defense is attacked white-box; with one, 'NAME eps' is the attack "
        "oblivious of the defense and 'NAME eps adapt.' the adaptive attack through it (differentiable twin or BPDA, "
        "EOT for randomised defenses); DMR is a transfer attack fitted once on the surrogate.",
        "worst: per query, the worst outcome over every attack of the row and every component of auto (rank-1 only "
        "if every attack missed; AP the minimum)" + (" -- per budget, over the attacks of at most that budget" if len(
            [t for t in notes["titles"] if t.startswith("worst")]) > 1 else "") + "."
        + (f" Rows are ranked by '{notes['ranked_by']}' mAP (most robust first)." if notes.get("ranked_by") else ""),
    ]
    if any(t.startswith(f"{attack_title('auto')} ") for t in notes["titles"]):
        from ..attacks.auto import AUTO_VERSION

        lines.append(f"auto ({AUTO_VERSION}): APGD with a self-distance, a rank-1 margin and an AP loss, 100 iterations "
                     "each; per query the component's image that ranks worst in the attacker's view (docs/leaderboard.md).")
    for f, text in notes["flags"].items():
        lines.append(f"flag {f}: {text}.")
    lines.append(f"seeds: {', '.join(map(str, notes['seeds']))}; queries: {', '.join(map(str, notes['queries']))}; "
                 f"reidbench {', '.join(notes['versions'])}"
                 + (f" (git {', '.join(s[:12] for s in notes['git_shas'])})" if notes["git_shas"] else "")
                 + (f"; source {', '.join(notes['sources'])}" if notes.get("sources") else "")
                 + (f"; device: {', '.join(notes['devices'])}" if notes["devices"] else "") + ".")
    return lines


def render_markdown(wide: pd.DataFrame, notes: dict[str, Any], title: str | None = None) -> str:
    disp = _display(wide, notes)
    parts = []
    if title:
        parts.append(f"# {title}\n")
    parts.append(disp.to_markdown(index=False, disable_numparse=True))
    parts.append("")
    parts.extend(f"- {line}" for line in _footnotes(notes))
    return "\n".join(parts) + "\n"


def render_compact(wide: pd.DataFrame, notes: dict[str, Any]) -> str:
    """The board as a narrow Markdown table for a README or a paper: one column per attack and budget
    (no separate adaptive columns), a defended row split into its oblivious line (clean, the attacks
    oblivious of the defense, transfer) and its adaptive line (the adaptive twins in the same columns,
    the row's worst case and flags), then what each fired flag means. The same numbers as
    :func:`render_markdown`, rows in its order; its footnotes (threats, seeds, code) are left to the page."""
    cols = [c for c in notes["columns"] if c["kind"] != "worst" and c["threat"] != ADAPTIVE]
    worst = [c["title"] for c in notes["columns"] if c["kind"] == "worst"]
    twin = {_title(c["attack"], c["eps"], "main"): c["title"] for c in notes["columns"] if c["threat"] == ADAPTIVE}
    multi_ds = wide["dataset"].nunique() > 1
    lines = []
    for _, row in wide.iterrows():
        seeds = int(row["seeds"])
        name = (f"{row['dataset']}: " if multi_ds else "") + row["model"]
        if row["defense"] != NO_DEFENSE:
            name += f" + {row['defense']}"
        adaptive = {t: v for t, a in twin.items() if (v := _cell_text(row, a, seeds)) != "-"}
        cells = [_cell_text(row, c["title"], seeds) for c in cols]
        tail = [_cell_text(row, w, seeds) for w in worst] + [(row["flags"] or "").replace(",", ", ")]
        if adaptive:
            lines.append([f"{name}, oblivious", *cells, *([""] * len(tail))])
            lines.append([f"{name}, adaptive", "", *(adaptive.get(c["title"], "") for c in cols[1:]), *tail])
        else:
            lines.append([name, *cells, *tail])
    head = ["model", *(c["title"] for c in cols), *worst, "flags"]
    table = [f"| {' | '.join(head)} |", f"|{'---|' * len(head)}"]
    table += [f"| {' | '.join(cells)} |" for cells in lines]
    table += ["", *(f"- flag {f}: {text}." for f, text in notes["flags"].items())] if notes["flags"] else []
    return "\n".join(table) + "\n"


def render_csv(wide: pd.DataFrame, notes: dict[str, Any]) -> str:
    cols = ["dataset", "model", "defense", "seeds"]
    for t in notes["titles"]:
        cols += [f"{t} R1", f"{t} mAP"]
        if int(wide["seeds"].max()) > 1:
            cols += [f"{t} R1 std", f"{t} mAP std"]
    cols.append("flags")
    return wide.reindex(columns=cols).to_csv(index=False, float_format="%.2f", lineterminator="\n")


def render_html(wide: pd.DataFrame, notes: dict[str, Any], title: str | None = None) -> str:
    disp = _display(wide, notes)
    body = disp.to_html(index=False, escape=True, border=0, classes="reidbench-leaderboard")
    foot = "\n".join(f"<li>{html.escape(line)}</li>" for line in _footnotes(notes))
    head = f"<h1>{html.escape(title)}</h1>\n" if title else ""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title or 'reidbench')}"
            f"</title></head><body>\n{head}{body}\n<ul>\n{foot}\n</ul>\n</body></html>\n")


def render(results: str | os.PathLike, fmt: str = "md", rerank: bool = False, title: str | None = None) -> str:
    """The leaderboard of the records under ``results`` as ``md``, ``csv``, ``html`` or ``compact``
    (:func:`render_compact`) text."""
    df = load_records(results)
    if rerank and df["rr_mAP"].isna().all():
        raise ValueError("these records hold no re-ranked metrics (the matrix ran with --no-rerank)")
    wide, notes = build_leaderboard(df, rerank=rerank)
    if fmt in ("md", "markdown"):
        return render_markdown(wide, notes, title)
    if fmt == "csv":
        return render_csv(wide, notes)
    if fmt == "html":
        return render_html(wide, notes, title)
    if fmt == "compact":
        return render_compact(wide, notes)
    raise ValueError(f"unknown format {fmt!r}: choose md, csv, html or compact")
