"""One board from record sets computed on different machines, and the checks a record set passes
before it joins a board.

The first results folder is the board; the others are submissions. A submission's record joins
only when it measures what the board measures: the same dataset (by content fingerprint), AP
convention, query count, one of the board's columns (attack, budget, threat), and per column the
same attack hyper-parameters (steps, step size, ...) and EOT. Two records of one board cell must agree: the same cell computed twice (same key, same
numbers) is kept once; two different results for one cell are refused, never averaged."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..matrix.records import Record, RecordError, iter_records, read_record
from ..protocol import Threat

__all__ = ["SubmissionError", "Problem", "cell_identity", "column_protocol", "merge_records", "load_board_records",
           "validate_submission"]


class SubmissionError(ValueError):
    """Record sets that cannot form one board (conflicting cells, another protocol)."""


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`validate_submission`: ``error`` keeps the set off a board."""

    level: str  # "error" | "warning"
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def _eps_key(eps: float | None) -> float | None:
    return None if eps is None else round(float(eps) * 255.0, 6)


def cell_identity(rec: Record) -> tuple:
    """The board cell a record fills: dataset, model, test-time defense, attack, threat, budget, seed."""
    c = rec.cell
    return (c["dataset"], c["model"], c["defense"], rec.attack_text, rec.threat, _eps_key(rec.resolved_eps),
            int(c["seed"]))


def _describe(ident: tuple) -> str:
    ds, model, defense, attack, threat, eps, seed = ident
    budget = "" if eps is None else f" at {eps:g}/255"
    return f"{ds} / {model} / {defense} / {attack} ({threat}{budget}), seed {seed}"


def column_protocol(rec: Record) -> dict[str, Any]:
    """What a record's number depends on beyond its cell: the protocol a board holds fixed."""
    hp = dict(rec.config.get("attack_hyperparameters") or {})
    hp.pop("seed", None)  # the cell's seed, part of the identity
    ds = rec.config.get("dataset") or {}
    return {"dataset fingerprint": ds.get("fingerprint"), "AP convention": rec.config.get("ap"),
            "queries": rec.n_queries, "attack hyper-parameters": hp,
            "EOT samples": rec.config.get("eot") if rec.threat == Threat.ADAPTIVE.value and not (
                rec.config.get("defense") or {}).get("deterministic", True) else None,
            "io": rec.config.get("io")}


def _same_result(a: Record, b: Record) -> bool:
    return (a.key == b.key and a.metrics == b.metrics and (a.per_query or {}) == (b.per_query or {})
            and a.metrics_rerank == b.metrics_rerank)


def _where(rec: Record) -> str:
    return str(rec.path) if rec.path is not None else rec.key[:16]


def merge_records(sets: Sequence[Sequence[Record]], names: Sequence[str] | None = None) -> list[Record]:
    """Merge record sets into one board's records (the first set is the board). Raises
    :class:`SubmissionError` on a conflict or a protocol difference, naming the files."""
    names = list(names or [f"set {i}" for i in range(len(sets))])
    cells: dict[tuple, Record] = {}
    protocol: dict[tuple, tuple[dict[str, Any], Record]] = {}
    datasets: dict[str, tuple[tuple[Any, int], Record]] = {}
    ap: tuple[Any, Record] | None = None
    board_columns: set[tuple] = set()
    board_datasets: set[str] = set()
    out: list[Record] = []
    for name, records in zip(names, sets):
        for rec in records:
            ident = cell_identity(rec)
            prev = cells.get(ident)
            if prev is not None:
                if _same_result(prev, rec):
                    continue  # the same cell computed twice: one record
                raise SubmissionError(
                    f"two different results for one board cell, {_describe(ident)}: {_where(prev)} and {_where(rec)}"
                    + (" (different keys: different checkpoints, code or options)" if prev.key != rec.key else
                       " (same key, different numbers: the computation is not reproducible)")
                    + ". Remove the stale one (older 'created': "
                    + f"{min((prev, rec), key=lambda r: str(r.provenance.get('created', ''))).provenance.get('created', '?')})"
                    + " or rerun the cell")
            proto = column_protocol(rec)
            ds_name = ident[0]
            fp, n = proto.pop("dataset fingerprint"), proto.pop("queries")
            if ds_name in datasets:
                (have_fp, have_n), ref = datasets[ds_name]
                if fp and have_fp and fp != have_fp:
                    raise SubmissionError(
                        f"{_where(rec)} ({name}) was measured on other {ds_name} data than the board (dataset "
                        f"fingerprint {str(fp)[:16]}... vs {str(have_fp)[:16]}... in {_where(ref)}): use the same copy "
                        "and version of the dataset")
                if n != have_n:
                    raise SubmissionError(f"{_where(rec)} ({name}) evaluates {n} {ds_name} queries, the board {have_n} "
                                          f"({_where(ref)}): every query is attacked on a board")
            else:
                datasets[ds_name] = ((fp, n), rec)
            convention = proto.pop("AP convention")
            if convention is not None:
                if ap is not None and ap[0] != convention:
                    raise SubmissionError(f"{_where(rec)} ({name}) computes AP as {convention!r}, the board as "
                                          f"{ap[0]!r} ({_where(ap[1])}): rerun with --ap {ap[0]}")
                ap = ap or (convention, rec)
            col = (ds_name, ident[3], ident[4], ident[5])
            shown = (ds_name, ident[3], ident[5], ident[4] == Threat.ADAPTIVE.value)  # the board's column
            if name == names[0]:
                board_columns.add(shown)
                board_datasets.add(ds_name)
            elif not rec.is_clean and ds_name in board_datasets and shown not in board_columns:
                have = sorted(f"{'' if e is None else f'{e:g}/255 '}{'adaptive' if a else 'white-box/oblivious'}"
                              for d, atk, e, a in board_columns if d == ds_name and atk == ident[3])
                raise SubmissionError(
                    f"{_where(rec)} ({name}) measures {ident[3]} ({ident[4]}"
                    + ("" if ident[5] is None else f" at {ident[5]:g}/255") + "), which the board does not: "
                    + (f"its {ident[3]} columns are {', '.join(have)}" if have else f"the board has no {ident[3]} column")
                    + "; rerun with the board's budgets and threats")
            if not rec.is_clean and col in protocol:
                have, ref = protocol[col]
                diff = [k for k in proto if proto[k] != have[k]]
                if diff:
                    k = diff[0]
                    raise SubmissionError(
                        f"{_where(rec)} ({name}) is not the board's {ident[3]} ({ident[4]}) protocol: {k} "
                        f"{proto[k]!r} where the board has {have[k]!r} ({_where(ref)}): rerun the cell with the "
                        "board's options")
            elif not rec.is_clean:
                protocol[col] = (proto, rec)
            cells[ident] = rec
            out.append(rec)
    return out


def load_board_records(results: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Record]:
    """The records of one board: a results folder, or several (the first is the board, the others
    submissions merged into it by :func:`merge_records`)."""
    dirs = [results] if isinstance(results, (str, os.PathLike)) else list(results)
    if not dirs:
        raise ValueError("no results folder given")
    sets = [list(iter_records(d)) for d in dirs]
    return merge_records(sets, [str(d) for d in dirs])


def _per_query_ok(rec: Record) -> str | None:
    pq = rec.per_query or {}
    n = rec.n_queries
    if n <= 0 or "r1_hits" not in pq or len(pq.get("ap") or ()) != n:
        return "holds no per-query results (rank-1 hits and APs): the worst case cannot be computed from it"
    if not np.all(np.isfinite(np.asarray(pq["ap"], dtype=float))):
        return "has non-finite per-query APs"
    return None


def validate_submission(results: str | os.PathLike, board: str | os.PathLike | None = None) -> list[Problem]:
    """What keeps the record set under ``results`` off a shared board (errors) and what a reader of
    the board should know (warnings): damaged or renamed records, missing per-query results, rows
    without a clean cell or with unequal query counts, self-checks that did not run or fired, rows
    without a model card, and (with ``board``) every conflict and protocol difference with it."""
    from .cards import CardError, read_cards

    problems: list[Problem] = []
    folder = Path(results) / "records"
    if not folder.is_dir():
        return [Problem("error", str(results), "holds no records/ folder: run `reidbench matrix --results "
                        f"{results}` first")]
    recs: list[Record] = []
    for p in sorted(folder.glob("*.json")):
        try:
            rec = read_record(p)
        except RecordError as e:
            problems.append(Problem("error", str(p), str(e)))
            continue
        if not p.name.endswith(f"__{rec.key[:16]}.json"):
            problems.append(Problem("error", str(p), f"the file name does not match the record's key {rec.key[:16]}: "
                                    "records are never renamed or edited by hand"))
        why = _per_query_ok(rec)
        if why:
            problems.append(Problem("error", str(p), why))
        if not rec.source:
            problems.append(Problem("warning", str(p), "carries no source fingerprint (written before reidbench "
                                    "recorded one): the board cannot tell which code computed it"))
        if not rec.is_clean and rec.checks is None:
            problems.append(Problem("warning", str(p), "ran without self-checks (--checks 0): an unconverged or "
                                    "gradient-masked cell would go unflagged"))
        for name in rec.fired_checks:
            problems.append(Problem("warning", str(p), f"self-check {name!r} fired: the board flags the row"))
        recs.append(rec)
    if not recs and not problems:
        problems.append(Problem("error", str(folder), "holds no records"))
    rows: dict[tuple, list[Record]] = {}
    for rec in recs:
        rows.setdefault((rec.cell["dataset"], rec.cell["model"], rec.cell["defense"], int(rec.cell["seed"])), []).append(rec)
    for (ds, model, defense, seed), rs in rows.items():
        where = f"row {ds} / {model} / {defense}, seed {seed}"
        clean = [r for r in rs if r.is_clean]
        if not clean:
            problems.append(Problem("error", where, "has no clean cell: the board shows no clean accuracy for it "
                                    "(run the matrix for the row, clean included)"))
        ns = {r.n_queries for r in rs}
        if len(ns) > 1:
            problems.append(Problem("error", where, f"its records evaluate different query counts {sorted(ns)}"))
    try:
        cards = read_cards(results)
    except CardError as e:
        problems.append(Problem("error", str(Path(results) / "cards"), str(e)))
        cards = {}
    for ds, model, defense, _ in rows:
        if (model, defense) not in cards:
            problems.append(Problem("warning", f"row {model} / {defense}", "has no model card: the board derives one "
                                    "from the records (`reidbench card` writes one with the paper and who ran it)"))
    try:
        merge_records([recs], [str(results)])
    except SubmissionError as e:
        problems.append(Problem("error", str(results), str(e)))
    if board is not None:
        try:
            merge_records([list(iter_records(board)), recs], [str(board), str(results)])
        except (SubmissionError, RecordError, FileNotFoundError) as e:
            problems.append(Problem("error", f"{results} -> {board}", str(e)))
    return problems

