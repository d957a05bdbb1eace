"""Gathered in-batch negatives: two gloo processes reproduce one process on the global batch."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from lsvcr import distributed
from lsvcr.contrastive import info_nce, l_ssc


def global_batch(n=6, d=5):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def reference(q, k, loss_fn):
    """One process, the global batch (computed before joining the process group)."""
    assert not distributed.is_distributed()
    q, k = q.clone().requires_grad_(), k.clone().requires_grad_()
    loss = loss_fn(q, k)
    loss.backward()
    return loss.detach(), q.grad, k.grad


def worker(rank, world, port, splits):
    refs = {(sizes, fn): reference(*global_batch(sum(sizes)), fn) for sizes in splits for fn in (info_nce, l_ssc)}
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    info = distributed.init_from_env(backend="gloo")
    try:
        assert (info.rank, info.world_size, distributed.rank(), distributed.world_size()) == (rank, world, rank, world)
        for sizes in splits:
            n = sum(sizes)
            q_all, k_all = global_batch(n)
            lo, hi = sum(sizes[:rank]), sum(sizes[: rank + 1])

            rows, offset = distributed.gather_with_grad(k_all[lo:hi])
            assert offset == lo and torch.equal(rows, k_all)

            for fn in (info_nce, l_ssc):
                q, k = q_all[lo:hi].clone().requires_grad_(), k_all[lo:hi].clone().requires_grad_()
                loss = fn(q, k)
                loss.backward()
                ref_loss, ref_gq, ref_gk = refs[sizes, fn]
                # each rank's loss is the mean over its own queries: weighting by rows gives the global mean
                total = torch.tensor([loss.item() * (hi - lo)], dtype=torch.float64)
                torch.distributed.all_reduce(total)
                assert torch.allclose(total / n, ref_loss.reshape(1), atol=1e-10), (fn.__name__, sizes)
                if fn is info_nce:  # query gradients: this rank's share of the global mean
                    assert torch.allclose(q.grad * (hi - lo) / n, ref_gq[lo:hi], atol=1e-10), sizes
                if len(set(sizes)) == 1:
                    assert torch.allclose(q.grad / world, ref_gq[lo:hi], atol=1e-10), (fn.__name__, sizes)
                    # key gradients collect every rank's loss; DDP's average over ranks (1/world)
                    # then gives exactly the global batch's gradient
                    assert torch.allclose(k.grad / world, ref_gk[lo:hi], atol=1e-10), (fn.__name__, sizes)
    finally:
        distributed.shutdown()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gathered_loss_and_gradients_equal_the_global_batch_on_two_gloo_ranks():
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed unavailable")
    # equal halves, as DDP with a distributed sampler gives; and an uneven last batch
    mp.spawn(worker, args=(2, free_port(), [(3, 3), (4, 2)]), nprocs=2, join=True)


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
    x = torch.randn(4, 3)
    rows, offset = distributed.gather_with_grad(x)
    assert rows is x and offset == 0
    assert distributed.init_from_env().world_size == 1 and not distributed.is_distributed()
    assert distributed.all_reduce_mean(torch.tensor(2.0)).item() == 2.0
