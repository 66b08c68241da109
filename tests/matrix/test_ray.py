"""The matrix on a local Ray cluster: the records equal the in-process run's, cell for cell, each
cell computed once; a task that fails once is retried; Ray missing or a dead address are clear
errors before any work."""

import pytest
import torch

from reidbench.matrix import MatrixConfig, iter_records, run_matrix

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test]' or reidbench[distributed])")

# the runner's machinery on the from-scratch small ResNet (fast); the CLI smoke test runs the default model
FAST = dict(dataset="synthreid", synth_size="tiny", steps=2, epochs=1, dmr_epochs=1, rerank=True, batch_size=32, checks=4,
            init="scratch")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _metrics(results):
    return {r.slug: (r.metrics, r.metrics_rerank, r.per_query, r.config["model"]["sha256"]) for r in iter_records(results)}


def test_ray_missing_or_an_address_that_does_not_answer_fail_before_any_work(tmp_path, monkeypatch, capsys):
    import builtins

    from reidbench.cli import main

    real = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["matrix", "--executor", "ray", "--results", str(tmp_path / "r")]) == 2
    assert "reidbench[distributed]" in capsys.readouterr().err
    monkeypatch.setattr(builtins, "__import__", real)
    assert main(["matrix", "--executor", "ray", "--address", "127.0.0.1:9", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "127.0.0.1:9" in err and not (tmp_path / "r" / "records").exists()
    assert main(["matrix", "--address", "127.0.0.1:9", "--results", str(tmp_path / "r")]) == 2
    assert "options of --executor ray" in capsys.readouterr().err


def test_a_ray_run_equals_the_in_process_run_and_retries_a_lost_task(tiny_synth, tmp_path, cluster):
    from reidbench.matrix.ray_executor import run_matrix_ray

    cfg = MatrixConfig(data_root=str(tiny_synth), models=("baseline",), attacks=("sma", "lta"), defenses=("none", "cs"),
                       **FAST)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray task has one CPU: the same arithmetic in both runs
    try:
        local = run_matrix(cfg, tmp_path / "local", store=tmp_path / "store-local", progress=False)
    finally:
        torch.set_num_threads(threads)
    fault = tmp_path / "fault-marker"
    remote = run_matrix_ray(cfg, tmp_path / "ray", store=tmp_path / "store-ray", progress=False, fault_once=fault)
    assert fault.is_file()                          # one cell task failed once ...
    assert sorted(remote.computed) == sorted(local.computed) and len(set(remote.computed)) == len(remote.computed) == 8
    assert _metrics(tmp_path / "ray") == _metrics(tmp_path / "local")   # ... and was retried: same records
    assert list((tmp_path / "store-ray").glob("baseline-*/model.pt"))   # the checkpoint came back to the driver
    again = run_matrix_ray(cfg, tmp_path / "ray", store=tmp_path / "store-ray", progress=False)
    assert not again.computed and len(again.skipped) == 8
    assert not list((tmp_path / "ray" / "claims").glob("*.lock"))  # every claim of the driver released
    assert not list((tmp_path / "store-ray" / "claims").glob("*.lock"))  # trainings' and fits' too
    # a cell that another live run (an in-process copy sharing the folder) holds is left to it
    from reidbench.store import CellClaim

    gone = next(p for p in again.records if "sma" in p.name)
    key = next(k for k, p in zip(again.skipped, again.records) if p == gone)
    gone.unlink()
    other = CellClaim(tmp_path / "ray", key)
    assert other.acquire()
    try:
        busy = run_matrix_ray(cfg, tmp_path / "ray", store=tmp_path / "store-ray", progress=False)
        assert busy.busy == [key] and not busy.computed and not gone.exists()
    finally:
        other.release()
    done = run_matrix_ray(cfg, tmp_path / "ray", store=tmp_path / "store-ray", progress=False)
    assert done.computed == [key] and gone.exists() and _metrics(tmp_path / "ray") == _metrics(tmp_path / "local")


def test_the_driver_waits_for_a_training_another_run_holds_and_trains_it_when_that_run_lets_go(tiny_synth, tmp_path,
                                                                                               cluster):
    import threading

    from reidbench.data import load_dataset
    from reidbench.matrix.ray_executor import run_matrix_ray
    from reidbench.matrix.runner import checkpoint_location
    from reidbench.store import CellClaim

    cfg = MatrixConfig(data_root=str(tiny_synth), models=("baseline",), attacks=("sma",), defenses=("none",), **FAST)
    store = tmp_path / "store"
    ckpt, key = checkpoint_location("baseline", load_dataset("synthreid", tiny_synth), 0, epochs=cfg.epochs, store=store,
                                    init=cfg.init)
    other = CellClaim(store, "train-" + key)  # another run is training baseline ...
    assert other.acquire()
    seen_while_held = []

    def let_go():  # ... for a while (a tiny training takes a few seconds), then dies without a checkpoint
        threading.Event().wait(8)
        seen_while_held.append(ckpt.is_file())
        other.release()

    threading.Thread(target=let_go, daemon=True).start()
    run = run_matrix_ray(cfg, tmp_path / "ray", store=store, progress=False)
    assert seen_while_held == [False]  # the driver did not train it while the other run held it
    assert ckpt.is_file() and len(run.computed) == 2 and not run.busy
    assert not list((store / "claims").glob("*.lock"))
