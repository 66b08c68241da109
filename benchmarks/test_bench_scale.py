"""Scale-out on 2 CPU cores (issue 19): the same work in one process (the baseline) and spread over
two workers (reidbench's scale-out).

* ``matrix 8 cells``: the tiny-synthreid plan of tests/matrix/test_ray.py (one model trained for 1
  epoch, SMA and LTA, no defense and CS: 8 cells) in-process with 2 torch threads, and on a local
  Ray cluster of 2 one-CPU workers (one torch thread each).
* ``torchrun training``: ``reidbench train`` of the baseline preset on synthreid-tiny for 3 epochs in
  one process with 2 threads, and under ``torchrun --nproc-per-node 2`` (gloo, one thread per rank);
  ``seconds_inside`` is the sidecar's ``train_seconds`` (the epochs, without start-up and data),
  averaged over 3 runs.

On 2 cores the ratios say what two workers cost or save against one process's two threads; on a
GPU machine they are the figure to take (the device tool's benchmark run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from reidbench.data.synthreid import generate_synthreid

    return generate_synthreid(tmp_path_factory.mktemp("synth") / "tiny", size="tiny", seed=0, workers=1, progress=False)


def _plan(synth):
    from reidbench.matrix import MatrixConfig

    return MatrixConfig(data_root=str(synth), models=("baseline",), attacks=("sma", "lta"), defenses=("none", "cs"),
                        dataset="synthreid", synth_size="tiny", epochs=1, dmr_epochs=1, rerank=True, batch_size=32,
                        checks=4)


def _fresh(tmp_path: Path, name: str) -> tuple[Path, Path]:
    out = tmp_path / name
    shutil.rmtree(out, ignore_errors=True)
    return out / "results", out / "store"


@pytest.mark.benchmark(group="matrix 8 cells (tiny synthreid), 2 cores")
def test_matrix_in_process_baseline(benchmark, synth, tmp_path):
    from reidbench.matrix import run_matrix

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        def run():
            results, store = _fresh(tmp_path, "local")
            assert len(run_matrix(_plan(synth), results, store=store, progress=False).computed) == 8

        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.benchmark(group="matrix 8 cells (tiny synthreid), 2 cores")
def test_matrix_ray_two_workers_reidbench(benchmark, synth, tmp_path):
    ray = pytest.importorskip("ray")
    from reidbench.matrix.ray_executor import run_matrix_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        def run():
            results, store = _fresh(tmp_path, "ray")
            assert len(run_matrix_ray(_plan(synth), results, store=store, progress=False).computed) == 8

        run()  # warm the workers (imports, dataset) as a long board would have them
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        ray.shutdown()


def _train(synth, out: Path, nproc: int) -> float:
    args = ["-m", "reidbench", "-q", "train", "--dataset", "synthreid", "--data-root", str(synth), "--epochs", "3",
            "--device", "cpu", "--no-eval", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(2 // nproc), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, *args] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                        f"--nproc-per-node={nproc}", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "model.json").read_text())["train_seconds"]


@pytest.mark.benchmark(group="torchrun training (baseline preset, synthreid-tiny, 3 epochs), 2 cores")
def test_train_one_process_baseline(benchmark, synth, tmp_path):
    seconds = []
    benchmark.pedantic(lambda: seconds.append(_train(synth, tmp_path / "one", 1)), rounds=3, iterations=1)
    benchmark.extra_info["seconds_inside"] = round(sum(seconds) / len(seconds), 2)


@pytest.mark.benchmark(group="torchrun training (baseline preset, synthreid-tiny, 3 epochs), 2 cores")
def test_train_torchrun_two_ranks_reidbench(benchmark, synth, tmp_path):
    seconds = []
    benchmark.pedantic(lambda: seconds.append(_train(synth, tmp_path / "two", 2)), rounds=3, iterations=1)
    benchmark.extra_info["seconds_inside"] = round(sum(seconds) / len(seconds), 2)
