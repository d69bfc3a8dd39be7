"""Pooling over stored sequences: pure functions plus one small trainable module (attention).

Audio kinds: ``segment-mean`` (the seed's recipe, exactly: the mean of the stored per-window token
means over the clip's windows), ``mean`` (masked mean over frames), ``mean-std`` (masked mean and
standard deviation, concatenated: doubles the width), ``attention`` (learned masked attention).
Text kinds: ``first`` (the <s> token feature, the seed's choice, which works only when the text
encoder is fine-tuned), ``mean``, ``mean-std``, ``attention``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

AudioPooling = Literal["segment-mean", "mean", "mean-std", "attention"]
TextPooling = Literal["first", "mean", "mean-std", "attention"]
AUDIO_POOLINGS: tuple[str, ...] = ("segment-mean", "mean", "mean-std", "attention")
TEXT_POOLINGS: tuple[str, ...] = ("first", "mean", "mean-std", "attention")


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """x [B, T, D], mask [B, T] bool -> [B, D]; an all-padding row gives zeros, not NaN."""
    m = mask.to(x.dtype)[..., None]  # [B, T, 1]
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_mean_std(x: Tensor, mask: Tensor, eps: float = 1e-5) -> Tensor:
    """x [B, T, D] -> [B, 2D]: masked mean then masked (population) std, sqrt(var + eps)."""
    m = mask.to(x.dtype)[..., None]
    n = m.sum(1).clamp_min(1.0)
    mean = (x * m).sum(1) / n
    var = (((x - mean[:, None]) ** 2) * m).sum(1) / n
    return torch.cat([mean, (var + eps).sqrt()], dim=-1)


def segment_mean(window_means: Tensor, window_mask: Tensor) -> Tensor:
    """Seed pooling: the mean of the clip's per-window token means. [B, W, D], [B, W] -> [B, D].

    The seed averages segment 0 for d <= 10 s, segments 0-1 for 10 < d <= 20 s and all three above;
    the store keeps exactly ceil(d / 10 s) windows per clip (capped), so this is the same mean.
    """
    return masked_mean(window_means, window_mask)


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """scores [B, T], mask [B, T] bool -> weights [B, T] summing to 1 over valid positions."""
    scores = scores.float().masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(w, nan=0.0)  # rows with no valid position


class AttentionPool(nn.Module):
    """Learned masked attention pooling: one score per position, softmax, weighted sum."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # [B, T, D], [B, T] -> [B, D]
        w = masked_softmax(self.score(x).squeeze(-1), mask).to(x.dtype)
        return torch.einsum("bt,btd->bd", w, x)


def pooled_dim(kind: str, dim: int) -> int:
    """Width of the pooled vector for input width ``dim``."""
    return 2 * dim if kind == "mean-std" else dim


class SequencePool(nn.Module):
    """Pool a masked sequence [B, T, D] -> [B, pooled_dim(kind, D)] (``first``/``segment-mean`` excluded:
    they read other stored fields and are handled by the heads)."""

    def __init__(self, kind: str, dim: int):
        super().__init__()
        if kind not in ("mean", "mean-std", "attention"):
            raise ValueError(f"sequence pooling must be mean, mean-std or attention, got {kind!r}")
        self.kind = kind
        self.attn = AttentionPool(dim) if kind == "attention" else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.kind == "mean":
            return masked_mean(x, mask)
        if self.kind == "mean-std":
            return masked_mean_std(x, mask)
        assert self.attn is not None
        return self.attn(x, mask)
