"""One job over several processes with ``torchrun`` (torch.distributed): data-parallel training and
sharded feature extraction and attacks, whose numbers equal one process's.

``torchrun --nproc-per-node N -m reidbench train|eval|attack ...`` starts N copies; the command line
opens a :func:`session` (NCCL on GPUs, gloo on CPUs) and the library asks :func:`current` what this
process holds:

* **training** (:func:`reidbench.train.train_model`): every rank draws the same global batch (the
  identity-balanced sampler and the augmentation draw from the same seeded generators, as one process
  would) and feeds only its contiguous shard through the model, wrapped in
  ``DistributedDataParallel``. The features and logits of all shards are gathered (with gradients)
  before the loss, BatchNorm normalises with the statistics of the whole global batch and dropout
  masks are the rows one process would draw, so one epoch on N ranks ends with the weights of one
  process with the same global batch (to float rounding). Rank 0 writes the training state and the
  checkpoint;
* **features and attacks** (:func:`reidbench.evaluation.extract_features`,
  :func:`reidbench.attacks.evaluate.attack_queries`): each rank processes a contiguous shard of the
  images; the rows are gathered in order. Random draws are keyed by each image's index
  (:mod:`reidbench.rng`), so a shard draws what the whole run would. Metrics are computed once, on
  rank 0, and sent to the others.

Outside a session (the default) :func:`current` is a world of one and every helper is the identity:
the library never shards behind a caller's back, even when the caller has its own process group.
"""

from __future__ import annotations

import contextvars
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

__all__ = ["World", "current", "launched", "session", "shard_range", "shard_sizes", "gather_rows", "gather_rows_grad",
           "check_items", "main_first", "on_main", "max_over_ranks", "data_parallel_modules", "GlobalBatchNorm", "ShardDropout",
           "WorldSizeError"]

T = TypeVar("T")


class WorldSizeError(ValueError):
    """A world size the job cannot be split over (e.g. one that does not divide the global batch)."""


@dataclass(frozen=True)
class World:
    """The processes of one job: this one's ``rank`` among ``size``, its ``local_rank`` on its host."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None
    group: Any = None          # a second process group for the model's own collectives (BatchNorm, gathers)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def comm_device(self) -> torch.device:
        """Where tensors must be for this backend's collectives (NCCL: this rank's GPU)."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


_SINGLE = World()
_CURRENT: contextvars.ContextVar[World] = contextvars.ContextVar("reidbench_world", default=_SINGLE)


def current() -> World:
    """The world of the open :func:`session` (a world of one outside any)."""
    return _CURRENT.get()


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher setting ``WORLD_SIZE``)
    as one of several."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@contextmanager
def session(device: str | torch.device = "cpu") -> Iterator[World]:
    """Join the job ``torchrun`` started (environment ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``PORT``): NCCL when ``device`` is CUDA, gloo otherwise. Without a launcher it is
    a world of one and opens nothing. The process group is destroyed on exit."""
    if not launched():
        yield _SINGLE
        return
    import torch.distributed as dist

    cuda = torch.device(device).type == "cuda"
    backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise WorldSizeError(f"local rank {local_rank} has no GPU: this host has {torch.cuda.device_count()}; "
                                 "start at most that many processes per node (--nproc-per-node)")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    try:
        world = World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank, backend=backend,
                      group=dist.new_group(backend=backend))
        token = _CURRENT.set(world)
        try:
            yield world
        finally:
            _CURRENT.reset(token)
    finally:
        dist.destroy_process_group()


def shard_range(n: int, world: World | None = None) -> range:
    """This rank's contiguous share of ``n`` items (the first ``n % size`` ranks get one more)."""
    w = world or current()
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return range(start, start + base + (w.rank < extra))


def shard_sizes(n: int, world: World | None = None) -> list[int]:
    """How many of ``n`` items each rank holds (:func:`shard_range`), in rank order."""
    w = world or current()
    return [len(shard_range(n, World(rank=r, size=w.size))) for r in range(w.size)]


def check_items(n: int, what: str, world: World | None = None) -> None:
    """Every rank needs at least one of the ``n`` items it shares (checked alike on every rank, before
    any collective, so that no rank waits for one that failed)."""
    w = world or current()
    if w.distributed and n < w.size:
        raise WorldSizeError(f"{n} {what} cannot give each of {w.size} processes one; start at most {max(n, 1)}")


def _all_gather_padded(t: torch.Tensor, w: World, rows: list[int] | None = None) -> list[torch.Tensor]:
    """Every rank's ``t`` (equal trailing shape, any number of rows), in rank order. ``rows``: each
    rank's row count when the caller knows it (one collective less)."""
    import torch.distributed as dist

    dev = w.comm_device()
    x = t.detach().to(dev)
    if rows is None:
        sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(w.size)]
        dist.all_gather(sizes, torch.tensor([len(x)], dtype=torch.int64, device=dev), group=w.group)
        rows = [int(s) for s in sizes]
    top = max(rows)
    if len(x) < top:
        x = torch.cat([x, x.new_zeros((top - len(x), *x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in range(w.size)]
    dist.all_gather(parts, x.contiguous(), group=w.group)
    return [p[:r] for p, r in zip(parts, rows)]


def gather_rows(t: torch.Tensor, world: World | None = None, rows: list[int] | None = None) -> torch.Tensor:
    """The rows of every rank's ``t`` concatenated in rank order (the full set when each rank holds its
    :func:`shard_range`), on ``t``'s device; ``t`` itself in a world of one. No gradient flows.
    ``rows``: each rank's row count, when known."""
    w = world or current()
    if not w.distributed:
        return t
    return torch.cat(_all_gather_padded(t, w, rows)).to(t.device)


class _GatherRows(torch.autograd.Function):
    """All ranks' rows, with the gradient of the sum of every rank's loss sent back to each row's
    owner (all-reduce, then this rank's slice: gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, world: World, rows: list[int] | None) -> torch.Tensor:
        parts = _all_gather_padded(t, world, rows)
        ctx.world = world
        ctx.start = sum(len(p) for p in parts[:world.rank])
        ctx.rows = len(t)
        ctx.device = t.device
        return torch.cat(parts).to(t.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist

        g = grad.contiguous().to(ctx.world.comm_device())
        dist.all_reduce(g, group=ctx.world.group)
        return g[ctx.start:ctx.start + ctx.rows].to(ctx.device), None, None


def gather_rows_grad(t: torch.Tensor, world: World | None = None, rows: list[int] | None = None) -> torch.Tensor:
    """:func:`gather_rows` through which gradients flow: a loss computed by every rank on the gathered
    rows has, after DDP averages the ranks' gradients, the gradient of one process's loss."""
    w = world or current()
    if not w.distributed:
        return t
    return _GatherRows.apply(t, w, rows)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: torch.Tensor, world: World) -> torch.Tensor:
        import torch.distributed as dist

        ctx.world, ctx.device = world, t.device
        out = t.detach().clone().to(world.comm_device())
        dist.all_reduce(out, group=world.group)
        return out.to(t.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist

        g = grad.contiguous().clone().to(ctx.world.comm_device())
        dist.all_reduce(g, group=ctx.world.group)
        return g.to(ctx.device), None


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all ranks, on any device (torch's ``SyncBatchNorm`` runs on
    GPUs only; it is used there). Two passes, as one process computes it: the sum, then the centred
    sum of squares, each all-reduced with gradients. Shares the parameters and buffers of the module it
    replaces."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, world: World) -> None:
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        self.weight, self.bias = bn.weight, bn.bias
        self.running_mean, self.running_var, self.num_batches_tracked = (bn.running_mean, bn.running_var,
                                                                         bn.num_batches_tracked)
        self.world = world

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected a batch of at least 2 dimensions, got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.world.distributed:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        rows = _GATHERED_ROWS.get()  # the engine says how many rows the global batch has: one collective less
        per_row = x.numel() // max(1, x.shape[0] * x.shape[1])
        count = (x.new_tensor([float(rows[0] * per_row)]) if rows is not None else
                 _AllReduceSum.apply(x.new_tensor([float(x.numel() // x.shape[1])]), self.world))
        mean = _AllReduceSum.apply(x.sum(dims), self.world) / count
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims), self.world) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1.0)), alpha=m)
        return y


class ShardDropout(nn.Dropout):
    """Dropout of one rank's rows of the global batch with the mask one process would draw for the
    whole batch (the generators are seeded alike on every rank), so the ranks together drop what one
    process drops."""

    def __init__(self, p: float, world: World, inplace: bool = False) -> None:
        super().__init__(p, inplace)
        self.world = world

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or not self.world.distributed:
            return super().forward(x)
        rows = _GATHERED_ROWS.get()
        if rows is None:  # outside the engine's forward (a batch hook's attack): this rank's own draw
            return super().forward(x)
        total, start = rows
        keep = 1.0 - self.p
        mask = torch.empty((total, *x.shape[1:]), dtype=x.dtype, device=x.device)
        if keep > 0:
            mask.bernoulli_(keep).div_(keep)
        else:
            mask.zero_()
        return x * mask[start:start + len(x)]


#: (global batch rows, this rank's first row) while the engine feeds a shard through the model
_GATHERED_ROWS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("reidbench_rows",
                                                                                        default=None)


@contextmanager
def global_batch(total: int, start: int) -> Iterator[None]:
    """Tell :class:`ShardDropout` which rows of a ``total``-row global batch this rank holds."""
    token = _GATHERED_ROWS.set((int(total), int(start)))
    try:
        yield
    finally:
        _GATHERED_ROWS.reset(token)


@contextmanager
def data_parallel_modules(model: nn.Module, world: World | None = None) -> Iterator[nn.Module]:
    """Swap ``model``'s BatchNorm layers for global-batch ones (torch's ``SyncBatchNorm`` on GPUs,
    :class:`GlobalBatchNorm` elsewhere) and its dropout for :class:`ShardDropout`, sharing parameters
    and buffers; the original modules are put back on exit, holding the trained values."""
    w = world or current()
    if not w.distributed:
        yield model
        return
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = _replacement(child, w)
            if new is not None:
                swapped.append((parent, name, child))
                setattr(parent, name, new)
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def _replacement(m: nn.Module, w: World) -> nn.Module | None:
    if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, (GlobalBatchNorm, nn.SyncBatchNorm)):
        if w.backend == "nccl":
            s = nn.SyncBatchNorm(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
                                 process_group=w.group)
            s.weight, s.bias = m.weight, m.bias
            s.running_mean, s.running_var, s.num_batches_tracked = m.running_mean, m.running_var, m.num_batches_tracked
            return s.train(m.training)
        return GlobalBatchNorm(m, w).train(m.training)
    if type(m) is nn.Dropout:
        return ShardDropout(m.p, w, m.inplace).train(m.training)
    return None


@contextmanager
def main_first(world: World | None = None) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. generates or decodes a dataset into the shared cache), the
    others after it, then reuse what it wrote."""
    w = world or current()
    if not w.distributed:
        yield
        return
    import torch.distributed as dist

    if not w.is_main:
        dist.barrier(group=w.group)
    yield
    if w.is_main:
        dist.barrier(group=w.group)


def on_main(fn: Callable[[], T], world: World | None = None) -> T:
    """``fn()`` computed by rank 0 only and sent to every rank (metrics: the ranks hold the same
    features, one computation is enough -- and one copy of re-ranking's memory per host)."""
    w = world or current()
    if not w.distributed:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [fn() if w.is_main else None]
    dist.broadcast_object_list(box, src=0, group=w.group)
    return box[0]


def max_over_ranks(value: float, world: World | None = None) -> float:
    """The largest ``value`` of all ranks (a sharded step's wall time is its slowest rank's)."""
    w = world or current()
    if not w.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=w.comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=w.group)
    return float(t)


def barrier(world: World | None = None) -> None:
    w = world or current()
    if w.distributed:
        import torch.distributed as dist

        dist.barrier(group=w.group)
