"""Run by tests/distributed/test_torchrun.py under ``torchrun --nproc-per-node 2`` (gloo), and in the
test process itself as the world of one: trains a tiny model for one epoch, or draws dropout masks,
and saves what rank 0 and rank 1 hold into OUT."""

from __future__ import annotations

import sys

import torch
import torch.nn as nn

from reidbench import distributed
from reidbench.models import build_architecture
from reidbench.train import get_recipe, train_model


def data():
    g = torch.Generator().manual_seed(3)
    images = (torch.rand(96, 3, 32, 16, generator=g) * 255).to(torch.uint8)
    return images, torch.arange(12).repeat_interleave(8)


def train(out: str, recipe_name: str) -> None:
    """One epoch (3 steps of a global batch of 32) of a tiny BNNeck ResNet, BatchNorm and all."""
    images, pids = data()
    recipe = get_recipe(recipe_name).replace(epochs=1, batch_size=32, num_instances=4, warmup_epochs=0)
    torch.manual_seed(0)
    model = build_architecture("resnet-small", 12, widths=(8, 16, 16, 16), input_size=(32, 16))
    res = train_model(model, images, pids, recipe, seed=5, progress=False)
    rank = distributed.current().rank
    torch.save({"state": {k: v.clone() for k, v in model.state_dict().items()}, "history": res.history},
               f"{out}/train-rank{rank}.pt")


def dropout(out: str) -> None:
    """Each rank's rows of a global batch of 6 through the engine's dropout (ShardDropout)."""
    w = distributed.current()
    x = torch.arange(1, 6 * 5 + 1, dtype=torch.float32).view(6, 5)
    rows = distributed.shard_range(6, w)
    drop = nn.Dropout(0.5)
    with distributed.data_parallel_modules(nn.Sequential(drop), w) as m:
        m.train()
        torch.manual_seed(11)
        with distributed.global_batch(6, rows.start):
            y = m(x[rows.start:rows.stop])
        swapped = type(m[0]).__name__
    torch.save({"rows": y, "swapped": swapped, "restored": type(m[0]).__name__}, f"{out}/dropout-rank{w.rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    what, out = sys.argv[1], sys.argv[2]
    with distributed.session("cpu"):
        train(out, sys.argv[3]) if what == "train" else dropout(out)
