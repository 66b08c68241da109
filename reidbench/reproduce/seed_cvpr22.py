"""The seed paper's protocol, cell by cell: Gong et al., "Person Re-identification Method Based on
Color Attack and Joint Defence", CVPRW 2022 (Tables 1, 4, 5, 6 and 7).

Every number of those tables is described here as a :class:`PaperCell`: which model preset, which
test-time defense, which attack and threat, with or without re-ranking, and the paper's value. The
recipe derives the matrix cells it needs from these descriptions, runs them with the matrix runner
(so it resumes, and its records are ordinary matrix records), and prints reidbench's number next to
the paper's with the difference.

The seed's protocol: white-box attacks on the query set, eps 5/255, alpha 1/255, 15 iterations;
defended models (CS at test time) attacked *obliviously* (the attacker differentiates the bare
model, as the seed's attack scripts do). ``faithful=True`` adds the seed code's I/O and evaluation
choices: adversarial queries re-encoded as JPEG-75 (they were saved as .jpg), the Market-official
trapezoid AP, the single-guide M-IFGSM and the seed's LTA implementation details. ``adaptive=True``
adds reidbench's CS-aware twin of every oblivious cell (not in the paper).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from tabulate import tabulate

from ..attacks.io import JPEG75
from ..leaderboard import attack_title
from ..matrix import MatrixConfig, run_matrix
from ..matrix.plan import defense_label
from ..protocol import CLEAN, Threat, threats_for
from ..registry import REPRODUCTIONS, resolve_dataset
from ..utils import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["PaperCell", "PAPER_CELLS", "plan_configs", "compare", "render_comparison",
           "reproduce_seed_cvpr22", "SMOKE"]

#: the title of the clean column in the seed's tables
CLEAN_TITLE = "no attack"
#: the paper's datasets; every other dataset (synthreid included) is compared with Market-1501
PAPER_DATASETS = ("market1501", "dukemtmcreid")
#: Table 6's resize patterns as test-time defense specs (P1P2P1 is CS itself)
PATTERN_DEFENSES = {"P1": "cs(sizes=P1)", "P2": "cs(sizes=P2)", "P1P2": "cs(sizes=P1P2)", "P1P2P1 (= CS)": "cs"}
AT_MODELS = {"mifgsm": "at-mifgsm", "sma": "at-sma", "lta": "at-lta"}


@dataclass(frozen=True)
class PaperCell:
    """One cell of a seed table. ``models``: the preset(s) whose records give reidbench's number
    (several: their mean, as the seed's AT clean column); ``defense``: the extra test-time defense
    on top of the preset's own; ``rerank``: whether the paper's number is after re-ranking."""

    table: str
    dataset: str             # the paper's dataset: market1501 | dukemtmcreid
    row: str
    column: str              # attack registry name or "clean"
    models: tuple[str, ...]
    defense: str             # extra test-time defense spec ("none": the preset as it is)
    rerank: bool
    paper: dict[str, float] = field(default_factory=dict)    # metric -> value (percent)

    def threat(self, own_defense: str | None) -> str:
        """The threat of the seed's protocol: white-box on a bare model, oblivious of CS otherwise."""
        if self.column == CLEAN:
            return Threat.CLEAN.value
        return threats_for(self.column, defense_label(own_defense, self.defense), adaptive=False)[0].value


def _column_title(column: str) -> str:
    return CLEAN_TITLE if column == CLEAN else attack_title(column)


def _rm(r1: float, m: float) -> dict[str, float]:
    return {"R1": r1, "mAP": m}


def _table(table: str, dataset: str, rows: dict[str, tuple[tuple[str, ...], str, bool]], columns: list[str],
           values: dict[str, list]) -> list[PaperCell]:
    cells = []
    for row, (models, defense, rerank) in rows.items():
        for col, val in zip(columns, values[row]):
            if val is None:
                continue
            ms = models if len(models) == 1 else ((AT_MODELS[col],) if col in AT_MODELS else models)
            cells.append(PaperCell(table, dataset, row, col, ms, defense, rerank,
                                   val if isinstance(val, dict) else _rm(*val)))
    return cells


def _paper_cells() -> list[PaperCell]:
    """The seed's Tables 1, 4, 5, 6, 7 (transcribed in spec/ALGORITHMS.md section 7)."""
    b, j = ("baseline",), ("jad",)
    cells: list[PaperCell] = []
    t1 = {"No attack": (88.4, 95.5, 97.1, 72.1), "SMA": (15.7, 26.4, 32.7, 11.1), "LTA*": (15.7, 26.2, 32.1, 11.0),
          "LTA": (13.3, 22.4, 28.1, 9.6)}
    for col, (name, v) in zip(["clean", "sma", "lta-star", "lta"], t1.items()):
        cells.append(PaperCell("Table 1", "market1501", "Baseline", col, b, "none", False,
                               dict(zip(("R1", "R5", "R10", "mAP"), v))))
    t4_rows = {"Baseline": (b, "none", False), "Baseline+RK": (b, "none", True), "JAD": (j, "none", False),
               "JAD+RK": (j, "none", True)}
    t4_cols = ["mifgsm", "sma", "lta"]
    cells += _table("Table 4", "market1501", t4_rows, t4_cols, {
        "Baseline": [(8.1, 4.3), (15.7, 11.1), (13.3, 9.6)], "Baseline+RK": [(13.2, 13.0), (17.6, 20.0), (14.2, 16.1)],
        "JAD": [(47.1, 27.8), (79.3, 60.1), (56.5, 41.1)], "JAD+RK": [(61.3, 56.8), (85.6, 80.3), (66.2, 63.9)]})
    cells += _table("Table 4", "dukemtmcreid", t4_rows, t4_cols, {
        "Baseline": [(10.1, 5.8), (15.0, 10.4), (13.0, 9.2)], "Baseline+RK": [(16.8, 16.3), (18.8, 19.8), (15.2, 16.3)],
        "JAD": [(30.5, 16.3), (56.7, 39.5), (41.8, 27.6)], "JAD+RK": [(48.1, 43.4), (69.3, 64.5), (52.4, 49.7)]})
    cols4 = ["clean", "mifgsm", "sma", "lta"]
    cells += _table("Table 5", "market1501", {
        "Baseline": (b, "none", True), "CF": (("cf",), "none", True), "PD": (("pd",), "none", True),
        "JAD": (j, "none", True)}, cols4, {
        "Baseline": [(90.2, 84.7), (13.2, 13.0), (17.6, 20.0), (14.2, 16.1)],
        "CF": [(90.8, 85.3), (18.3, 16.7), (18.0, 19.6), (17.1, 18.5)],
        "PD": [(91.5, 85.6), (31.7, 28.7), (58.4, 57.1), (25.2, 27.6)],
        "JAD": [(91.0, 85.0), (61.3, 56.8), (85.6, 80.3), (66.2, 63.9)]})
    t6_rows = {"Baseline (no resize)": (b, "none", True)}
    t6_rows.update({name: (b, spec, True) for name, spec in PATTERN_DEFENSES.items()})
    cells += _table("Table 6", "market1501", t6_rows, ["clean", "lta"], {
        "Baseline (no resize)": [(90.2, 84.7), (14.2, 16.1)], "P1": [(90.0, 84.7), (25.5, 27.5)],
        "P2": [(90.3, 84.9), (15.9, 17.9)], "P1P2": [(90.1, 84.8), (25.8, 27.8)],
        "P1P2P1 (= CS)": [(89.8, 84.3), (31.4, 33.1)]})
    at = tuple(AT_MODELS.values())
    cells += _table("Table 7", "market1501", {
        "Baseline": (b, "none", True), "AT": (at, "none", True), "AT + CS": (at, "cs", True),
        "JAD": (j, "none", True)}, cols4, {
        "Baseline": [(90.2, 84.7), (13.2, 13.0), (17.6, 20.0), (14.2, 16.1)],
        "AT": [(86.4, 76.9), (46.8, 41.3), (48.3, 47.4), (49.1, 48.4)],
        "AT + CS": [(86.3, 76.1), (60.6, 53.8), (64.9, 61.1), (62.7, 58.5)],
        "JAD": [(90.6, 84.3), (66.9, 62.1), (86.5, 80.7), (73.5, 69.5)]})
    return cells


PAPER_CELLS: list[PaperCell] = _paper_cells()

#: ``--smoke``: the same pipeline on a tiny synthreid with one-epoch small models from scratch (the
#: plumbing, in minutes) and 2-step attacks
SMOKE = {"dataset": "synthreid", "synth_size": "tiny", "epochs": 1, "steps": 2, "checks": 4, "init": "scratch"}


def _paper_dataset(dataset: str) -> str:
    try:
        name = resolve_dataset(dataset)[0].name
    except KeyError:
        name = dataset
    return name if name in PAPER_DATASETS else PAPER_DATASETS[0]


def cells_for(dataset: str) -> list[PaperCell]:
    """The paper cells compared on ``dataset`` (synthreid and unknown names compare to Market-1501)."""
    ref = _paper_dataset(dataset)
    return [c for c in PAPER_CELLS if c.dataset == ref]


def plan_configs(dataset: str, *, data_root: str | None = None, synth_size: str = "default", seed: int = 0,
                 epochs: int | None = None, steps: int | None = None, faithful: bool = False, adaptive: bool = False,
                 device: str = "cpu", batch_size: int = 64, checks: int = 32,
                 init: str | None = None) -> list[MatrixConfig]:
    """The matrix configurations that produce every cell of :func:`cells_for`: one per (model
    preset, extra test-time defense), with only the attacks its paper cells need; ``checks``: the
    self-checks' query count (the seed's 15-step cells get the ``unconverged`` check too); ``init``:
    the models' initialisation (None: the presets' own)."""
    need: dict[tuple[str, str], list[str]] = {}
    for c in cells_for(dataset):
        for m in c.models:
            atks = need.setdefault((m, c.defense), [])
            if c.column != CLEAN and c.column not in atks:
                atks.append(c.column)
    attack_args: dict[str, dict[str, Any]] = {}
    io, ap = "memory", "torchreid"
    if faithful:
        io, ap = JPEG75, "market_official"
        attack_args = {"mifgsm": {"gong_faithful": True}, "lta": {"gong_faithful": True},
                       "lta-star": {"gong_faithful": True}}
    configs = []
    for (model, defense), atks in need.items():
        configs.append(MatrixConfig(models=(model,), attacks=tuple(atks), defenses=tuple(dict.fromkeys(("none", defense))),
                                    dataset=dataset, data_root=data_root, synth_size=synth_size, steps=steps,
                                    seeds=(seed,), rerank=True, adaptive=adaptive, io=io, epochs=epochs, device=device,
                                    batch_size=batch_size, ap=ap, attack_args=attack_args, checks=checks, init=init))
    return configs


def _own_defenses(names) -> dict[str, str | None]:
    from ..models import get_preset

    return {m: get_preset(m).test_defense for m in names}


def compare(results: str | os.PathLike, dataset: str, seed: int = 0, faithful: bool = False) -> pd.DataFrame:
    """One row per paper cell and metric: the paper's value, reidbench's (from the records under
    ``results`` made with the same protocol switches; NaN where no record exists yet) and the
    difference."""
    from ..leaderboard import load_records

    df = load_records(results)
    ap = "market_official" if faithful else "torchreid"
    df = df[(df["ap_definition"] == ap) & ((df["attack"] == CLEAN) | (df["io"] == (JPEG75 if faithful else "memory")))]
    cells = cells_for(dataset)
    own = _own_defenses({m for c in cells for m in c.models})
    rows = []
    for c in cells:
        values: dict[str, list[float]] = {}
        for m in c.models:
            label = defense_label(own[m], c.defense).text
            sel = df[(df["model"] == m) & (df["defense"] == label) & (df["attack"] == c.column)
                     & (df["threat"] == c.threat(own[m])) & (df["seed"] == seed)]
            for metric in c.paper:
                col = f"rr_{metric}" if c.rerank else metric
                if len(sel):
                    values.setdefault(metric, []).append(float(sel.iloc[-1][col]))
        for metric, paper in c.paper.items():
            got = values.get(metric, [])
            ours = sum(got) / len(got) if len(got) == len(c.models) else math.nan
            rows.append({"table": c.table, "row": c.row, "column": _column_title(c.column),
                         "metric": metric, "rerank": c.rerank, "paper": paper, "reidbench": round(ours, 1),
                         "diff": round(ours - paper, 1)})
    return pd.DataFrame(rows)


def render_comparison(table: pd.DataFrame, fmt: str = "md", title: str | None = None) -> str:
    """Markdown (one table per seed table: each cell ``reidbench (paper, diff)``) or CSV (long form)."""
    if fmt == "csv":
        return table.to_csv(index=False)
    out = [f"# {title}", ""] if title else []
    for name, g in table.groupby("table", sort=False):
        metrics = list(dict.fromkeys(g["metric"]))
        columns = list(dict.fromkeys(g["column"]))
        body = []
        for row, rg in g.groupby("row", sort=False):
            line = [row + (" (RK)" if bool(rg["rerank"].iloc[0]) and "RK" not in row else "")]
            for col in columns:
                cg = rg[rg["column"] == col].set_index("metric")
                if cg.empty:
                    line.append("")
                    continue
                ours = " / ".join("-" if math.isnan(cg.loc[m, "reidbench"]) else f"{cg.loc[m, 'reidbench']:.1f}"
                                  for m in metrics)
                paper = " / ".join(f"{cg.loc[m, 'paper']:.1f}" for m in metrics)
                diff = " / ".join("" if math.isnan(cg.loc[m, "diff"]) else f"{cg.loc[m, 'diff']:+.1f}" for m in metrics)
                line.append(f"{ours} (paper {paper}; {diff})" if diff.strip(" /") else f"{ours} (paper {paper})")
            body.append(line)
        out += [f"## {name} ({' / '.join(metrics)}: reidbench (paper; reidbench - paper))", "",
                tabulate(body, headers=["", *columns], tablefmt="github"), ""]
    return "\n".join(out)


@REPRODUCTIONS.register("seed-cvpr22", aliases=("gong-cvprw22", "jad-paper"),
                        paper="Gong, Huang, Chen, CVPRW 2022 (the seed paper)",
                        description="Tables 1, 4, 5, 6 and 7 -- baseline, CF, PD, JAD, CS resize patterns and offline AT "
                                "against M-IFGSM, SMA, LTA(*), eps 5/255, 15 steps",
                        datasets=("market1501", "dukemtmcreid"))
def reproduce_seed_cvpr22(results: str | os.PathLike, *, dataset: str = "market1501", data_root: str | None = None,
                          smoke: bool = False, seed: int = 0, faithful: bool = False, adaptive: bool = False,
                          device: str = "cpu", batch_size: int = 64, epochs: int | None = None, force: bool = False,
                          progress: bool = True, store: str | os.PathLike | None = None,
                          echo: Callable[[str], None] | None = None, init: str | None = None) -> pd.DataFrame:
    """Run (or resume) every cell the seed's tables need and return :func:`compare`'s table; the
    comparison is also written to ``results/reproduction.md`` and ``.csv``."""
    echo = echo or (lambda s: None)
    synth_size, steps, checks = "default", None, MatrixConfig.checks
    if smoke:
        dataset, synth_size, steps, checks = SMOKE["dataset"], SMOKE["synth_size"], SMOKE["steps"], SMOKE["checks"]
        epochs = SMOKE["epochs"] if epochs is None else epochs
        init = SMOKE["init"] if init is None else init
    configs = plan_configs(dataset, data_root=data_root, synth_size=synth_size, seed=seed, epochs=epochs, steps=steps,
                           faithful=faithful, adaptive=adaptive, device=device, batch_size=batch_size, checks=checks,
                           init=init)
    stages: dict[str, float] = {}
    for i, config in enumerate(configs, 1):
        echo(f"[{i}/{len(configs)}] {config.models[0]} x {'/'.join(map(str, config.defenses))} x "
             f"{', '.join(map(str, config.attacks)) or 'clean only'}")
        run = run_matrix(config, results, force=force, progress=progress, store=store)
        for k, v in run.stages.items():
            stages[k] = round(stages.get(k, 0.0) + v, 1)
    echo("time by stage: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    table = compare(results, dataset, seed, faithful)
    title = (f"Seed CVPR-W 2022 protocol on {dataset}" + (" (smoke settings)" if smoke else "")
             + (", seed-faithful I/O and AP" if faithful else "") + " vs the paper's "
             + ("Market-1501" if _paper_dataset(dataset) == PAPER_DATASETS[0] else "DukeMTMC-reID") + " numbers")
    results = Path(results)
    atomic_write_text(results / "reproduction.md", render_comparison(table, "md", title))
    atomic_write_text(results / "reproduction.csv", render_comparison(table, "csv"))
    return table
