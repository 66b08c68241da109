"""Running the matrix: train or load every model, fit DMR once on its surrogate, compute each
(model, test-time defense) pair's features once, run every pending cell and write its record.

Resumable at every level: training continues from ``last.pt``; a finished cell is a record file
found again by its key; a cell interrupted half-way resumes from the query batches it had attacked
(``<results>/partial/<key>/``, removed once its record is written); claims
keep two concurrent runs from computing the same cell or training the same model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from .. import __version__
from ..protocol import Surrogate, Threat, attack_kwargs, fitted_generator, generator_info, prepare_attack
from ..store import Claimed, checkpoint_store, claim_unless_done, content_key, produce_once
from .plan import Cell, MatrixConfig, cell_key, plan_cells
from .records import METRIC_KEYS, Record, encode_hits, git_sha, provenance, read_record, record_path, write_record

log = logging.getLogger(__name__)

__all__ = ["run_matrix", "MatrixRun", "ensure_checkpoint", "checkpoint_location", "checkpoint_store", "cell_extra"]


@dataclass
class MatrixRun:
    """What a run did: cells computed and skipped, time per stage."""

    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)      # claimed by another live run
    stages: dict[str, float] = field(default_factory=dict)
    records: list[Path] = field(default_factory=list)

    def add_time(self, stage: str, seconds: float) -> None:
        self.stages[stage] = round(self.stages.get(stage, 0.0) + seconds, 2)


def checkpoint_location(preset: str, dataset, seed: int, *, epochs: int | None, store: Path,
                        init: str | None = None) -> tuple[Path, str]:
    """Where the checkpoint of ``preset`` trained on ``dataset`` with ``seed`` lives in the store, and
    its key: the preset -- the one whose weights it uses -- and what it resolves to on the dataset
    (architecture, initialisation, recipe, training defense's arguments), the dataset fingerprint,
    the seed, epochs, reidbench version and training numerics. A preset whose model or recipe
    changes therefore never reuses a stored checkpoint of the old one."""
    from ..models.architectures import parse_init
    from ..models.presets import training_preset
    from ..train.recipes import get_recipe

    p = training_preset(preset)  # jad trains nothing of its own: it is pd's weights + CS
    arch, arch_kwargs, recipe = p.resolve(dataset, parse_init(init))
    key = content_key({"preset": p.name, "dataset": dataset.fingerprint(), "seed": seed, "epochs": epochs,
                       "reidbench": __version__, "numerics": training_numerics(p),
                       "model": {"arch": arch, "arch_kwargs": arch_kwargs, "recipe": get_recipe(recipe).to_dict(),
                                 "train_defense_kwargs": p.train_defense_kwargs}})
    return store / f"{p.name}-{dataset.name}-s{seed}-{key[:12]}" / "model.pt", key


def ensure_checkpoint(preset: str, dataset, seed: int, *, epochs: int | None, device: str, store: Path,
                      progress: bool, run: MatrixRun | None = None, wait: bool = True,
                      init: str | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint of ``preset`` trained on ``dataset`` with ``seed`` (``init``: ``"imagenet"`` /
    ``"scratch"``, None: the preset's default): loaded from the store when present, trained (resuming
    a killed training) otherwise. ``wait=False``: None at once when another process is training it."""
    from ..models.architectures import parse_init
    from ..models.presets import get_preset, training_preset
    from ..train import train_preset

    p = training_preset(preset)
    if p.name != get_preset(preset).name:
        log.info("%s uses the weights of %s (it adds a test-time defense only)", preset, p.name)
    ckpt, key = checkpoint_location(preset, dataset, seed, epochs=epochs, store=store, init=init)
    out = ckpt.parent

    def train() -> None:
        t0 = time.perf_counter()
        log.info("training %s (seed %d) into %s", p.name, seed, out)
        train_preset(p.name, dataset, out, seed=seed, epochs=epochs, device=device, resume=True, progress=progress,
                     pretrained=parse_init(init))
        if run is not None:
            run.add_time(f"train {p.name} (seed {seed})", time.perf_counter() - t0)

    produce_once(ckpt, store, "train-" + key, f"training {p.name}", train, wait=wait)
    if not ckpt.is_file():
        return None
    card = json.loads(ckpt.with_suffix(".json").read_text())
    return ckpt, card


def training_numerics(preset) -> dict[str, Any]:
    """The numerics versions a trained checkpoint depends on: the training engine's and those of the
    preset's training defense (hashed into the checkpoint's key)."""
    from ..registry import parse_defense
    from ..train import TRAIN_NUMERICS

    return {"train": TRAIN_NUMERICS, "defense": parse_defense(preset.train_defense).numerics}


def _metrics(res: dict) -> dict[str, float]:
    return {k: round(float(res[k]), 4) for k in METRIC_KEYS}


PER_QUERY_AP_DIGITS = 4  # records keep each query's AP to 4 decimals: a mean over them is exact to 0.005 points


def _per_query(res: dict) -> dict[str, Any]:
    pq = res["per_query"]
    ranks = pq["first_match_rank"]
    out = {"n": len(ranks), "r1_hits": encode_hits([r == 0 for r in ranks]),
           "ap": [round(float(a), PER_QUERY_AP_DIGITS) for a in pq["ap"]]}
    if "rerank" in res:
        out["r1_hits_rerank"] = encode_hits([r == 0 for r in res["rerank"]["per_query"]["first_match_rank"]])
        out["ap_rerank"] = [round(float(a), PER_QUERY_AP_DIGITS) for a in res["rerank"]["per_query"]["ap"]]
    return out


def cell_numerics(cell: Cell) -> dict[str, Any]:
    """The numerics versions of the code that computes ``cell``: its attack's, its test-time
    defense's parts' and the evaluation's (hashed into the cell's key)."""
    from ..evaluation import EVAL_NUMERICS

    out: dict[str, Any] = {"evaluation": EVAL_NUMERICS, "defense": cell.defense.numerics}
    if not cell.is_clean:
        out["attack"] = cell.attack.numerics  # type: ignore[union-attr]
    return out


#: the parts of a transfer cell's generator information that are not hashed into its key; records
#: written before KEY_FORMAT 2 hashed them (``config["key_format"]`` absent)
PROVENANCE_ONLY = ("generator",)
KEY_FORMAT = 2


def key_surrogate(info: dict[str, Any], key_format: int = KEY_FORMAT) -> dict[str, Any]:
    """The part of a transfer cell's generator information that its key hashes: all of it before
    KEY_FORMAT 2, the provenance-only parts left out since."""
    return dict(info) if key_format < 2 else {k: v for k, v in info.items() if k not in PROVENANCE_ONLY}


def cell_extra(cell: Cell, config: MatrixConfig, defense_description: dict[str, Any] | None,
               generator: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    """What determines a cell's result besides the cell itself (hashed into its key): the
    evaluation options, the test-time defense's configuration, the attack's resolved arguments
    (:func:`~reidbench.protocol.attack_kwargs`) or, for a transfer attack, the fitted generator's
    ``(hyper-parameters, provenance)``, and the numerics versions of the code
    (:func:`cell_numerics`)."""
    extra: dict[str, Any] = {"rerank": config.rerank, "ap": config.ap, "defense": defense_description,
                             "batch_size": config.batch_size, "numerics": cell_numerics(cell)}
    if cell.threat is Threat.TRANSFER:
        if generator is None:
            raise ValueError(f"{cell.label()}: a transfer cell's key needs its fitted generator")
        # the generator's weights and surrogate determine the cell; its file in the store is provenance
        # (the same generator in another store, or on another machine, is the same cell)
        extra.update(attack=generator[0], surrogate=key_surrogate(generator[1]), io=config.io)
    elif not cell.is_clean:
        extra.update(attack=attack_kwargs(cell.attack, cell.threat, cell.defense, seed=cell.seed, eps=cell.eps,
                                          steps=cell.steps, io=config.io, eot=config.eot), io=config.io)
    return extra


def legacy_transfer_record(results: str | os.PathLike, cell: Cell, extra: dict[str, Any], *,
                           checkpoint_sha256: str, dataset_fingerprint: str) -> Record | None:
    """The record of transfer ``cell`` written before KEY_FORMAT 2, when it is this very cell: its key
    hashed the generator's file path in the store it was computed in, so today's key cannot find it.
    It is the cell when its generator is today's (the provenance-only parts aside) and its key,
    recomputed from today's ``extra`` with its own generator information, is its file's key: any
    other difference (checkpoint, data, options, numerics versions, reidbench's version) still makes
    a new cell."""
    surrogate = extra.get("surrogate")
    if surrogate is None:
        return None
    folder = Path(results) / "records"
    for p in sorted(folder.glob(f"{cell.slug()}__*.json")) if folder.is_dir() else ():
        try:
            rec = read_record(p)
        except (OSError, ValueError):
            continue  # a damaged record is not a match; iter_records names it where it matters
        theirs = rec.config.get("surrogate")
        if "key_format" in rec.config or not isinstance(theirs, dict):
            continue
        if key_surrogate(theirs) != surrogate:
            continue
        key = cell_key(cell, checkpoint_sha256=checkpoint_sha256, dataset_fingerprint=dataset_fingerprint,
                       extra={**extra, "surrogate": key_surrogate(theirs, key_format=1)})
        if key == rec.key:
            return rec
    return None


@dataclass
class _Planned:
    """A cell with its key and record path, resolved before anything is computed."""

    cell: Cell
    key: str
    path: Path
    extra: dict[str, Any]
    generator: dict[str, Any] | None = None   # transfer: surrogate and generator provenance


@dataclass
class _Row:
    """What every cell of a row (seed, model, test-time defense) shares once computed."""

    model: Any
    defense: Any
    evalset: Any
    eval_model: Any
    clean: dict[str, Any]
    common: dict[str, Any]


class _MatrixRunner:
    """``run_matrix`` as named steps: load the dataset, plan, and per row: train or load the model,
    key every cell, skip the recorded ones, compute features once, run and record the rest."""

    def __init__(self, config: MatrixConfig, results: Path, store: Path, force: bool, progress: bool,
                 echo: Callable[[str], None]) -> None:
        self.config, self.results, self.store = config, results, store
        self.force, self.progress, self.echo = force, progress, echo
        self.run = MatrixRun()
        self.generators: dict[tuple, tuple] = {}

    # -- steps ---------------------------------------------------------------------------------------
    def load_dataset(self):
        from ..data import open_dataset

        t0 = time.perf_counter()
        c = self.config
        self.dataset = open_dataset(c.dataset, c.data_root, size=c.synth_size, progress=self.progress)
        self.fingerprint = self.dataset.fingerprint()
        self.run.add_time("dataset", time.perf_counter() - t0)

    def rows(self) -> dict[tuple, list[Cell]]:
        cells = plan_cells(self.config)
        groups: dict[tuple, list[Cell]] = {}
        for c in cells:
            groups.setdefault((c.seed, c.model, c.defense), []).append(c)
        self.n_cells = len(cells)
        c = self.config
        self.echo(f"matrix: {len(cells)} cells ({len(c.models)} models x {len(c.defenses)} test-time defenses x "
                  f"{len(c.attacks)} attacks, seeds {list(c.seeds)}) on {self.dataset.name}; results in {self.results}")
        return groups

    def checkpoint(self, preset: str, seed: int, wait: bool = True) -> tuple[Path, dict[str, Any]] | None:
        c = self.config
        return ensure_checkpoint(preset, self.dataset, seed, epochs=c.epochs, device=c.device, store=self.store,
                                 progress=self.progress, run=self.run, wait=wait, init=c.init)

    def location(self, preset: str, seed: int) -> tuple[Path, str]:
        """:func:`checkpoint_location` of ``preset`` and ``seed`` under this run's options."""
        c = self.config
        return checkpoint_location(preset, self.dataset, seed, epochs=c.epochs, store=self.store, init=c.init)

    def train_first(self, groups: dict[tuple, list[Cell]]) -> list[tuple]:
        """Claim and run every training this run needs (the surrogate of transfer attacks included)
        before any attack cell, passing over those another run is training; returns the rows in the
        order to run them: rows whose weights are there first, rows waiting on another run last. So
        copies of the matrix on one results folder (a job array) train in parallel instead of all
        waiting behind the first training."""
        c = self.config
        needed = [(model, seed) for (seed, model, _) in groups]
        needed += [(c.surrogate, cell.seed) for group in groups.values() for cell in group
                   if cell.threat is Threat.TRANSFER]
        for model, seed in dict.fromkeys(needed):
            self.checkpoint(model, seed, wait=False)

        def ready(row: tuple) -> bool:
            seed, model, _ = row
            return self.location(model, seed)[0].is_file()

        return sorted(groups, key=lambda row: not ready(row))  # stable: the plan's order otherwise

    def generator(self, cell: Cell):
        """The fitted transfer attack of ``cell`` (fitted once per attack, seed and budget)."""
        c = self.config
        gkey = (cell.attack, cell.seed, cell.eps)
        if gkey not in self.generators:
            sur_ckpt, sur_card = self.checkpoint(c.surrogate, cell.seed)  # type: ignore[misc]
            overrides = {"epochs": c.dmr_epochs}  # --dmr-epochs: the fitting epochs of transfer attacks
            on_fit = (lambda s: self.run.add_time(f"fit {cell.attack.title}", s))  # type: ignore[union-attr]
            atk, path = fitted_generator(cell.attack, Surrogate(sur_ckpt, self.dataset, c.device, self.store,
                                                                self.progress, overrides, on_fit),
                                         eps=cell.eps, seed=cell.seed)
            info = {"surrogate_preset": c.surrogate, "surrogate_sha256": sur_card["sha256"], **generator_info(atk, path)}
            self.generators[gkey] = (atk, path, info)
        return self.generators[gkey]

    def plan_row(self, group: list[Cell], card: dict[str, Any], defense) -> list[_Planned]:
        """Each cell's key (cheap: no features, no attack) so that recorded cells are found."""
        planned = []
        for cell in group:
            info = generator = None
            if cell.threat is Threat.TRANSFER:
                atk, _, info = self.generator(cell)
                generator = (atk.hyperparameters(), info)
            extra = cell_extra(cell, self.config, defense.describe() if defense is not None else None, generator)
            key = cell_key(cell, checkpoint_sha256=card["sha256"], dataset_fingerprint=self.fingerprint, extra=extra)
            path = record_path(self.results, cell.slug(), key)
            if generator is not None and not path.is_file() and not self.force:
                legacy = legacy_transfer_record(self.results, cell, extra, checkpoint_sha256=card["sha256"],
                                                dataset_fingerprint=self.fingerprint)
                if legacy is not None:  # recorded under the key format of before: the same cell, found
                    key, path = legacy.key, record_path(self.results, cell.slug(), legacy.key)
            planned.append(_Planned(cell, key, path, extra, info))
        return planned

    def prepare_row(self, model_name: str, ckpt: Path, card: dict[str, Any], defense) -> _Row:
        """Load the model, compute query and gallery features once (through the defense) and the
        clean metrics."""
        from ..attacks.evaluate import prepare_evalset
        from ..models.defended import DefendedModel
        from ..evaluation import evaluate_features
        from ..models import load_checkpoint

        c = self.config
        t0 = time.perf_counter()
        model, _ = load_checkpoint(ckpt, device=c.device)
        evalset = prepare_evalset(model, self.dataset, c.device, 128, self.progress, defense=defense, adaptive=False)
        eval_model = DefendedModel(model, defense) if defense is not None else model
        clean = evaluate_features(evalset.q_feats, evalset.g_feats, evalset.q_pids, evalset.g_pids,
                                  evalset.q_camids, evalset.g_camids, rerank=c.rerank, ap=c.ap)
        self.run.add_time("features and clean evaluation", time.perf_counter() - t0)
        common = {"model": {"preset": model_name, "arch": card["arch"], "checkpoint": str(ckpt),
                            "sha256": card["sha256"], "train_defense": card.get("train_defense"),
                            "epochs": card.get("recipe", {}).get("epochs"),
                            "init": card.get("init") or ("scratch" if not card.get("pretrained") else "imagenet")},
                  "dataset": {"name": self.dataset.name, "fingerprint": self.fingerprint,
                              "root": str(self.dataset.root), "queries": len(evalset.q_pids),
                              "gallery": len(evalset.g_pids)},
                  "defense": defense.describe() if defense is not None else None, "matrix": c.to_dict()}
        return _Row(model, defense, evalset, eval_model, clean, common)

    def run_cell(self, item: _Planned, row: _Row) -> Record:
        """Attack (unless clean), evaluate, and return the record."""
        from ..attacks.evaluate import attack_queries, evaluate_attacked
        from ..checks import run_checks

        c, cell = self.config, item.cell
        t_cell = time.perf_counter()
        perturbation = attack_repr = hp = components = checks = None
        attack_seconds = check_seconds = 0.0
        if cell.is_clean:
            res = row.clean
        else:
            fitted = self.generator(cell)[:2] if cell.threat is Threat.TRANSFER else None
            kwargs = item.extra.get("attack")
            prepared = prepare_attack(row.model, cell.attack, row.defense, cell.threat, row.evalset,
                                      kwargs=kwargs, fitted=fitted)
            out = attack_queries(prepared.attack, row.evalset, row.eval_model, batch_size=c.batch_size,
                                 device=c.device, io=c.io, progress=self.progress, context=prepared.context,
                                 key=item.key, resume=self.partial(item))
            scored = evaluate_attacked(out, row.evalset, rerank=c.rerank, ap=c.ap)
            res = scored["attacked"]
            if "components" in scored:
                components = {name: {"metrics": _metrics(m), "per_query": _per_query(m),
                                     "perturbation": {k: out["components"][name][k]
                                                      for k in ("linf_max", "linf_mean", "l2_mean")}}
                              for name, m in scored["components"].items()}
            perturbation = {"linf_max": out["linf_max"], "linf_mean": out["linf_mean"], "l2_mean": out["l2_mean"]}
            attack_repr = repr(prepared.attack)
            hp = prepared.attack.hyperparameters()
            attack_seconds = round(out["seconds"], 3)
            if c.checks > 0 and fitted is None:
                t_check = time.perf_counter()

                def rebuild(steps: int):
                    return prepare_attack(row.model, cell.attack, row.defense, cell.threat, row.evalset,
                                          kwargs={**(kwargs or {}), "steps": steps}).attack

                checks = run_checks(prepared.attack, out, row.evalset, row.eval_model, rebuild=rebuild,
                                    context=prepared.context, batch_size=c.batch_size, device=c.device, io=c.io,
                                    key=item.key, ap=c.ap, subset=c.checks,
                                    resume=self.partial(item) / "check")
                check_seconds = round(time.perf_counter() - t_check, 3)
        wall = time.perf_counter() - t_cell
        return Record(
            key=item.key, slug=cell.slug(), cell=cell.spec(),
            attack_spec=None if cell.is_clean else cell.attack.text,  # type: ignore[union-attr]
            eps=(hp or {}).get("eps", cell.budget),  # the resolved budget (the cell's or the attack's default)
            metrics=_metrics(res), metrics_rerank=_metrics(res["rerank"]) if c.rerank else None,
            clean_metrics=_metrics(row.clean), perturbation=perturbation, per_query=_per_query(res),
            components=components, checks=checks,
            config={**row.common, "attack": attack_repr, "attack_hyperparameters": hp, "surrogate": item.generator,
                    "io": c.io, "ap": c.ap, "rerank": c.rerank, "eot": (hp or {}).get("eot_samples"),
                    "numerics": item.extra["numerics"], "key_format": KEY_FORMAT},
            seeds={"model": cell.seed, "attack": cell.seed, "randomness": "keyed by the cell key, query index, step"},
            provenance={**provenance(c.device), "wall_seconds": round(wall, 3), "attack_seconds": attack_seconds,
                        "check_seconds": check_seconds,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        )

    def partial(self, item: _Planned) -> Path:
        """Where the cell keeps the query batches it has attacked until its record is written."""
        return self.results / "partial" / item.key[:32]

    def discard_partial(self, item: _Planned) -> None:
        shutil.rmtree(self.partial(item), ignore_errors=True)

    def record(self, item: _Planned, row: _Row, bar) -> None:
        """Claim the cell, run it (resuming its saved batches, unless forced) and write its record
        atomically (skipped when another run holds it or finished it meanwhile)."""
        state, claim = claim_unless_done(self.results, item.key, item.path, force=self.force)
        if state is not Claimed.OURS:
            (self.run.busy if state is Claimed.BUSY else self.run.skipped).append(item.key)
            return
        try:
            bar.set_postfix_str(item.cell.label())
            t0 = time.perf_counter()
            if self.force:
                self.discard_partial(item)
            write_record(item.path, self.run_cell(item, row))
            self.discard_partial(item)
            self.run.computed.append(item.key)
            self.run.records.append(item.path)
            self.run.add_time("features and clean evaluation" if item.cell.is_clean else "attacks and evaluation",
                              time.perf_counter() - t0)
        finally:
            claim.release()

    def __call__(self) -> MatrixRun:
        t_start = time.perf_counter()
        git_sha()  # provenance of the code this process runs: read now, not when the first record is written
        (self.results / "records").mkdir(parents=True, exist_ok=True)
        self.load_dataset()
        groups = self.rows()
        bar = tqdm(total=self.n_cells, desc="matrix cells", unit="cell", disable=not self.progress)
        for row_key in self.train_first(groups):
            (seed, model_name, defense_spec), group = row_key, groups[row_key]
            ckpt, card = self.checkpoint(model_name, seed)
            defense = defense_spec.build()
            pending = []
            for item in self.plan_row(group, card, defense):
                if item.path.is_file() and not self.force:
                    self.run.skipped.append(item.key)
                    self.run.records.append(item.path)
                    bar.update(1)
                else:
                    pending.append(item)
            if not pending:
                continue
            row = self.prepare_row(model_name, ckpt, card, defense)
            for item in pending:
                try:
                    self.record(item, row, bar)
                finally:
                    bar.update(1)
        bar.close()
        self.run.add_time("total", time.perf_counter() - t_start)
        return self.run


def run_matrix(config: MatrixConfig, results: str | os.PathLike, *, force: bool = False, progress: bool = True,
               store: str | os.PathLike | None = None, echo: Callable[[str], None] | None = None) -> MatrixRun:
    """Run every cell of ``config`` not yet recorded under ``results`` (all of them with ``force``)."""
    return _MatrixRunner(config, Path(results), Path(store) if store is not None else checkpoint_store(), force,
                         progress, echo or (lambda s: None))()


def load_cell_record(results: str | os.PathLike, cell: Cell, key: str) -> Record | None:
    p = record_path(results, cell.slug(), key)
    return read_record(p) if p.is_file() else None
