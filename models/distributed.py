"""All-gathers for DDP: loss negatives from every rank (gradient through the local part) and
variable-length gathers for validation embeddings (so metrics are computed on the whole split,
not per GPU as the baseline does). Without an initialised process group these are identities.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_gather_with_grad(x: Tensor) -> Tensor:
    """[N, ...] per rank (same N everywhere) -> [world * N, ...] in rank order.

    The other ranks' rows are constants; this rank's rows are ``x`` itself, so the gradient
    flows through the local part. (Each rank then computes the loss on the global matrix; DDP's
    gradient average equals the full-batch gradient divided by the world size: Adam does not care.)
    """
    world = _world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def all_gather_variable(x: Tensor) -> Tensor:
    """[N_r, ...] with N_r differing per rank -> [sum N_r, ...] in rank order, no gradient."""
    world = _world()
    if world == 1:
        return x
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    pad = max(counts) - x.shape[0]
    padded = torch.cat([x.detach(), x.new_zeros((pad, *x.shape[1:]))]) if pad else x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)], dim=0)
