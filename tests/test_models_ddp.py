"""DDP gathering on 2 CPU processes (gloo): gathered negatives with gradient through the local part."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from audioret.models import all_gather_variable, all_gather_with_grad, contrastive_loss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        g = torch.Generator().manual_seed(0)
        a_all, t_all = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
        clips_all = torch.tensor([0, 1, 2, 0, 3, 4, 5, 6])
        sl = slice(4 * rank, 4 * rank + 4)
        a = a_all[sl].clone().requires_grad_(True)
        t = t_all[sl].clone().requires_grad_(True)
        ga = all_gather_with_grad(F.normalize(a, dim=-1))
        gt = all_gather_with_grad(F.normalize(t, dim=-1))
        gc = all_gather_with_grad(clips_all[sl])
        loss = contrastive_loss(ga, gt, gc, gc, 0.05)
        loss.backward()
        ragged = all_gather_variable(torch.full((rank + 1, 2), float(rank)))
        torch.save({"loss": loss.detach(), "ga": ga.detach(), "grad_a": a.grad, "grad_t": t.grad,
                    "ragged": ragged}, os.path.join(out_dir, f"r{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gather_gives_global_loss_and_local_gradients(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r = [torch.load(tmp_path / f"r{i}.pt") for i in range(2)]
    g = torch.Generator().manual_seed(0)
    a_all = torch.randn(8, 4, generator=g).requires_grad_(True)
    t_all = torch.randn(8, 4, generator=g).requires_grad_(True)
    clips = torch.tensor([0, 1, 2, 0, 3, 4, 5, 6])  # clip 0 spans both ranks: a cross-rank positive
    ref = contrastive_loss(F.normalize(a_all, dim=-1), F.normalize(t_all, dim=-1), clips, clips, 0.05)
    ref.backward()
    for i in range(2):
        assert torch.allclose(r[i]["loss"], ref.detach(), atol=1e-6)  # every rank sees the global batch
        assert torch.allclose(r[i]["ga"], F.normalize(a_all.detach(), dim=-1), atol=1e-6)
    # Each rank holds the gradient of the global loss w.r.t. its own rows only.
    got_a = torch.cat([r[0]["grad_a"], r[1]["grad_a"]])
    got_t = torch.cat([r[0]["grad_t"], r[1]["grad_t"]])
    assert torch.allclose(got_a, a_all.grad, atol=1e-5) and torch.allclose(got_t, t_all.grad, atol=1e-5)
    assert r[0]["ragged"].tolist() == [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]]
    assert torch.equal(r[0]["ragged"], r[1]["ragged"])
