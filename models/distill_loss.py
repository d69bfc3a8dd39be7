"""Distillation with estimated correspondences (Primus, Schmid & Widmer, DCASE 2024; baseline.md section 12),
as pure functions.

Stage 2 replaces the binary "same clip" targets of the contrastive loss by the teachers' estimate of
which captions match which audios. With teacher similarities ``T[m, i, j] = <a_i^m, c_j^m>`` (cosines of
L2-normalised teacher embeddings, rows = audios, columns = captions) and the student's temperature tau:

    Z = mean_m T[m] / |tau|                    teacher logits (the STUDENT's tau, as the paper)
    p_i = softmax_j Z[i, :]                     audio -> text targets (row-wise)
    q_j = softmax_i Z[:, j]                     text -> audio targets (column-wise)
    S = A C^T / |tau|                           student logits (normalised student embeddings)
    L_dist = 1/2 [ 1/Na sum_i CE(p_i, softmax_j S[i, :]) + 1/Nt sum_j CE(q_j, softmax_i S[:, j]) ]
    L = w_sup * L_sup + w_dist * L_dist         (stage 2 of the paper: w_sup = 0, w_dist = 1)

CE(p, r) = -sum p log r (soft-target cross-entropy). A teacher whose similarity is +inf-like on
same-clip pairs and -inf-like elsewhere gives one-hot targets, and on a batch without duplicate
clips L_dist equals the baseline contrastive loss (``audioret.models.loss``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .loss import contrastive_loss


def _abs_tau(tau: Tensor | float) -> Tensor | float:
    return tau.abs() if isinstance(tau, Tensor) else abs(float(tau))


def teacher_logits(teacher_sim: Tensor, tau: Tensor | float) -> Tensor:
    """teacher_sim [Na, Nt] (already averaged) or [M, Na, Nt] (one per teacher) -> Z [Na, Nt] fp32.

    The mean of the teachers' cosine similarities divided by the student's |tau| (no gradient: targets).
    """
    sim = teacher_sim.detach().float()
    if sim.ndim == 3:
        sim = sim.mean(0)
    if sim.ndim != 2:
        raise ValueError(f"teacher_sim must be [Na, Nt] or [M, Na, Nt], got shape {tuple(teacher_sim.shape)}")
    tau_abs = _abs_tau(tau)
    return sim / (tau_abs.detach() if isinstance(tau_abs, Tensor) else tau_abs)


def distillation_targets(teacher_sim: Tensor, tau: Tensor | float) -> tuple[Tensor, Tensor]:
    """-> (p [Na, Nt] rows sum to 1: audio -> text targets, q [Na, Nt] columns sum to 1: text -> audio)."""
    z = teacher_logits(teacher_sim, tau)
    return torch.softmax(z, dim=1), torch.softmax(z, dim=0)


def distillation_loss(audio_emb: Tensor, text_emb: Tensor, teacher_sim: Tensor, tau: Tensor | float) -> Tensor:
    """audio_emb [Na, D], text_emb [Nt, D] (L2-normalised student embeddings), teacher_sim [Na, Nt] or
    [M, Na, Nt] (teacher cosines for the same rows/columns) -> scalar L_dist (module docstring). fp32."""
    if teacher_sim.shape[-2:] != (audio_emb.shape[0], text_emb.shape[0]):
        raise ValueError(f"teacher_sim {tuple(teacher_sim.shape)} does not match the batch: expected "
                         f"[..., {audio_emb.shape[0]}, {text_emb.shape[0]}] (audio rows x caption columns)")
    p, q = distillation_targets(teacher_sim, tau)
    logits = audio_emb.float() @ text_emb.float().T / _abs_tau(tau)  # [Na, Nt]
    a2t = -(p * torch.log_softmax(logits, dim=1)).sum(1).mean()  # over captions, per audio
    t2a = -(q * torch.log_softmax(logits, dim=0)).sum(0).mean()  # over audios, per caption
    return 0.5 * (a2t + t2a)


def resolve_weights(loss_weight: float | None, distill_weight: float | None, *,
                    distilling: bool) -> tuple[float, float]:
    """(w_sup, w_dist): unset weights default to (1, 0) without teachers and to (0, 1) with them (the
    paper's stage 2). Raises when a distillation weight is asked for without teachers or both are 0."""
    w_sup = float(loss_weight) if loss_weight is not None else (0.0 if distilling else 1.0)
    w_dist = float(distill_weight) if distill_weight is not None else (1.0 if distilling else 0.0)
    if w_dist and not distilling:
        raise ValueError(f"distill weight {w_dist} needs teacher targets: pass --distill-from "
                         "(an artifact written by `audioret distill teachers`) or set the weight to 0")
    if w_sup < 0 or w_dist < 0 or (w_sup == 0 and w_dist == 0):
        raise ValueError(f"loss weights (contrastive {w_sup}, distillation {w_dist}) must be >= 0 and "
                         "not both 0")
    return w_sup, w_dist


def combined_loss(audio_emb: Tensor, text_emb: Tensor, audio_clip: Tensor, text_clip: Tensor,
                  tau: Tensor | float, teacher_sim: Tensor | None, *, loss_weight: float = 1.0,
                  distill_weight: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """w_sup * contrastive + w_dist * distillation; a term with weight 0 is not computed.

    Returns (loss, parts) with parts ``{"contrastive": ..., "distill": ...}`` for the computed terms
    (detached, for logging)."""
    parts: dict[str, Tensor] = {}
    total: Tensor | None = None
    if loss_weight:
        sup = contrastive_loss(audio_emb, text_emb, audio_clip, text_clip, tau)
        parts["contrastive"] = sup.detach()
        total = loss_weight * sup
    if distill_weight:
        if teacher_sim is None:
            raise ValueError("combined_loss: distill_weight > 0 but no teacher similarities were given")
        dist = distillation_loss(audio_emb, text_emb, teacher_sim, tau)
        parts["distill"] = dist.detach()
        total = distill_weight * dist if total is None else total + distill_weight * dist
    if total is None:
        raise ValueError("combined_loss: both loss weights are 0")
    return total, parts


__all__ = ["teacher_logits", "distillation_targets", "distillation_loss", "resolve_weights", "combined_loss"]
