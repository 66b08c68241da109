"""torchrun (torch.distributed, gloo on CPU): data-parallel training and sharded features and attacks
give one process's numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidbench import distributed
from reidbench.cli import main

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def torchrun(*args: str, nproc: int = 2, timeout: int = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                          *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return out


def _check(out: subprocess.CompletedProcess) -> None:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.mark.parametrize("recipe", ["seed", "strong"])  # SGD with random batches; Adam with PK batches + triplet
def test_one_epoch_on_two_ranks_is_one_process_with_the_same_global_batch(tmp_path, recipe):
    from . import ddp_worker

    _check(torchrun(str(HERE / "ddp_worker.py"), "train", str(tmp_path), recipe))
    r0 = torch.load(tmp_path / "train-rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "train-rank1.pt", weights_only=True)
    for k in r0["state"]:  # DDP: one set of weights
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    (tmp_path / "one").mkdir()
    torch.set_num_threads(1)
    ddp_worker.train(str(tmp_path / "one"), recipe)
    one = torch.load(tmp_path / "one" / "train-rank0.pt", weights_only=True)
    for k, v in one["state"].items():  # float rounding apart (one thread per process on both sides)
        if v.is_floating_point():
            assert torch.allclose(r0["state"][k], v, rtol=0, atol=1e-6), (k, (r0["state"][k] - v).abs().max())
        else:
            assert torch.equal(r0["state"][k], v), k
    assert r0["history"][0]["loss"] == pytest.approx(one["history"][0]["loss"], abs=1e-6)
    assert r0["history"][0]["train_acc"] == one["history"][0]["train_acc"]


def test_each_rank_drops_the_rows_one_process_would(tmp_path):
    _check(torchrun(str(HERE / "ddp_worker.py"), "dropout", str(tmp_path)))
    parts = [torch.load(tmp_path / f"dropout-rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert parts[0]["swapped"] == "ShardDropout" and parts[0]["restored"] == "Dropout"
    torch.manual_seed(11)
    x = torch.arange(1, 6 * 5 + 1, dtype=torch.float32).view(6, 5)
    whole = torch.nn.Dropout(0.5).train()(x)
    assert torch.equal(torch.cat([p["rows"] for p in parts]), whole)
    assert not torch.equal(parts[0]["rows"], whole[3:])  # the ranks do not share one mask


@pytest.fixture(scope="module")
def checkpoint(tiny_trained, tmp_path_factory):
    from reidbench.models import save_checkpoint

    model, ds, tr = tiny_trained
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(model, path, arch="resnet-small", arch_kwargs={"widths": [16, 32, 48, 64]},
                    num_classes=int(tr.pids.max()) + 1, dataset={"name": "synthreid", "fingerprint": ds.fingerprint()})
    return path, ds


def test_a_sharded_attack_is_one_process_attack(checkpoint, tmp_path):
    path, ds = checkpoint
    common = ["--checkpoint", str(path), "--dataset", "synthreid", "--data-root", str(ds.root), "--attack",
              "mifgsm(steps=3)", "--eps", "4/255", "--device", "cpu", "--json"]
    out = torchrun("-m", "reidbench", "-q", "attack", *common, "--save", str(tmp_path / "two.pt"))
    _check(out)
    two = json.loads(out.stdout)
    one_out = subprocess.run([sys.executable, "-m", "reidbench", "-q", "attack", *common, "--save",
                              str(tmp_path / "one.pt")], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    _check(one_out)
    one = json.loads(one_out.stdout)
    for side in ("clean", "attacked"):
        for metric in ("R1", "mAP", "mINP"):
            assert two[side][metric] == pytest.approx(one[side][metric], abs=1e-4), (side, metric)
    assert two["queries"] == one["queries"] and one["attacked"]["mAP"] < one["clean"]["mAP"]
    a = torch.load(tmp_path / "two.pt", weights_only=True)
    b = torch.load(tmp_path / "one.pt", weights_only=True)
    ia, ib = (t["images"] if isinstance(t, dict) else t for t in (a, b))
    assert ia.shape == ib.shape and (ia.float() - ib.float()).abs().max() <= 1 / 255 + 1e-6


def test_a_world_size_that_does_not_divide_the_batch_is_refused():
    from reidbench.train.engine import _check_world
    from reidbench.train import get_recipe

    recipe = get_recipe("cpu")  # a global batch of 64
    _check_world(recipe, distributed.World(rank=0, size=4))
    with pytest.raises(distributed.WorldSizeError, match="64 images does not split over 3 processes.*1, 2, 4, 8"):
        _check_world(recipe, distributed.World(rank=0, size=3))


def test_more_ranks_than_queries_is_refused_on_every_rank_before_any_collective():
    with pytest.raises(distributed.WorldSizeError, match="3 queries cannot give each of 4 processes one"):
        distributed.check_items(3, "queries", distributed.World(rank=2, size=4))
    distributed.check_items(4, "queries", distributed.World(rank=2, size=4))


def test_shards_cover_every_item_once_in_order():
    n, size = 11, 4
    shards = [distributed.shard_range(n, distributed.World(rank=r, size=size)) for r in range(size)]
    assert [i for s in shards for i in s] == list(range(n))
    assert [len(s) for s in shards] == [3, 3, 3, 2]


def test_only_train_eval_attack_run_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["matrix", "--models", "baseline", "--attacks", "sma"]) == 2
    err = capsys.readouterr().err
    assert "`reidbench matrix` runs in one process" in err and "--executor ray" in err


def test_outside_torchrun_nothing_is_sharded():
    assert not distributed.current().distributed
    t = torch.arange(5)
    assert distributed.gather_rows(t) is t and distributed.shard_range(5) == range(5)
    assert distributed.on_main(lambda: 7) == 7


def test_a_transfer_attack_is_fitted_by_rank_0_and_sent_to_the_others(checkpoint, tmp_path):
    """DMR under torchrun: the generator is fitted once (by rank 0, whose file every rank receives),
    and the sharded attack's metrics are one process's with that generator."""
    path, ds = checkpoint
    common = ["--checkpoint", str(path), "--dataset", "synthreid", "--data-root", str(ds.root), "--attack",
              "dmr(epochs=1)", "--device", "cpu", "--json"]
    home = tmp_path / "home"
    out = torchrun("-m", "reidbench", "-q", "attack", *common, env={"REIDBENCH_HOME": str(home)})
    _check(out)
    two = json.loads(out.stdout)
    generators = sorted(home.rglob("generator.pt"))
    assert len(generators) == 1  # one fit, in the shared store
    one_out = subprocess.run([sys.executable, "-m", "reidbench", "-q", "attack", *common], capture_output=True,
                             text=True, cwd=ROOT, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "REIDBENCH_HOME": str(home)})
    _check(one_out)
    one = json.loads(one_out.stdout)  # loads rank 0's generator from the store
    assert sorted(home.rglob("generator.pt")) == generators
    for metric in ("R1", "mAP"):
        assert two["attacked"][metric] == pytest.approx(one["attacked"][metric], abs=1e-4), metric
