"""A board as a static site: ``reidbench leaderboard --format site --out DIR``.

A self-contained folder -- inline CSS and JavaScript, no network, no CDN -- that a web server or a
file browser shows as is:

* ``index.html``: the board, the worst case first, sortable by any column, filterable by dataset,
  budget and threat; flags as badges whose explanation shows on hover and on the rules page;
* ``rules.html``: the threat models, each column's protocol (attack hyper-parameters), ``auto``,
  every flag;
* ``rows/*.html``: a page per row from its model card and records -- per-attack numbers with and
  without re-ranking, the realised perturbation, self-checks, provenance, figures where they exist;
* ``board.json``: everything the pages show, for machines;
* ``figures/``: the PNG figures found beside the records (``heatmap.png``, ``ranks-MODEL.png``, ...).

Everything is computed from the records (and cards) alone, like the other formats."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..matrix.records import Record
from ..protocol import CLEAN
from ..utils import atomic_write_text
from .cards import CardError, ModelCard, cards_for_board, read_cards
from .merge import column_protocol, load_board_records
from .tables import (FLAG_HELP, _attack_order, _cell_text, _fmt_eps, _footnotes, attack_title, build_leaderboard,
                     records_frame)

__all__ = ["write_site", "SITE_FORMAT"]

SITE_FORMAT = "reidbench-site-v1"
_ASSETS = Path(__file__).with_name("assets")
#: flags that say the number is wrong (red) rather than that the evaluation is incomplete (amber)
_SEVERE = {"adaptive-weaker", "unconverged", "zero-gradient", "randomised-no-eot", "no-effect", "transfer-stronger"}
_THREAT_LABEL = {"white-box": "white-box / oblivious", "adaptive": "adaptive", "transfer": "transfer"}
_CARD_FIELDS = [("description", "description"), ("source", "source"), ("source_name", "source name"),
                ("paper", "paper"), ("venue", "venue"), ("url", "link"), ("architecture", "architecture"),
                ("initialisation", "initialisation"), ("training_data", "training data"),
                ("training_fingerprint", "training data fingerprint"), ("training_recipe", "training"),
                ("test_defense_paper", "test-time defense"), ("checkpoint_sha256", "checkpoint SHA-256"),
                ("submitted_by", "run by"), ("created", "created")]


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def row_page(dataset: str, model: str, defense: str) -> str:
    """The row page's path inside the site."""
    return f"rows/{_slug(dataset)}--{_slug(model)}--{_slug(defense)}.html"


def _page(title: str, body: str, depth: int = 0, script: bool = False) -> str:
    up = "../" * depth
    css = (_ASSETS / "site.css").read_text()
    js = f"<script>\n{(_ASSETS / 'site.js').read_text()}</script>\n" if script else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{_e(title)}</title>\n<style>\n{css}</style>\n</head>\n<body>\n"
            f"<nav class=\"site\"><a href=\"{up}index.html\">board</a><a href=\"{up}rules.html\">rules and flags</a>"
            f"<a href=\"{up}board.json\">board.json</a></nav>\n"
            f"<main>\n{body}\n</main>\n{js}</body>\n</html>\n")


def _badges(flags: str, depth: int = 0) -> str:
    up = "../" * depth
    out = []
    for f in [x for x in (flags or "").split(",") if x]:
        cls = "badge bad" if f in _SEVERE else "badge"
        out.append(f"<a class=\"{cls}\" href=\"{up}rules.html#flag-{_e(f)}\" title=\"{_e(FLAG_HELP.get(f, f))}\">{_e(f)}</a>")
    return "".join(out)


def _num(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{float(v):.4f}"


def _board_table(wide: pd.DataFrame, notes: dict[str, Any]) -> str:
    cols = notes["columns"]
    worst = [c for c in cols if c["kind"] == "worst"]
    ordered = worst + [c for c in cols if c["kind"] != "worst"]  # the worst case first
    multi = wide["dataset"].nunique() > 1
    head = ["<th scope=\"col\" class=\"text sortable\" data-type=\"text\">dataset</th>"] if multi else []
    head += ["<th scope=\"col\" class=\"text sortable\" data-type=\"text\">model</th>",
             "<th scope=\"col\" class=\"text sortable\" data-type=\"text\">test-time defense</th>"]
    for c in ordered:
        eps = "" if c["eps"] is None or (c["kind"] == CLEAN) else f" data-eps=\"{_e(_fmt_eps(c['eps']))}\""
        klass = "sortable worst" if c["kind"] == "worst" else "sortable"
        head.append(f"<th scope=\"col\" class=\"{klass}\" data-type=\"number\" data-threat=\"{_e(c['threat'])}\"{eps} "
                    f"title=\"R1 / mAP in percent; sorts by mAP\">{_e(c['title'])}</th>")
    head.append("<th scope=\"col\" class=\"text\">flags</th>")
    body = []
    for _, row in wide.iterrows():
        page = row_page(row["dataset"], row["model"], row["defense"])
        tds = [f"<td class=\"text\" data-value=\"{_e(row['dataset'])}\">{_e(row['dataset'])}</td>"] if multi else []
        tds.append(f"<td class=\"text\" data-value=\"{_e(row['model'])}\"><a href=\"{_e(page)}\">{_e(row['model'])}</a></td>")
        tds.append(f"<td class=\"text\" data-value=\"{_e(row['defense'])}\">{_e(row['defense'])}</td>")
        for c in ordered:
            t = c["title"]
            klass = " class=\"worst\"" if c["kind"] == "worst" else ""
            tds.append(f"<td{klass} data-value=\"{_num(row.get(f'{t} mAP'))}\">{_e(_cell_text(row, t, int(row['seeds'])))}</td>")
        tds.append(f"<td class=\"text\">{_badges(row['flags'])}</td>")
        body.append(f"<tr data-dataset=\"{_e(row['dataset'])}\">" + "".join(tds) + "</tr>")
    return ("<div class=\"table-wrap\"><table id=\"board\">\n<thead><tr>" + "".join(head) + "</tr></thead>\n<tbody>\n"
            + "\n".join(body) + "\n</tbody>\n</table></div>")


def _select(ident: str, label: str, options: list[tuple[str, str]]) -> str:
    opts = "".join(f"<option value=\"{_e(v)}\">{_e(t)}</option>" for v, t in [("all", "all"), *options])
    return f"<label for=\"{ident}\">{_e(label)}<select id=\"{ident}\">{opts}</select></label>"


def _filters(wide: pd.DataFrame, notes: dict[str, Any]) -> str:
    budgets = sorted({c["eps"] for c in notes["columns"] if c["kind"] != CLEAN and c["eps"] is not None})
    threats = sorted({c["threat"] for c in notes["columns"] if c["kind"] == "attack"})
    return ("<form class=\"filters\" action=\"#\">"
            + _select("filter-dataset", "dataset", [(d, d) for d in sorted(wide["dataset"].unique())])
            + _select("filter-budget", "budget (eps)", [(_fmt_eps(e), _fmt_eps(e)) for e in budgets])
            + _select("filter-threat", "threat", [(t, _THREAT_LABEL.get(t, t)) for t in threats])
            + "<span class=\"muted\"><span id=\"row-count\">" + str(len(wide)) + "</span> rows</span></form>")


def _figures(figs: list[str], depth: int) -> str:
    up = "../" * depth
    return "".join(f"<figure><img src=\"{up}figures/{_e(f)}\" alt=\"{_e(f)}\"><figcaption>{_e(f)}</figcaption></figure>"
                   for f in figs)


def _index(wide, notes, title, figs) -> str:
    foot = "".join(f"<li>{_e(line)}</li>" for line in _footnotes(notes))
    board_figs = [f for f in figs if not f.startswith("ranks-")]
    body = (f"<h1>{_e(title)}</h1>\n<p class=\"lead\">R1 / mAP in percent, every query attacked, the gallery clean. "
            f"Rows are ranked by the worst case ('{_e(notes.get('ranked_by'))}'): the most robust first. "
            "Click a column to sort, a model for its card and records, a flag for what it means "
            "(<a href=\"rules.html\">rules</a>).</p>\n"
            + _filters(wide, notes) + "\n" + _board_table(wide, notes)
            + f"\n<h2>Notes</h2>\n<ul class=\"notes\">{foot}</ul>\n"
            + (f"<h2>Figures</h2>\n{_figures(board_figs, 0)}" if board_figs else ""))
    return _page(title, body, 0, script=True)


def _protocol_rows(records: list[Record]) -> list[tuple[str, str, str, str]]:
    seen: dict[tuple, str] = {}
    for r in records:
        if r.is_clean:
            continue
        proto = column_protocol(r)  # what a board holds fixed per column (merge.py)
        hp, eot = proto["attack hyper-parameters"], proto["EOT samples"]
        key = (attack_title(r.attack_text), r.threat, _fmt_eps(r.resolved_eps))
        text = ", ".join(f"{k}={hp[k]}" for k in sorted(hp) if k != "eps")
        if eot:
            text += f"; EOT samples {eot} (randomised defense)"
        seen.setdefault(key, text)
    return [(*k, v) for k, v in sorted(seen.items())]


def _rules(notes, records, title) -> str:
    from ..attacks.auto import AUTO_VERSION

    flags = "".join(f"<dt id=\"flag-{_e(f)}\">{_badges(f)}</dt><dd>{_e(text)}.</dd>" for f, text in FLAG_HELP.items())
    proto = "".join(f"<tr><td class=\"text\">{_e(a)}</td><td class=\"text\">{_e(t)}</td><td>{_e(e)}</td>"
                    f"<td class=\"text\">{_e(h)}</td></tr>" for a, t, e, h in _protocol_rows(records))
    body = (f"<h1>Rules: {_e(title)}</h1>\n"
            "<h2>Threat models</h2>\n<dl class=\"card\">"
            "<dt>white-box</dt><dd>the attacker has the model's weights and computes input gradients (a row without a "
            "test-time defense).</dd>"
            "<dt>oblivious</dt><dd>the attack of the white-box model, unaware of the row's test-time defense.</dd>"
            "<dt>adaptive</dt><dd>the attack through the test-time defense: its differentiable twin or BPDA, EOT "
            "(averaged gradients over fresh random draws) when the defense is randomised.</dd>"
            "<dt>transfer</dt><dd>adversarial queries made once on a surrogate model (DMR), without the row's model.</dd>"
            "<dt>worst</dt><dd>per query, the worst outcome over every attack of the row and every component of "
            "auto: rank-1 only if every attack missed, AP the minimum; per budget over the attacks of at most that "
            "budget. The board is ranked by it.</dd></dl>\n"
            f"<h2>auto ({_e(AUTO_VERSION)})</h2>\n<p>APGD (step-size schedule, momentum 0.75, best iterate) with a "
            "self-distance loss, a rank-1 margin loss and an AP loss against the gallery, 100 iterations each, run on "
            "every query; per query the component's image that ranks worst in the attacker's view. Fixed "
            "configuration: its number is comparable across rows and papers.</p>\n"
            "<h2>Protocol of this board</h2>\n<div class=\"table-wrap\"><table><thead><tr>"
            "<th scope=\"col\" class=\"text\">attack</th><th scope=\"col\" class=\"text\">threat</th>"
            "<th scope=\"col\">eps</th><th scope=\"col\" class=\"text\">hyper-parameters</th></tr></thead><tbody>"
            f"{proto}</tbody></table></div>\n"
            f"<h2>Flags</h2>\n<dl class=\"card\">{flags}</dl>\n")
    return _page(f"rules: {title}", body, 0)


def _card_html(card: ModelCard) -> str:
    items = []
    for attr, label in _CARD_FIELDS:
        v = getattr(card, attr)
        if not v:
            continue
        if attr == "url":
            items.append(f"<dt>{_e(label)}</dt><dd><a href=\"{_e(v)}\">{_e(v)}</a></dd>")
        elif isinstance(v, dict):
            items.append(f"<dt>{_e(label)}</dt><dd>{_e(', '.join(f'{k} {x}' for k, x in v.items()))}</dd>")
        else:
            items.append(f"<dt>{_e(label)}</dt><dd>{_e(v)}</dd>")
    derived = ("<p class=\"muted\">This card was derived from the records (no card was submitted for the row).</p>"
               if card.derived else "")
    return f"<dl class=\"card\">{''.join(items)}</dl>{derived}"


def _record_summary(r: Record) -> dict[str, Any]:
    return {"key": r.key, "attack": r.attack_text, "threat": r.threat, "eps": r.resolved_eps, "seed": int(r.cell["seed"]),
            "metrics": r.metrics, "metrics_rerank": r.metrics_rerank, "perturbation": r.perturbation,
            "attack_hyperparameters": r.config.get("attack_hyperparameters"), "eot": r.config.get("eot"),
            "checks": r.checks, "components": {k: v.get("metrics") for k, v in (r.components or {}).items()},
            "source_fingerprint": r.source, "provenance": r.provenance, "numerics": r.extra.get("numerics")}


def _fmt(v: Any, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{float(v):.{digits}f}"


def _row_html(key, row, card, recs, figs, title) -> str:
    dataset, model, defense = key
    recs = sorted(recs, key=lambda r: (not r.is_clean, r.resolved_eps or 0.0, _attack_order(r.attack_text),
                                       r.attack_text, r.threat, r.cell["seed"]))
    trs = []
    for r in recs:
        m, rr, pert = r.metrics, r.metrics_rerank or {}, r.perturbation or {}
        checks = ", ".join(r.fired_checks) or ("ran" if r.checks else "-")
        trs.append(
            f"<tr><td class=\"text\">{_e(attack_title(r.attack_text) if not r.is_clean else CLEAN)}</td>"
            f"<td class=\"text\">{_e(r.threat)}</td><td>{_e(_fmt_eps(r.resolved_eps) if not r.is_clean else '')}</td>"
            f"<td>{_e(r.cell['seed'])}</td><td>{_fmt(m.get('R1'))}</td><td>{_fmt(m.get('mAP'))}</td>"
            f"<td>{_fmt(rr.get('R1'))}</td><td>{_fmt(rr.get('mAP'))}</td>"
            f"<td>{_fmt(None if pert.get('linf_max') is None else pert['linf_max'] * 255, 2)}</td>"
            f"<td>{_fmt(pert.get('l2_mean'), 3)}</td><td class=\"text\">{_e(checks)}</td>"
            f"<td>{_fmt(r.provenance.get('wall_seconds'))}</td></tr>")
        for comp, res in (r.components or {}).items():
            cm = res.get("metrics") or {}
            crr = res.get("metrics_rerank") or {}
            trs.append(f"<tr><td class=\"text\">&nbsp;&nbsp;{_e(comp)} (component)</td><td class=\"text\">{_e(r.threat)}"
                       f"</td><td></td><td></td><td>{_fmt(cm.get('R1'))}</td><td>{_fmt(cm.get('mAP'))}</td>"
                       f"<td>{_fmt(crr.get('R1'))}</td><td>{_fmt(crr.get('mAP'))}</td><td></td><td></td><td></td><td></td></tr>")
    heads = ["attack", "threat", "eps", "seed", "R1", "mAP", "R1 re-ranked", "mAP re-ranked", "L-inf (/255)",
             "L2 mean", "self-checks", "seconds"]
    text_cols = {"attack", "threat", "self-checks"}
    th = "".join(("<th scope=\"col\" class=\"text\">" if h in text_cols else "<th scope=\"col\">") + f"{_e(h)}</th>"
                 for h in heads)
    prov = recs[0].provenance if recs else {}
    sources = sorted({str(r.source) for r in recs if r.source})
    shas = sorted({str(r.provenance.get("git_sha")) for r in recs if r.provenance.get("git_sha")})
    prov_items = [("reidbench", prov.get("reidbench_version")), ("source fingerprints", ", ".join(sources)),
                  ("git commits", ", ".join(s[:12] for s in shas)), ("torch", prov.get("torch_version")),
                  ("device", prov.get("device_name")), ("threads", prov.get("threads")),
                  ("records", len(recs)), ("record keys", ", ".join(r.key[:12] for r in recs))]
    prov_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in prov_items if v not in (None, ""))
    mine = [f for f in figs if f == f"ranks-{model}.png" or f.startswith(f"ranks-{model}-")]
    body = (f"<h1>{_e(model)} <span class=\"muted\">+ {_e(defense)}</span></h1>\n"
            f"<p class=\"lead\">{_e(dataset)}; worst case {_e(_cell_text(row, title, int(row['seeds'])))} "
            f"(R1 / mAP); clean {_e(_cell_text(row, CLEAN, int(row['seeds'])))}. {_badges(row['flags'], 1)}</p>\n"
            f"<h2>Model card</h2>\n{_card_html(card)}\n"
            f"<h2>Per attack</h2>\n<div class=\"table-wrap\"><table><thead><tr>{th}</tr></thead><tbody>"
            + "".join(trs) + "</tbody></table></div>\n"
            f"<h2>Provenance</h2>\n<dl class=\"card\">{prov_html}</dl>\n"
            + (f"<h2>Figures</h2>\n{_figures(mine, 1)}" if mine else ""))
    return _page(f"{model} + {defense}: {dataset}", body, 1)


def _stored_cards(dirs: Sequence[str | os.PathLike]) -> dict[tuple[str, str], ModelCard]:
    out: dict[tuple[str, str], ModelCard] = {}
    for d in dirs:
        for row, card in read_cards(d).items():
            if row in out and out[row] != card:
                raise CardError(f"two different cards for row {row[0]} / {row[1]} in {dirs[0]} and {d}: keep one")
            out.setdefault(row, card)
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def write_site(results: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike,
               title: str | None = None) -> Path:
    """Write the static site of the board of ``results`` (one results folder, or several merged)
    into the folder ``out`` (created; pages written atomically; row pages and figures of an earlier
    site there that this board no longer has are removed). Returns ``out``."""
    dirs = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    records = load_board_records(dirs)
    if not records:
        raise ValueError(f"no records under {' '.join(map(str, dirs))}: run `reidbench matrix --results DIR` first")
    title = title or "reidbench leaderboard"
    df = records_frame(records)
    wide, notes = build_leaderboard(df)
    has_rr = not df["rr_mAP"].isna().all()
    wide_rr, notes_rr = build_leaderboard(df, rerank=True) if has_rr else (None, None)
    cards = cards_for_board(records, _stored_cards(dirs))
    out = Path(out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    figs = []
    for d in dirs:
        for p in sorted(Path(d).glob("*.png")):
            if p.name not in figs:
                (out / "figures").mkdir(exist_ok=True)
                shutil.copyfile(p, out / "figures" / p.name)
                figs.append(p.name)
    atomic_write_text(out / "index.html", _index(wide, notes, title, figs))
    atomic_write_text(out / "rules.html", _rules(notes, records, title))
    head = next(c["title"] for c in notes["columns"] if c["kind"] == "worst")
    by_row: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        by_row.setdefault((r.cell["dataset"], r.cell["model"], r.cell["defense"]), []).append(r)
    rows_json = []
    for _, row in wide.iterrows():
        key = (row["dataset"], row["model"], row["defense"])
        card = cards[(row["model"], row["defense"])]
        atomic_write_text(out / row_page(*key), _row_html(key, row, card, by_row[key], figs, head))
        entry = {k: row[k] for k in wide.columns}
        entry["flags"] = [f for f in (row["flags"] or "").split(",") if f]
        entry["page"] = row_page(*key)
        entry["card"] = card.to_dict()
        entry["records"] = [_record_summary(r) for r in by_row[key]]
        if wide_rr is not None:
            rr = wide_rr[(wide_rr["dataset"] == key[0]) & (wide_rr["model"] == key[1]) & (wide_rr["defense"] == key[2])]
            entry["rerank"] = {k: rr.iloc[0][k] for k in rr.columns if k not in ("dataset", "model", "defense")}
        rows_json.append(entry)
    export = {"format": SITE_FORMAT, "title": title, "columns": notes["columns"], "ranked_by": notes["ranked_by"],
              "flags": notes["flags"], "flag_help": FLAG_HELP, "notes": _footnotes(notes),
              "provenance": {k: notes[k] for k in ("versions", "git_shas", "sources", "devices", "seeds", "queries")},
              "rows": rows_json, "figures": figs,
              "rerank_notes": _footnotes(notes_rr) if notes_rr is not None else None}
    atomic_write_text(out / "board.json", json.dumps(_jsonable(export), indent=1, sort_keys=True, default=str) + "\n")
    # a site written over an earlier one: the pages of rows and the figures this board no longer has go
    pages = {Path(e["page"]).name for e in rows_json}
    for folder, keep in (("rows", pages), ("figures", set(figs))):
        for p in (out / folder).glob("*"):  # nothing where the folder is absent
            if p.is_file() and p.name not in keep:
                p.unlink()
    return out
