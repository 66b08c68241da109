"""The matrix on a Ray cluster (``reidbench matrix ... --executor ray``; extra ``reidbench[distributed]``).

The driver plans exactly as the in-process runner does and writes every record itself, atomically,
into ``--results``. The work goes to Ray tasks with their dependencies:

1. each training (a preset and seed whose checkpoint the driver's store lacks), and each fit of a
   transfer attack (DMR) on its surrogate;
2. per row (model, test-time defense, seed) the query and gallery features and the clean metrics;
3. every attack cell of the row, on those features.

Workers share no filesystem with the driver: checkpoints and fitted generators travel as bytes
through Ray's object store into a private store of each worker process, and come back to the
driver's store the same way; features travel as objects; records come back as dictionaries. Each
worker opens the dataset itself (``--data-root`` must hold the same copy on every node; synthreid is
generated) and checks its fingerprint against the driver's. A task whose worker dies is retried by
Ray (``max_retries``), and so is one that raises (a lost node's half-written file, an out-of-memory
kill): cells are deterministic, so a retry gives the same record.

The driver claims every training it submits in the store and every cell in ``--results/claims``
(:class:`~reidbench.store.CellClaim`, heartbeats included) and releases each once its checkpoint or
record is written or the run fails, so a Ray run and in-process or SLURM runs that share a store and
a results folder never train a model or compute a cell twice: a training another live run holds is
waited for (and trained here if that run dies), a cell it holds is reported busy and left to it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..utils import atomic_path

__all__ = ["run_matrix_ray", "ray_available", "INSTALL_HINT", "RayExecutorError"]

INSTALL_HINT = "pip install 'reidbench[distributed]' (Ray)"


class RayExecutorError(RuntimeError):
    """Ray is missing, the cluster does not answer, or a worker's data differs from the driver's."""


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


# -- on the workers ---------------------------------------------------------------------------------
_STORES: dict[str, Path] = {}
_RUNNERS: dict[str, Any] = {}       # one runner (an opened dataset) per plan, kept between tasks
_MODELS: dict[tuple, Any] = {}      # the last loaded checkpoint(s): a row's cells reuse them


def _worker_runner(config, fingerprint: str, files: dict[str, bytes]):
    """This worker process's runner on its private store, with ``files`` (store-relative paths:
    checkpoints, fitted generators) written into it. The runner and its opened dataset stay with the
    worker process for the next task of the same plan (opening Market-1501 lists and hashes 30k files)."""
    from .runner import _MatrixRunner

    store = _STORES.setdefault("store", Path(tempfile.mkdtemp(prefix="reidbench-ray-store-")))
    for rel, data in files.items():
        p = store / rel
        if not p.is_file():
            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(p) as tmp:
                tmp.write_bytes(data)
    key = f"{config!r}|{fingerprint}"
    runner = _RUNNERS.get(key)
    if runner is None:
        runner = _MatrixRunner(config, store / "results", store, force=True, progress=False, echo=lambda s: None)
        runner.load_dataset()
        if runner.fingerprint != fingerprint:
            raise RayExecutorError(f"the worker on {os.uname().nodename} sees other {runner.dataset.name} data than the "
                                   f"driver (fingerprint {runner.fingerprint[:16]}... vs {fingerprint[:16]}...): every "
                                   "node needs the same copy of the dataset at --data-root")
        _RUNNERS.clear()  # one plan at a time per worker
        _RUNNERS[key] = runner
    return runner, store


def _loaded(ckpt: Path, device: str):
    """The model of ``ckpt`` (a store path named by its key), loaded once per worker while its row's
    cells come; the previous row's model is dropped."""
    from ..models import load_checkpoint

    key = (str(ckpt), device, ckpt.stat().st_mtime_ns)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = load_checkpoint(ckpt, device=device)[0]
    return _MODELS[key]


def _folder_files(store: Path, folder: Path, names: tuple[str, ...] | None = None) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and (names is None or p.name in names)}


def _train_task(config, fingerprint: str, preset: str, seed: int) -> dict[str, bytes]:
    runner, store = _worker_runner(config, fingerprint, {})
    ckpt, _ = runner.checkpoint(preset, seed)
    return _folder_files(store, ckpt.parent, ("model.pt", "model.json"))


def _fit_task(config, fingerprint: str, files: dict[str, bytes], cell) -> dict[str, bytes]:
    runner, store = _worker_runner(config, fingerprint, files)
    _, path, _ = runner.generator(cell)
    return _folder_files(store, Path(path).parent)


def _row_task(config, fingerprint: str, files: dict[str, bytes], model_name: str, seed: int, defense_spec):
    runner, _ = _worker_runner(config, fingerprint, files)
    ckpt, card = runner.checkpoint(model_name, seed)
    row = runner.prepare_row(model_name, ckpt, card, defense_spec.build())
    return {"evalset": row.evalset, "clean": row.clean, "common": row.common}


def _cell_task(config, fingerprint: str, files: dict[str, bytes], model_name: str, seed: int, defense_spec,
               payload: dict[str, Any], item, fault_once: str | None = None) -> dict[str, Any]:
    from ..models.defended import DefendedModel
    from .runner import _Row

    if fault_once and not Path(fault_once).exists():  # the tests' lost worker: fail once, then succeed
        Path(fault_once).write_text("failed once\n")
        raise OSError("injected fault: this worker was lost mid-cell")
    runner, _ = _worker_runner(config, fingerprint, files)
    ckpt, _ = runner.checkpoint(model_name, seed)
    model = _loaded(ckpt, config.device)
    defense = defense_spec.build()
    eval_model = DefendedModel(model, defense) if defense is not None else model
    row = _Row(model, defense, payload["evalset"], eval_model, payload["clean"], payload["common"])
    record = runner.run_cell(item, row).to_dict()  # a retry on this worker resumes its saved batches
    runner.discard_partial(item)
    return record


# -- on the driver ------------------------------------------------------------------------------------
def _connect(address: str | None, num_cpus: int | None):
    try:
        import ray
    except ImportError as e:
        raise RayExecutorError(f"--executor ray needs Ray: {INSTALL_HINT}") from e
    if ray.is_initialized():
        return ray
    if address and address != "auto":  # ray.init waits a long time for a dead address: ask the port first
        import socket

        host, _, port = address.rpartition(":")
        host = host.removeprefix("ray://") or "127.0.0.1"
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                pass
        except (OSError, ValueError) as e:
            raise RayExecutorError(f"the Ray cluster at {address} does not answer ({e}): start it with "
                                   "`ray start --head` there, or give its address as --address HOST:PORT") from e
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RayExecutorError(f"cannot reach the Ray cluster at {address or 'a new local one'}: {e}. Start it "
                               "(`ray start --head`) or give its address as --address HOST:PORT") from e
    return ray


def run_matrix_ray(config, results: str | os.PathLike, *, address: str | None = None,
                   gpus_per_task: float | None = None, cpus_per_task: float = 1.0, num_cpus: int | None = None,
                   max_retries: int = 2, force: bool = False, progress: bool = True,
                   store: str | os.PathLike | None = None, echo: Callable[[str], None] | None = None,
                   fault_once: str | os.PathLike | None = None):
    """Run every cell of ``config`` not yet recorded under ``results`` on Ray (module docstring).
    ``address``: a running cluster (``HOST:PORT`` or ``auto``); None starts a local one of
    ``num_cpus`` CPUs. ``gpus_per_task`` (fractional allowed; default: 1 when the cluster has GPUs,
    else none) and ``cpus_per_task`` size each task. ``fault_once`` (tests): a path on a filesystem the
    workers share; the first cell task that finds it absent creates it and fails. Returns the
    :class:`MatrixRun`."""
    from ..protocol import Threat
    from ..store import CellClaim, Claimed, checkpoint_store, claim_unless_done, produce_once
    from .records import Record, git_sha, write_record
    from .runner import _MatrixRunner

    ray = _connect(address, num_cpus)
    if gpus_per_task is None:
        gpus_per_task = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    opts = {"num_cpus": cpus_per_task, "num_gpus": gpus_per_task, "max_retries": max_retries,
            "retry_exceptions": True}
    train_r, fit_r, row_r, cell_r = (ray.remote(**opts)(f) for f in (_train_task, _fit_task, _row_task, _cell_task))

    t_start = time.perf_counter()
    git_sha()
    runner = _MatrixRunner(config, Path(results), Path(store) if store is not None else checkpoint_store(), force,
                           progress, echo or (lambda s: None))
    run = runner.run
    (runner.results / "records").mkdir(parents=True, exist_ok=True)
    runner.load_dataset()
    fp = runner.fingerprint
    groups = runner.rows()

    def install(files: dict[str, bytes]) -> None:
        for rel, data in files.items():
            p = runner.store / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(p) as tmp:
                tmp.write_bytes(data)

    def files_of(model_name: str, seed: int) -> dict[str, bytes]:
        ckpt, _ = runner.location(model_name, seed)
        return _folder_files(runner.store, ckpt.parent, ("model.pt", "model.json"))

    # 1. trainings: every (training preset, seed) the plan needs, once, in parallel
    needed = list(dict.fromkeys([(m, s) for (s, m, _) in groups]
                                + [(config.surrogate, cell.seed) for g in groups.values() for cell in g
                                   if cell.threat is Threat.TRANSFER]))
    # claimed in the store as the local runner claims them (produce_once's key): a training that another
    # run holds is waited for, and trained here only if that run dies
    pending, held, others, seen = {}, [], [], set()
    t0 = time.perf_counter()
    try:
        for model_name, seed in needed:
            ckpt, key = runner.location(model_name, seed)
            if ckpt in seen:
                continue
            seen.add(ckpt)
            state, claim = claim_unless_done(runner.store, "train-" + key, ckpt)
            if state is Claimed.OURS:
                held.append(claim)
                pending[train_r.remote(config, fp, model_name, seed)] = model_name
            elif state is Claimed.BUSY:
                others.append((ckpt, key, model_name, seed))
        for ref in pending:
            install(ray.get(ref))
    finally:
        for claim in held:
            claim.release()
    for ckpt, key, model_name, seed in others:
        produce_once(ckpt, runner.store, "train-" + key, f"training {model_name} (seed {seed})",
                     lambda m=model_name, s=seed: install(ray.get(train_r.remote(config, fp, m, s))))
    if pending or others:
        run.add_time("training (ray)", time.perf_counter() - t0)

    # 2. transfer attacks fitted on their surrogate, once per attack, seed and budget
    fits = {}
    for g in groups.values():
        for cell in g:
            if cell.threat is Threat.TRANSFER and (cell.attack, cell.seed, cell.eps) not in fits:
                fits[(cell.attack, cell.seed, cell.eps)] = fit_r.remote(config, fp, files_of(config.surrogate, cell.seed),
                                                                        cell)
    gen_files: dict[str, bytes] = {}
    for ref in fits.values():
        got = ray.get(ref)
        install(got)
        gen_files.update(got)

    # 3. rows and their cells: keys planned here, work on the cluster, records written here
    bar = tqdm(total=runner.n_cells, desc="matrix cells (ray)", unit="cell", disable=not progress)
    cells: dict[Any, tuple] = {}
    claims: dict[str, CellClaim] = {}  # the driver claims each cell it submits, as an in-process run does

    def skip(item) -> None:  # recorded already
        run.skipped.append(item.key)
        run.records.append(item.path)
        bar.update(1)

    try:
        for (seed, model_name, defense_spec), group in groups.items():
            ckpt, card = runner.checkpoint(model_name, seed)
            planned = runner.plan_row(group, card, defense_spec.build())
            todo = []
            for item in planned:
                state, claim = claim_unless_done(runner.results, item.key, item.path, force=force)
                if state is Claimed.DONE:
                    skip(item)
                elif state is Claimed.BUSY:  # another live run (in-process, SLURM array, another driver) holds it
                    run.busy.append(item.key)
                else:
                    claims[item.key] = claim
                    todo.append(item)
            if not todo:
                continue
            files = {**files_of(model_name, seed), **gen_files}
            files_ref = ray.put(files)
            payload = row_r.remote(config, fp, files_ref, model_name, seed, defense_spec)
            for item in todo:
                ref = cell_r.remote(config, fp, files_ref, model_name, seed, defense_spec, payload, item,
                                    None if fault_once is None else str(fault_once))
                cells[ref] = (item, str(ckpt))
        left = list(cells)
        while left:
            done, left = ray.wait(left, num_returns=1)
            item, ckpt_path = cells[done[0]]
            rec = ray.get(done[0])
            rec["config"]["model"]["checkpoint"] = ckpt_path  # the driver's copy, not the worker's
            write_record(item.path, Record.from_dict(rec))
            claims.pop(item.key).release()
            run.computed.append(item.key)
            run.records.append(item.path)
            bar.set_postfix_str(item.cell.label())
            bar.update(1)
    finally:  # a failed task or an interrupt: no claim of this driver is left behind
        for claim in claims.values():
            claim.release()
    bar.close()
    run.add_time("total", time.perf_counter() - t_start)
    return run
