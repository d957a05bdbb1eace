"""Same seed and thread count ⇒ same bytes: the one place training, evaluation and serving make
torch deterministic.

``seeded(seed, threads, device)`` is a context manager that, for its body only,

* forks torch's global RNG (CPU, and the CUDA device in use) and seeds it with ``seed``, so that
  module initialisation (``nn.init``) and dropout draw the same numbers in every run, whatever ran
  before in the process;
* fixes the intra-op thread count (reduction order in matmul/sum depends on it);
* turns on ``torch.use_deterministic_algorithms`` (``warn_only`` so an op without a deterministic
  kernel warns instead of failing; on CUDA cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG``, set
  here when unset).

Explicit ``torch.Generator`` / ``numpy.random.Generator`` objects stay the rule for sampling;
this covers what torch draws from its global generator.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch


@contextlib.contextmanager
def seeded(seed: int, threads: int | None = None, device: str = "cpu") -> Iterator[None]:
    cuda = torch.device(device).type == "cuda" and torch.cuda.is_available()
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    devices = [torch.device(device)] if cuda else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if cuda else "cpu"):
        torch.manual_seed(seed)
        if threads is not None:
            torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
            torch.set_num_threads(prev_threads)


__all__ = ["seeded"]
