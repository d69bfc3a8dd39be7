"""Projection heads over stored features: pooling (optionally after a small trainable sequence
encoder) -> projection to the shared space -> L2 normalisation.

``RetrievalHeads`` is what train_heads trains, checkpoints save, ``load_heads`` returns and
evaluate/predict/finetune use: ``embed_audio(AudioFeatures) -> [B, E]`` and
``embed_text(TextFeatures) -> [B, E]``, both L2-normalised, plus ``tau`` for the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batch import AudioFeatures, TextFeatures
from .pooling import AUDIO_POOLINGS, TEXT_POOLINGS, SequencePool, pooled_dim, segment_mean

Projection = Literal["linear", "mlp"]


@dataclass
class HeadConfig:
    """Architecture of both heads (saved in every checkpoint; enough to rebuild the modules).

    The seed/baseline recipe is audio_pooling="segment-mean", text_pooling="first",
    projection="linear", embed_dim=1024: right for a fine-tuned text encoder, poor on frozen
    features (see train_heads --help for the measured defaults).
    """

    audio_dim: int = 768  # width of stored audio frames / window means
    text_dim: int = 1024  # width of stored text token features
    embed_dim: int = 1024  # shared space
    audio_pooling: str = "mean-std"
    text_pooling: str = "mean"
    projection: str = "mlp"  # "linear" (baseline: one nn.Linear) or "mlp"
    hidden_dim: int = 1024  # MLP hidden width
    dropout: float = 0.1  # MLP dropout
    seq_layers: int = 0  # transformer layers over the cached sequence before pooling (0 = none)
    seq_dim: int = 256  # width of those layers (input is linearly projected to it)
    seq_heads: int = 4
    initial_tau: float = 0.05
    tau_trainable: bool = False

    def validate(self) -> "HeadConfig":
        if self.audio_pooling not in AUDIO_POOLINGS:
            raise ValueError(f"audio_pooling must be one of {AUDIO_POOLINGS}, got {self.audio_pooling!r}")
        if self.text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"text_pooling must be one of {TEXT_POOLINGS}, got {self.text_pooling!r}")
        if self.projection not in ("linear", "mlp"):
            raise ValueError(f"projection must be 'linear' or 'mlp', got {self.projection!r}")
        if self.seq_layers and (self.audio_pooling == "segment-mean" or self.text_pooling == "first"):
            raise ValueError("seq_layers > 0 needs sequence pooling (mean, mean-std or attention) on both "
                             "sides: segment-mean and first read single stored vectors, not sequences")
        if self.seq_layers and self.seq_dim % self.seq_heads:
            raise ValueError(f"seq_dim {self.seq_dim} must be divisible by seq_heads {self.seq_heads}")
        return self


def make_projection(kind: str, in_dim: int, out_dim: int, hidden_dim: int, dropout: float) -> nn.Module:
    """linear: nn.Linear (the baseline); mlp: LayerNorm -> Linear -> GELU -> Dropout -> Linear."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden_dim), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))


class SequenceEncoder(nn.Module):
    """Small trainable transformer over a cached sequence: Linear(D -> d) then n pre-norm layers."""

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.inp = nn.Linear(in_dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # [B, T, D], [B, T] bool -> [B, T, d]
        return self.norm(self.encoder(self.inp(x), src_key_padding_mask=~mask))


class _Head(nn.Module):
    """Shared body: optional sequence encoder -> pooling -> projection."""

    def __init__(self, pooling: str, in_dim: int, cfg: HeadConfig):
        super().__init__()
        self.pooling = pooling
        self.seq = (SequenceEncoder(in_dim, cfg.seq_dim, cfg.seq_layers, cfg.seq_heads, cfg.dropout)
                    if cfg.seq_layers else None)
        width = cfg.seq_dim if self.seq is not None else in_dim
        self.pool = SequencePool(pooling, width) if pooling in ("mean", "mean-std", "attention") else None
        self.proj = make_projection(cfg.projection, pooled_dim(pooling, width), cfg.embed_dim,
                                    cfg.hidden_dim, cfg.dropout)

    def pool_sequence(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x.float()
        if self.seq is not None:
            x = self.seq(x, mask)
        assert self.pool is not None
        return self.pool(x, mask)

    def project(self, pooled: Tensor) -> Tensor:
        return F.normalize(self.proj(pooled.float()), dim=-1)


class AudioHead(_Head):
    def __init__(self, cfg: HeadConfig):
        super().__init__(cfg.audio_pooling, cfg.audio_dim, cfg)

    def pooled(self, batch: AudioFeatures) -> Tensor:
        if self.pooling == "segment-mean":
            return segment_mean(batch.window_means.float(), batch.window_mask)
        return self.pool_sequence(batch.frames, batch.frame_mask)

    def forward(self, batch: AudioFeatures) -> Tensor:  # -> [B, E] unit norm
        return self.project(self.pooled(batch))


class TextHead(_Head):
    def __init__(self, cfg: HeadConfig):
        super().__init__(cfg.text_pooling, cfg.text_dim, cfg)

    def pooled(self, batch: TextFeatures) -> Tensor:
        if self.pooling == "first":
            return batch.first.float()
        return self.pool_sequence(batch.tokens, batch.token_mask)

    def forward(self, batch: TextFeatures) -> Tensor:  # -> [B, E] unit norm
        return self.project(self.pooled(batch))


class RetrievalHeads(nn.Module):
    """Audio head + text head + the loss temperature (a [1] parameter, |tau| used, as the baseline)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.config = cfg.validate()
        self.audio = AudioHead(cfg)
        self.text = TextHead(cfg)
        self.tau = nn.Parameter(torch.tensor([cfg.initial_tau]), requires_grad=cfg.tau_trainable)

    def embed_audio(self, batch: AudioFeatures) -> Tensor:
        """[B, E] L2-normalised audio embeddings."""
        return self.audio(batch)

    def embed_text(self, batch: TextFeatures) -> Tensor:
        """[B, E] L2-normalised caption embeddings."""
        return self.text(batch)
