"""The training engine: one loop for every ReID model and training-time defense.

Two hooks let defenses plug in without touching the loop (declared in
:mod:`reidbench.training_protocol`, which defenses implement without importing the engine):

* ``batch_train_transform(images, generator) -> images``: an augmentation of the batch applied after
  the standard pad/crop/flip (float (N, 3, H, W) in [0, 1], on the device), drawing image after image
  as its per-image form ``train_transform(image, generator)`` does (either may be given); the
  proactive defense PD is one;
* ``batch_hook(model, images, pids, step) -> (images, pids)``: replaces a whole batch, e.g. by
  adversarial examples (online adversarial training, GOAT) or by a clean/adversarial mix (AT).

Each epoch ends with an atomic training-state checkpoint (model, optimiser, schedule, random
states), so ``resume=True`` continues a killed run and ends with the same weights as an
uninterrupted one.

Under ``torchrun`` (:mod:`reidbench.distributed`) the same loop is data-parallel: every rank makes the
random draws of the whole global batch (the sampler's and the augmentation's, one process's draws),
decodes and augments its contiguous shard (with a train transform such as PD: the whole batch, its
draws being sequential), feeds the shard through the model wrapped in ``DistributedDataParallel``, and computes the loss on the
gathered features and logits; BatchNorm and dropout see the global batch. Without a batch hook the
weights equal one process's with the same global batch. A batch hook (AT, GOAT) makes the adversarial
examples of each rank's shard: that is as strong but not the same draw, so such a run records its
world size. Rank 0 writes the training state; a resumed run reads it on rank 0 and sends it to all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import distributed
from ..data.loader import batch_rows
from ..data.transforms import pk_batches, random_batches, random_pad_crop_flip, to_model_input
from ..utils import atomic_torch_save, atomic_write_text
from ..training_protocol import BatchHook, BatchTrainTransform, TrainTransform, per_image
from .recipes import Recipe

log = logging.getLogger(__name__)

__all__ = ["train_model", "TrainResult", "triplet_loss", "build_optimizer", "TRAIN_STATE_FILE", "TRAIN_NUMERICS"]

#: version of the training engine's numerics (sampling, augmentation, losses, optimiser steps): bump it
#: when a change alters a trained model; part of every matrix checkpoint's key
TRAIN_NUMERICS = "1"

TRAIN_STATE_FILE = "last.pt"

#: how many steps the loop runs between two reads of its running sums (a host synchronisation on a
#: GPU): the progress bar and the finite-loss check happen then and at the end of each epoch
READ_EVERY = 25
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from_epoch: int = 0


def triplet_loss(features: torch.Tensor, pids: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) with Euclidean distances."""
    d = torch.cdist(features, features).clamp(min=1e-12)
    same = pids[:, None] == pids[None]
    hardest_pos = d.masked_fill(~same, float("-inf")).max(1).values
    hardest_neg = d.masked_fill(same, float("inf")).min(1).values
    valid = torch.isfinite(hardest_neg) & torch.isfinite(hardest_pos)
    if not valid.any():
        return features.sum() * 0.0
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    backbone = getattr(model, "backbone", None)
    bb_ids = {id(p) for p in backbone.parameters()} if isinstance(backbone, nn.Module) else set()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in bb_ids], "lr": recipe.lr}]
    if bb_ids:
        groups.append({"params": [p for p in params if id(p) in bb_ids], "lr": recipe.lr * recipe.backbone_lr_mult})
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                               weight_decay=recipe.weight_decay)
    return torch.optim.Adam(groups, lr=recipe.lr, weight_decay=recipe.weight_decay)


def _lr_factor(recipe: Recipe, epoch: int) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based): linear warm-up, then step or cosine."""
    if epoch < recipe.warmup_epochs:
        return 0.1 + 0.9 * epoch / max(1, recipe.warmup_epochs)
    if recipe.schedule == "cosine":
        t = (epoch - recipe.warmup_epochs) / max(1, recipe.epochs - recipe.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * t))
    return recipe.gamma ** sum(epoch >= m for m in recipe.milestones)


def _cuda_rng() -> dict[str, Any]:
    """The CUDA generators' states (dropout and random ops on the GPU draw from them), when CUDA is
    present: a resumed run continues their streams as an uninterrupted one would."""
    return {"cuda_rng": torch.cuda.get_rng_state_all()} if _cuda_available() else {}


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _set_cuda_rng(states) -> None:
    if not states or not _cuda_available():
        return
    if len(states) != torch.cuda.device_count():
        log.warning("the training state holds %d CUDA generator states and this machine has %d devices: the "
                    "resumed run's GPU random streams differ from an uninterrupted run's", len(states),
                    torch.cuda.device_count())
        return
    torch.cuda.set_rng_state_all(states)


class _ForwardTrain(nn.Module):
    """``forward`` = the model's ``forward_train``: what DistributedDataParallel wraps (it hooks
    ``forward`` only)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.forward_train(x)


def _on(rows, device: torch.device):
    """A batch's uint8 rows for ``device``: on a GPU, :func:`~reidbench.data.loader.batch_rows` hands
    them over pinned, so the copy does not wait (the stream orders it before the batch's first kernel)."""
    if device.type == "cuda" and isinstance(rows, torch.Tensor):
        rows = rows.to(device, non_blocking=True)
    return rows


def _read(sums: torch.Tensor, seen: int, epoch: int) -> list[float]:
    """The epoch's mean loss, CE, triplet loss and accuracy so far, from the device-side sums (one host
    synchronisation); a non-finite loss since the start of the epoch is an error."""
    values = sums.tolist()
    if values[4] or not math.isfinite(values[0]):
        raise FloatingPointError(f"training loss became non-finite at epoch {epoch + 1}; lower the learning rate")
    return [v / max(seen, 1) for v in values[:4]]


def _check_world(recipe: Recipe, world: distributed.World) -> None:
    if world.distributed and recipe.batch_size % world.size:
        divisors = [d for d in range(1, recipe.batch_size + 1) if recipe.batch_size % d == 0 and d <= 64]
        raise distributed.WorldSizeError(
            f"the global batch of {recipe.batch_size} images does not split over {world.size} processes; start "
            f"torchrun with a number of processes that divides it ({', '.join(map(str, divisors))})")


def train_model(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    pids: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    train_transform: TrainTransform | None = None,
    batch_hook: BatchHook | None = None,
    batch_train_transform: BatchTrainTransform | None = None,
    progress: bool = True,
    config: dict[str, Any] | None = None,
    channels_last: bool = False,
    compile: str | None = None,
    workers: int = 0,
) -> TrainResult:
    """Train ``model`` (an :class:`~reidbench.models.Embedder`) on uint8 ``images`` with labels ``pids``.

    Args:
        images: (N, 3, H, W) uint8 tensor or list of (3, H_i, W_i) tensors; resized to the model's
            ``input_size`` on the fly.
        pids: (N,) int64 train labels in 0..K-1.
        seed: seeds the sampler, the augmentation and torch's global generator (dropout).
        out_dir: where ``last.pt`` (training state, each epoch) and ``config.json`` go; None keeps
            nothing on disk.
        resume: continue from ``out_dir/last.pt`` if present.
        config: extra information written into ``config.json`` with the recipe and the seed.
        channels_last: the model and its inputs in channels-last memory format (faster convolutions
            on GPUs with tensor cores; the same numbers to float rounding).
        compile: a ``torch.compile`` backend (``"inductor"``, ...) for the training forward pass, or
            None (eager).
        workers: DataLoader processes that fetch (for :class:`~reidbench.data.loader.StreamedImages`,
            decode) the next batches' rows while the model trains; 0 fetches them in this process.
            The weights do not depend on it: the batches and the augmentation are drawn here.

    The loop never waits for the device inside an epoch but every :data:`READ_EVERY` steps: losses
    and accuracy are summed on the device; a non-finite loss is caught at the next read (before any
    training state is written).
    """
    world = distributed.current()
    _check_world(recipe, world)
    if train_transform is not None and batch_train_transform is None:  # the per-image form only
        batch_train_transform = per_image(train_transform)
    device = torch.device(device)
    pids = torch.as_tensor(pids, dtype=torch.int64)
    n = len(pids)
    size = tuple(getattr(model, "input_size"))
    model.to(device)
    opt = build_optimizer(model, recipe)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: _lr_factor(recipe, e))
    precision = recipe.precision
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"mixed precision fp16 needs a CUDA device (its gradient scaler); on {device} use bf16 "
                         "(--amp bf16) or full precision")
    autocast = {"device_type": device.type, "dtype": _AUTOCAST[precision]} if precision in _AUTOCAST else None
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    history: list[dict[str, Any]] = []
    start = 0
    state_path = Path(out_dir) / TRAIN_STATE_FILE if out_dir is not None else None
    if out_dir is not None and world.is_main:
        resolved = {"recipe": recipe.to_dict(), "seed": seed, "device": str(device), "num_images": n,
                    "num_classes": int(pids.max()) + 1, "input_size": list(size), **(config or {})}
        if world.distributed:
            resolved["world_size"] = world.size
        if channels_last or compile:
            resolved["execution"] = {"channels_last": channels_last, "compile": compile}
        atomic_write_text(Path(out_dir) / "config.json", json.dumps(resolved, indent=2, sort_keys=True, default=str) + "\n")
        log.info("training configuration: %s", json.dumps(resolved, sort_keys=True, default=str))
    if world.distributed and batch_hook is not None and world.is_main:
        log.warning("a batch hook (adversarial training) on %d processes makes each shard's adversarial examples "
                    "on its rank: the weights differ from a one-process run's (the run records its world size)",
                    world.size)
    st = None
    if resume and state_path is not None:  # read by rank 0, sent to all: no shared filesystem needed
        st = distributed.on_main(lambda: torch.load(state_path, map_location="cpu", weights_only=True)
                                 if state_path.is_file() else None)
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        scaler.load_state_dict(st["scaler"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        _set_cuda_rng(st.get("cuda_rng"))
        history = json.loads(st["history"])
        start = int(st["epoch"])
        log.info("resuming from %s at epoch %d/%d", state_path, start, recipe.epochs)
    t0 = time.perf_counter()
    num_batches = n // recipe.batch_size if recipe.drop_last else math.ceil(n / recipe.batch_size)
    if num_batches == 0:
        raise ValueError(f"{n} training images are fewer than one batch of {recipe.batch_size}")
    step = start * num_batches
    net: nn.Module | None = None
    with distributed.data_parallel_modules(model, world):
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(_ForwardTrain(model), device_ids=[device.index] if device.type == "cuda" else None,
                                          forward_sync_buffers=False,  # global BatchNorm: equal buffers on every rank
                                          find_unused_parameters=not (recipe.ce_weight and recipe.triplet_weight))
        forward = net if net is not None else _ForwardTrain(model)
        if compile:
            forward = torch.compile(forward, backend=compile)
        for epoch in range(start, recipe.epochs):
            model.train()
            if recipe.sampler == "pk":
                batches = pk_batches(pids, recipe.batch_size, recipe.num_instances, num_batches, gen)
            else:
                batches = random_batches(n, recipe.batch_size, gen, recipe.drop_last)
            # running sums on the device (loss, ce, triplet, correct, non-finite losses), read every READ_EVERY steps
            sums = torch.zeros(5, dtype=torch.float64 if device.type != "mps" else torch.float32, device=device)
            seen, hook_s, read = 0, 0.0, None
            te = time.perf_counter()
            # without a batch-wide train transform, a rank fetches and augments its shard only
            sharded = world.distributed and batch_train_transform is None
            shards = [distributed.shard_range(len(idx), world) if sharded else range(len(idx)) for idx in batches]
            fetched = batch_rows(images, [idx[r.start:r.stop] for idx, r in zip(batches, shards)], workers=workers,
                                 pin_memory=device.type == "cuda")
            bar = tqdm(zip(batches, shards, fetched), total=len(batches), desc=f"epoch {epoch + 1}/{recipe.epochs}",
                       unit="batch", disable=not progress or not world.is_main, leave=False)
            for idx, rows, fetched_rows in bar:
                if sharded:  # this rank's rows, one process's draws
                    x = to_model_input(_on(fetched_rows, device), size, device)
                    x = random_pad_crop_flip(x, recipe.pad, recipe.flip, gen, batch=len(idx), start=rows.start)
                    y = pids[idx[rows.start:rows.stop]].to(device)
                else:
                    x = to_model_input(_on(fetched_rows, device), size, device)
                    x = random_pad_crop_flip(x, recipe.pad, recipe.flip, gen)
                    if batch_train_transform is not None:  # per-image draws in sequence: every rank runs them all
                        x = batch_train_transform(x, gen)
                    y = pids[idx].to(device)
                    if world.distributed:  # this rank's rows of the global batch
                        rows = distributed.shard_range(len(y), world)
                        x, y = x[rows.start:rows.stop], y[rows.start:rows.stop]
                if batch_hook is not None:
                    th = time.perf_counter()
                    x, y = batch_hook(model, x, y, step)
                    model.train()
                    hook_s += time.perf_counter() - th
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(**autocast) if autocast else contextlib.nullcontext():
                    if net is None:
                        out = forward(x)
                        feature, logits = out.feature, out.logits
                    else:
                        shards = (distributed.shard_sizes(len(idx), world) if batch_hook is None else  # a hook may resize
                                  distributed.gather_rows(torch.tensor([len(x)], device=device), world).tolist())
                        with distributed.global_batch(sum(shards), sum(shards[:world.rank])):
                            out = forward(x)
                        feature = distributed.gather_rows_grad(out.feature, world, shards)
                        logits = distributed.gather_rows_grad(out.logits, world, shards) if out.logits is not None else None
                        y = distributed.gather_rows(y, world, shards)
                    loss = ce = tr = correct = x.new_zeros((), dtype=torch.float32)
                    if recipe.ce_weight and logits is not None:
                        ce = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
                        loss = loss + recipe.ce_weight * ce
                        correct = (logits.argmax(1) == y).sum()
                    if recipe.triplet_weight:
                        tr = triplet_loss(feature.float(), y, recipe.margin)
                        loss = loss + recipe.triplet_weight * tr
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                with torch.no_grad():  # no host synchronisation: summed on the device
                    sums += torch.stack([loss.double() * len(y), ce.double() * len(y), tr.double() * len(y),
                                         correct.double(), (~torch.isfinite(loss)).double()]).to(sums.dtype)
                seen += len(y)
                step += 1
                if step % READ_EVERY == 0:
                    read = _read(sums, seen, epoch)
                    bar.set_postfix(loss=f"{read[0]:.3f}", img_s=f"{seen / max(time.perf_counter() - te, 1e-9):.0f}")
            bar.close()
            read = _read(sums, seen, epoch)
            sched.step()
            seconds = time.perf_counter() - te
            rec = {"epoch": epoch + 1, "loss": read[0], "ce": read[1], "triplet": read[2], "train_acc": read[3],
                   "seconds": round(seconds, 3), "images_per_s": round(seen / seconds, 1),
                   "hook_share": round(hook_s / seconds, 3), "lr": opt.param_groups[0]["lr"]}
            history.append(rec)
            log.info("epoch %d/%d loss %.4f acc %.3f %.1f img/s%s", epoch + 1, recipe.epochs, rec["loss"],
                     rec["train_acc"], rec["images_per_s"],
                     f" (batch hook {100 * rec['hook_share']:.0f}% of the time)" if batch_hook else "")
            if state_path is not None and world.is_main:
                atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                                   "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                   **_cuda_rng(), "epoch": epoch + 1, "history": json.dumps(history)}, state_path)
    model.eval()
    return TrainResult(model, history, time.perf_counter() - t0, start)
