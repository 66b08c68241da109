"""One report printer for the commands that evaluate: a Markdown table of metrics rows, or one JSON
object (``--json``), and the perturbation statistics of an attack."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate


def metric_keys() -> tuple[str, ...]:
    from ..evaluation import METRIC_KEYS

    return METRIC_KEYS


def rounded(m: dict, rerank: bool = False) -> dict[str, Any]:
    """The headline metrics of one evaluation, 4 decimals; with ``rerank``, the re-ranked ones nested."""
    out: dict[str, Any] = {k: round(float(m[k]), 4) for k in metric_keys()}
    if rerank:
        out["rerank"] = rounded(m["rerank"])
    return out


def metrics_table(rows: dict[str, dict]) -> str:
    keys = metric_keys()
    return tabulate([[name] + [f"{m[k]:.2f}" for k in keys] for name, m in rows.items()],
                    headers=["", *keys], tablefmt="github")


@dataclass
class Report:
    """What a command found: a header line, named metrics rows, lines after the table, and the
    fields of its JSON form. ``print(as_json)`` writes one or the other."""

    header: str = ""
    rows: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, metrics: dict, rerank: bool = False) -> "Report":
        """A metrics row, and its re-ranked twin when ``rerank``."""
        self.rows[name] = metrics
        if rerank:
            self.rows[f"{name} + re-ranking"] = metrics["rerank"]
        return self

    def print(self, as_json: bool = False) -> None:
        if as_json:
            print(json.dumps(self.data))
            return
        if self.header:
            print(self.header)
        print(metrics_table(self.rows))
        for line in self.notes:
            print(line)


def attack_report(res: dict, attack, rerank: bool, header: str, **fields) -> Report:
    """The report of an attack's evaluation (:func:`~reidbench.attacks.evaluate.evaluate_attack`):
    clean and attacked metrics, the perturbation's norms and the attack's time."""
    n = fields.get("queries")
    rate = f" ({n / max(res['seconds'], 1e-9):.0f} queries/s)" if n else ""
    rep = Report(header=header)
    rep.add("clean", res["clean"], rerank).add(attack.name, res["attacked"], rerank)
    for name, m in (res.get("components") or {}).items():  # an ensemble's components, below its worst case
        rep.add(f"  {attack.name}/{name}", m, rerank)
    rep.notes.append(f"perturbation: L-inf max {res['linf_max'] * 255:.2f}/255, mean {res['linf_mean'] * 255:.2f}/255;"
                     f" L2 mean {res['l2_mean']:.4f}; attack time {res['seconds']:.1f} s{rate}")
    rep.data = {"clean": rounded(res["clean"], rerank), "attacked": rounded(res["attacked"], rerank),
                "linf_max": res["linf_max"], "linf_mean": res["linf_mean"], "l2_mean": res["l2_mean"],
                "seconds": round(res["seconds"], 3), "attack": repr(attack), **fields}
    if res.get("components"):
        rep.data["components"] = {name: rounded(m, rerank) for name, m in res["components"].items()}
        rep.notes.append(f"{attack.name}: per query the worst of its components ({', '.join(res['components'])}) "
                         "as the attacker sees it")
    return rep
