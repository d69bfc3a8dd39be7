"""Ensembles of retrieval models as pure functions: weights, agreement of the members, mean scores.

The ensemble score of (caption q, audio a) is the weighted mean of the members' cosine scores,
``S = sum_i w_i S_i`` with ``sum_i w_i = 1`` (the top DCASE 2025 Task 6 systems average the
similarity matrices of several models). It is computed one block of caption rows at a time from
the members' own block functions (:data:`audioret.evaluate.metrics.BlockFn`), so the full matrix
never exists: one accumulator block plus one member block, whatever the number of members.

Members must rank the same thing: the same captions in the same order (with the same audio of
each caption) and the same audio files in the same order; anything else is refused naming both
members, never silently re-aligned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from audioret.evaluate.metrics import BlockFn


@dataclass(frozen=True)
class MemberSplit:
    """What one member ranked: ``name`` (its checkpoint and input, for messages), the raw caption
    of each text row, each caption's own audio (empty for bare queries), and the audio columns."""

    name: str
    captions: list[str]
    caption_fnames: list[str]
    audio_fnames: list[str]


def normalized_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Member weights summing to 1: equal without ``weights``; one per member, finite, >= 0, not all 0."""
    if n < 1:
        raise ValueError("an ensemble needs at least one --checkpoint")
    if not weights:
        return [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"--weights: {len(weights)} value(s) for {n} checkpoint(s); give one weight per "
                         "--checkpoint, in the same order")
    bad = [w for w in weights if not math.isfinite(w) or w < 0]
    if bad:
        raise ValueError(f"--weights: {bad[0]} is not a finite weight >= 0")
    total = math.fsum(weights)
    if total <= 0:
        raise ValueError("--weights: all weights are 0; give at least one positive weight")
    return [w / total for w in weights]


def _first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    """Where two lists part: the first differing row, or the extra rows of the longer one."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"row {i}: {x!r} vs {y!r}"
    longer = a if len(a) > len(b) else b
    return f"row {min(len(a), len(b))}: {longer[min(len(a), len(b))]!r} is only in one of them"


def _disagreement(ref: MemberSplit, other: MemberSplit) -> str | None:
    """One sentence on how ``other`` ranks something else than ``ref``, or None when they agree."""
    for what, a, b in (("audio files", ref.audio_fnames, other.audio_fnames),
                       ("captions", ref.captions, other.captions),
                       ("captions' own audio files", ref.caption_fnames, other.caption_fnames)):
        if list(a) != list(b):
            order = " (the same ones in another order)" if sorted(a) == sorted(b) else ""
            return (f"{ref.name} ranks {len(a)} {what}, {other.name} ranks {len(b)}{order}; first difference "
                    f"at {_first_difference(a, b)}")
    return None


def check_agreement(members: Sequence[MemberSplit]) -> None:
    """Refuse members that rank different captions or audio files than the first member (both named)."""
    for other in members[1:]:
        why = _disagreement(members[0], other)
        if why is not None:
            raise ValueError(f"ensemble members disagree on the split: {why}. Every --checkpoint must rank the "
                             "same split (the same store or corpus, split and decodable audio files)")


def mean_block_fn(block_fns: Sequence[BlockFn], weights: Sequence[float]) -> BlockFn:
    """Block function of the weighted mean of the members' score blocks (weights as given: pass
    :func:`normalized_weights`). One member is returned as is, so an ensemble of one is that model
    bit for bit."""
    if len(block_fns) != len(weights) or not block_fns:
        raise ValueError(f"{len(block_fns)} members but {len(weights)} weights")
    if len(block_fns) == 1:
        return block_fns[0]

    def block(r0: int, r1: int) -> torch.Tensor:
        acc = block_fns[0](r0, r1).float() * weights[0]  # [r1 - r0, A] fp32
        for fn, w in zip(block_fns[1:], weights[1:]):
            acc.add_(fn(r0, r1).float().to(acc.device), alpha=w)
        return acc
    return block


__all__ = ["MemberSplit", "check_agreement", "mean_block_fn", "normalized_weights"]
