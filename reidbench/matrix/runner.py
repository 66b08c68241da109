"""Running the matrix: train or load every model, fit DMR once on its surrogate, compute each
(model, test-time defense) pair's features once, run every pending cell and write its record.

Resumable at every level: training continues from ``last.pt``; a finished cell is a record file
found again by its key; a cell interrupted half-way has no record and is simply run again; claims
keep two concurrent runs from computing the same cell or training the same model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from .. import __version__
from .plan import Cell, MatrixConfig, cell_key, plan_cells
from .records import (RECORD_FORMAT, CellClaim, encode_hits, git_sha, provenance, read_record, record_path,
                      write_record)

log = logging.getLogger(__name__)

__all__ = ["run_matrix", "MatrixRun", "ensure_checkpoint", "checkpoint_store", "fitted_dmr", "DMR_SYNTH_CONFIG"]

#: DMR on the embedded synthreid (128x64 persons, CPU): half-width generator and discriminator and
#: 3 epochs (about 2.5 minutes on 2 cores); the reference configuration is used on real datasets.
DMR_SYNTH_CONFIG = {"ngf": 16, "ndf": 32, "epochs": 3}
DMR_REAL_CONFIG = {"ngf": 32, "ndf": 64, "epochs": 50}


def checkpoint_store() -> Path:
    from ..data.base import default_data_home

    return Path(os.environ.get("REIDBENCH_CHECKPOINTS") or Path(default_data_home()) / "checkpoints")


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


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


def _wait_for(path: Path, claim: CellClaim, what: str, poll: float = 5.0) -> bool:
    """Another process holds ``claim``: wait until ``path`` appears (True) or the claim is released
    or goes stale without it (False: the caller produces it)."""
    log.warning("%s is being produced by another reidbench run; waiting for it", what)
    while not path.is_file():
        if claim.acquire():
            return False
        time.sleep(poll)
    return True


def ensure_checkpoint(preset: str, dataset, seed: int, *, epochs: int | None, device: str, store: Path,
                      progress: bool, run: MatrixRun | None = None) -> tuple[Path, dict[str, Any]]:
    """The checkpoint of ``preset`` trained on ``dataset`` with ``seed``: loaded from the store when
    present, trained (resuming a killed training) otherwise. Keyed by preset, dataset fingerprint,
    seed, epochs and reidbench's version."""
    from ..models.presets import get_preset, training_preset
    from ..train import train_preset

    p = training_preset(preset)  # jad trains nothing of its own: it is pd's weights + CS
    if p.name != get_preset(preset).name:
        log.info("%s uses the weights of %s (it adds a test-time defense only)", preset, p.name)
    key = _hash({"preset": p.name, "dataset": dataset.fingerprint(), "seed": seed, "epochs": epochs,
                 "reidbench": __version__})
    out = store / f"{p.name}-{dataset.name}-s{seed}-{key[:12]}"
    ckpt = out / "model.pt"
    if not ckpt.is_file():
        claim = CellClaim(store, "train-" + key)
        if claim.acquire() or not _wait_for(ckpt, claim, f"training {p.name}"):
            try:
                if not ckpt.is_file():
                    t0 = time.perf_counter()
                    log.info("training %s (seed %d) into %s", p.name, seed, out)
                    train_preset(p.name, dataset, out, seed=seed, epochs=epochs, device=device,
                                 resume=True, progress=progress)
                    if run is not None:
                        run.add_time(f"train {p.name} (seed {seed})", time.perf_counter() - t0)
            finally:
                claim.release()
    card = json.loads(ckpt.with_suffix(".json").read_text())
    return ckpt, card


def fitted_dmr(surrogate_ckpt: str | os.PathLike, dataset, *, eps: float | None = None, seed: int = 0,
               device: str = "cpu", store: str | os.PathLike | None = None, progress: bool = True,
               overrides: dict[str, Any] | None = None, run: MatrixRun | None = None):
    """A DMR generator fitted on the checkpoint ``surrogate_ckpt`` with ``dataset``'s training split:
    loaded from the store when this (surrogate, dataset, configuration, seed) was fitted before,
    fitted and saved otherwise. Returns ``(attack, generator path)``."""
    from ..attacks import DMR
    from ..data import load_images
    from ..models import load_checkpoint
    from ..models.presets import is_synthetic

    store = Path(store) if store is not None else checkpoint_store()
    surrogate_card = json.loads(Path(surrogate_ckpt).with_suffix(".json").read_text())
    kw = dict(DMR_SYNTH_CONFIG if is_synthetic(dataset.name) else DMR_REAL_CONFIG)
    kw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    kw["seed"] = seed
    if eps is not None:
        kw["eps"] = eps
    probe = DMR(None, **kw)
    key = _hash({"surrogate": surrogate_card["sha256"], "dataset": dataset.fingerprint(),
                 "attack": probe.hyperparameters(), "reidbench": __version__})
    path = store / "dmr" / f"dmr-{surrogate_card.get('preset', 'model')}-{key[:12]}" / "generator.pt"
    if not path.is_file():
        claim = CellClaim(store, "dmr-" + key)
        if claim.acquire() or not _wait_for(path, claim, "DMR fitting"):
            try:
                if not path.is_file():
                    t0 = time.perf_counter()
                    surrogate, _ = load_checkpoint(surrogate_ckpt, device=device)
                    train = load_images(dataset.train, progress=progress, desc="decoding train")
                    probe.fit(surrogate, train.images, train.pids, device=device, progress=progress)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    probe.save(path, surrogate={"preset": surrogate_card.get("preset"),
                                                "sha256": surrogate_card["sha256"], "checkpoint": str(surrogate_ckpt)},
                               dataset={"name": dataset.name, "fingerprint": dataset.fingerprint()})
                    if run is not None:
                        run.add_time("fit DMR", time.perf_counter() - t0)
            finally:
                claim.release()
    return DMR.load(path, device=device), path


def _metrics(res: dict) -> dict[str, float]:
    return {k: round(float(res[k]), 4) for k in ("R1", "R5", "R10", "mAP", "mINP")}


def _per_query(res: dict) -> dict[str, Any]:
    pq = res["per_query"]
    ranks = pq["first_match_rank"]
    out = {"n": len(ranks), "r1_hits": encode_hits([r == 0 for r in ranks]),
           "ap": [round(float(a), 4) for a in pq["ap"]]}
    if "rerank" in res:
        out["r1_hits_rerank"] = encode_hits([r == 0 for r in res["rerank"]["per_query"]["first_match_rank"]])
        out["ap_rerank"] = [round(float(a), 4) for a in res["rerank"]["per_query"]["ap"]]
    return out


def run_matrix(config: MatrixConfig, results: str | os.PathLike, *, force: bool = False, progress: bool = True,
               store: str | os.PathLike | None = None, echo: Callable[[str], None] | None = None) -> MatrixRun:
    """Run every cell of ``config`` not yet recorded under ``results`` (all of them with ``force``)."""
    from ..attacks import build_attack
    from ..attacks.evaluate import attack_queries, prepare_evalset
    from ..data import load_dataset
    from ..defenses import DefendedModel, build_defense
    from ..evaluation import evaluate_features
    from ..models import load_checkpoint

    echo = echo or (lambda s: None)
    git_sha()  # provenance of the code this process runs: read now, not when the first record is written
    run = MatrixRun()
    results = Path(results)
    (results / "records").mkdir(parents=True, exist_ok=True)
    store = Path(store) if store is not None else checkpoint_store()
    t_start = time.perf_counter()

    t0 = time.perf_counter()
    if config.dataset.lower().startswith("synth"):
        dataset = load_dataset("synthreid", config.data_root, size=config.synth_size, progress=progress)
    else:
        dataset = load_dataset(config.dataset, config.data_root)
    fingerprint = dataset.fingerprint()
    run.add_time("dataset", time.perf_counter() - t0)
    cells = plan_cells(config)
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.seed, c.model, c.defense), []).append(c)
    echo(f"matrix: {len(cells)} cells ({len(config.models)} models x {len(config.defenses)} test-time defenses x "
         f"{len(config.attacks)} attacks, seeds {list(config.seeds)}) on {dataset.name}; results in {results}")

    dmr_cache: dict[tuple, tuple] = {}
    cell_bar = tqdm(total=len(cells), desc="matrix cells", unit="cell", disable=not progress)
    for (seed, model_name, label), group in groups.items():
        ckpt, card = ensure_checkpoint(model_name, dataset, seed, epochs=config.epochs, device=config.device,
                                       store=store, progress=progress, run=run)
        defense = build_defense(label) if label != "none" else None
        defense_desc = defense.describe() if defense is not None else None

        # resolve each cell's attack (cheap) to know its key before computing anything
        planned = []
        for cell in group:
            extra: dict[str, Any] = {"rerank": config.rerank, "ap": config.ap, "defense": defense_desc,
                                     "batch_size": config.batch_size}
            dmr_info = None
            if cell.threat == "transfer":
                sur_ckpt, sur_card = ensure_checkpoint(config.surrogate, dataset, seed, epochs=config.epochs,
                                                       device=config.device, store=store, progress=progress, run=run)
                dkey = (seed, cell.eps)
                if dkey not in dmr_cache:
                    dmr_cache[dkey] = fitted_dmr(sur_ckpt, dataset, eps=cell.eps, seed=seed, device=config.device,
                                                 store=store, progress=progress, run=run,
                                                 overrides={"epochs": config.dmr_epochs,
                                                            **config.attack_args.get("dmr", {})})
                atk, gpath = dmr_cache[dkey]
                dmr_info = {"surrogate_preset": config.surrogate, "surrogate_sha256": sur_card["sha256"],
                            "generator_sha256": atk.card["sha256"], "generator": str(gpath)}
                extra.update(attack=atk.hyperparameters(), surrogate=dmr_info, io=config.io)
            elif not cell.is_clean:
                extra.update(attack=_attack_kwargs(cell, config, defense), io=config.io)
            key = cell_key(cell, checkpoint_sha256=card["sha256"], dataset_fingerprint=fingerprint, extra=extra)
            path = record_path(results, cell.slug(), key)
            planned.append((cell, key, path, extra, dmr_info))
        pending = []
        for item in planned:
            if item[2].is_file() and not force:
                run.skipped.append(item[1])
                run.records.append(item[2])
                cell_bar.update(1)
            else:
                pending.append(item)
        if not pending:
            continue

        t0 = time.perf_counter()
        model, _ = load_checkpoint(ckpt, device=config.device)
        evalset = prepare_evalset(model, dataset, config.device, 128, progress, defense=defense, adaptive=False)
        eval_model = DefendedModel(model, defense) if defense is not None else model
        clean_res = evaluate_features(evalset.q_feats, evalset.g_feats, evalset.q_pids, evalset.g_pids,
                                      evalset.q_camids, evalset.g_camids, rerank=config.rerank, ap=config.ap)
        run.add_time("features and clean evaluation", time.perf_counter() - t0)
        common = {"model": {"preset": model_name, "arch": card["arch"], "checkpoint": str(ckpt),
                            "sha256": card["sha256"], "train_defense": card.get("train_defense"),
                            "epochs": card.get("recipe", {}).get("epochs")},
                  "dataset": {"name": dataset.name, "fingerprint": fingerprint, "root": str(dataset.root),
                              "queries": len(evalset.q_pids), "gallery": len(evalset.g_pids)},
                  "defense": defense_desc, "matrix": config.to_dict()}

        for cell, key, path, extra, dmr_info in pending:
            claim = CellClaim(results, key)
            if not claim.acquire():
                run.busy.append(key)
                cell_bar.update(1)
                continue
            try:
                if path.is_file() and not force:  # finished by another run meanwhile
                    run.skipped.append(key)
                    continue
                t_cell = time.perf_counter()
                cell_bar.set_postfix_str(f"{model_name}/{label}/{cell.attack}/{cell.threat}")
                perturbation = None
                attack_repr = hp = None
                attack_seconds = 0.0
                if cell.is_clean:
                    res = clean_res
                else:
                    if cell.threat == "transfer":
                        attack = dmr_cache[(cell.seed, cell.eps)][0]
                        ctx = evalset.context()
                    else:
                        adaptive = cell.threat == "adaptive"
                        target = DefendedModel(model, defense, adaptive=True) if adaptive else model
                        attack = build_attack(cell.attack, target, **extra["attack"])
                        ctx = evalset.context(adaptive=adaptive)
                    out = attack_queries(attack, evalset, eval_model, batch_size=config.batch_size,
                                         device=config.device, io=config.io, progress=progress, context=ctx)
                    res = evaluate_features(out["features"], evalset.g_feats, evalset.q_pids, evalset.g_pids,
                                            evalset.q_camids, evalset.g_camids, rerank=config.rerank, ap=config.ap)
                    perturbation = {"linf_max": out["linf_max"], "linf_mean": out["linf_mean"],
                                    "l2_mean": out["l2_mean"]}
                    attack_repr = repr(attack)
                    hp = attack.hyperparameters()
                    attack_seconds = round(out["seconds"], 3)
                wall = time.perf_counter() - t_cell
                record = {
                    "format": RECORD_FORMAT, "key": key, "slug": cell.slug(), "cell": cell.spec(),
                    "metrics": _metrics(res),
                    "metrics_rerank": _metrics(res["rerank"]) if config.rerank else None,
                    "clean_metrics": _metrics(clean_res),
                    "perturbation": perturbation,
                    "per_query": _per_query(res),
                    "config": {**common, "attack": attack_repr,
                               "attack_hyperparameters": hp,
                               "surrogate": dmr_info, "io": config.io, "ap": config.ap, "rerank": config.rerank,
                               "eot": (hp or {}).get("eot_samples")},
                    "seeds": {"model": cell.seed, "attack": cell.seed},
                    "provenance": {**provenance(config.device), "wall_seconds": round(wall, 3),
                                   "attack_seconds": attack_seconds,
                                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                }
                write_record(path, record)
                run.computed.append(key)
                run.records.append(path)
                run.add_time("attacks and evaluation" if not cell.is_clean else "features and clean evaluation", wall)
            finally:
                claim.release()
                cell_bar.update(1)
    cell_bar.close()
    run.add_time("total", time.perf_counter() - t_start)
    return run


def _attack_kwargs(cell: Cell, config: MatrixConfig, defense) -> dict[str, Any]:
    kw: dict[str, Any] = {**cell.attack_kwargs, "seed": cell.seed}
    if cell.eps is not None:
        kw["eps"] = cell.eps
    if cell.steps is not None:
        kw["steps"] = cell.steps
    if config.io != "memory" and not cell.attack.lower().startswith("ta:"):
        kw["quantize"] = True
    if cell.threat == "adaptive" and defense is not None and not defense.deterministic:
        kw["eot_samples"] = config.eot
    return kw


def load_cell_record(results: str | os.PathLike, cell: Cell, key: str) -> dict[str, Any] | None:
    p = record_path(results, cell.slug(), key)
    return read_record(p) if p.is_file() else None
