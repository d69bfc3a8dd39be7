"""The baseline's contrastive loss (baseline.md section 5), exactly, as a pure function.

Rows are audios, columns are captions, C = A T^T / |tau|. Positives are every (i, j) whose clip ids
match (integer clip index; two captions of one clip in a batch are positives for both audio rows).
L = -1/2 [ mean_{P} log_softmax(C, dim=0) + mean_{P} log_softmax(C, dim=1) ]: a plain mean over all
positive cells, no renormalisation of the positives as a target distribution.
"""

from __future__ import annotations

import torch
from torch import Tensor


def positive_mask(audio_clip: Tensor, text_clip: Tensor) -> Tensor:
    """audio_clip [Na] int, text_clip [Nt] int -> [Na, Nt] bool, True where the clip ids match."""
    return audio_clip[:, None] == text_clip[None, :]


def contrastive_loss(audio_emb: Tensor, text_emb: Tensor, audio_clip: Tensor, text_clip: Tensor,
                     tau: Tensor | float) -> Tensor:
    """audio_emb [Na, D], text_emb [Nt, D] (L2-normalised), clip ids [Na], [Nt] -> scalar loss.

    With Na = Nt = B and row i, column i from the same dataset item this is the baseline's loss;
    every column must have at least one positive row (each caption comes with its clip).
    Computed in fp32 whatever the input precision (logits reach 1/tau = 20).
    """
    tau_abs = tau.abs() if isinstance(tau, Tensor) else abs(float(tau))
    logits = audio_emb.float() @ text_emb.float().T / tau_abs  # [Na, Nt]
    pos = positive_mask(audio_clip, text_clip)
    if not bool(pos.any(0).all()):
        raise ValueError("contrastive_loss: a caption has no audio of its clip in the batch; "
                         "pass each caption's clip (audio_clip must cover every text_clip id)")
    log_p_audio_given_text = torch.log_softmax(logits, dim=0)  # over audios, per caption
    log_p_text_given_audio = torch.log_softmax(logits, dim=1)  # over captions, per audio
    n = pos.sum()
    return -0.5 * ((log_p_audio_given_text * pos).sum() / n + (log_p_text_given_audio * pos).sum() / n)
