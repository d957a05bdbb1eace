"""Data-parallel helpers: process-group setup from torchrun's environment, and gathering embeddings
across ranks for in-batch negatives with gradients that flow back to the rank that made them.

Everything is a no-op in a single process (no process group initialised), so the same training code
runs with and without ``torchrun``.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


class DistInfo(NamedTuple):
    rank: int
    local_rank: int
    world_size: int
    device: torch.device


def init_from_env(backend: str | None = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT). Backend: nccl when CUDA is available, else gloo. Without WORLD_SIZE > 1 nothing is
    initialised and this returns the single-process info."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if world <= 1:
        return DistInfo(0, 0, 1, torch.device("cuda", 0) if cuda else device)
    if not is_distributed():
        backend = backend or ("nccl" if cuda else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), device)


def shutdown() -> None:
    """Leave the process group, if any."""
    if is_distributed():
        dist.destroy_process_group()


class _GatherRows(torch.autograd.Function):
    """All-gather rows of possibly different counts per rank. Backward sums every rank's gradient
    for the gathered tensor and hands each rank the slice of its own rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: tuple[int, ...], me: int) -> torch.Tensor:
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.sizes, ctx.me = sizes, me
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.me])
        return grad[start : start + ctx.sizes[ctx.me]], None, None


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Rows of ``x`` from every rank, concatenated in rank order, and the offset of this rank's rows.

    Gradients reach the local rows from the losses of *all* ranks (summed), so with equal per-rank
    batches, once DDP averages parameter gradients over ranks, training matches one process on the
    global batch. Ranks may hold different numbers of rows (a last partial batch); DDP then weights
    ranks equally rather than by rows. Single process: returns ``(x, 0)``.
    """
    if not is_distributed() or dist.get_world_size() == 1:
        return x, 0
    n = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.empty_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, n)
    sizes = tuple(int(c.item()) for c in counts)
    me = dist.get_rank()
    return _GatherRows.apply(x.contiguous(), sizes, me), sum(sizes[:me])


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks — for logging losses; identity in a single process."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()
