"""The stage-2 loss (models/distill_loss.py): a hand-computed case, the oracle-teacher reduction to the
baseline contrastive loss, ensemble averaging, gradients, and the loss-weight rules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from audioret.models import contrastive_loss
from audioret.models.distill_loss import (combined_loss, distillation_loss, distillation_targets,
                                          resolve_weights, teacher_logits)


def test_hand_computed_two_by_two():
    # student S = I (tau 1); teacher cosines I -> Z = I: p_i = q_j = softmax([1, 0]) and both CE terms
    # are the entropy of (s, 1-s) with s = e / (e + 1)
    eye = torch.eye(2)
    loss = distillation_loss(eye, eye, eye, 1.0)
    s = math.e / (math.e + 1)
    assert loss.item() == pytest.approx(-(s * math.log(s) + (1 - s) * math.log(1 - s)), rel=1e-6)


def test_hand_computed_asymmetric_targets():
    # teacher: caption 0 matches both audios; row/column softmaxes differ, computed by hand
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # Z with tau 0.5: [[2, 0], [2, 2]]
    p, q = distillation_targets(teacher, 0.5)
    e2 = math.exp(2)
    assert p[0, 0].item() == pytest.approx(e2 / (e2 + 1)) and p[1, 0].item() == pytest.approx(0.5)
    assert q[0, 0].item() == pytest.approx(0.5) and q[1, 1].item() == pytest.approx(e2 / (e2 + 1))
    # student S = I / 0.5 = diag(2): log_softmax of [2, 0] is [-log(1+e^-2), -2-log(1+e^-2)]
    lse = math.log(1 + math.exp(-2))
    ce_row0 = p[0, 0].item() * lse + p[0, 1].item() * (2 + lse)
    ce_row1 = p[1, 0].item() * (2 + lse) + p[1, 1].item() * lse
    ce_col0 = q[0, 0].item() * lse + q[1, 0].item() * (2 + lse)
    ce_col1 = q[0, 1].item() * (2 + lse) + q[1, 1].item() * lse
    expected = 0.5 * ((ce_row0 + ce_row1) / 2 + (ce_col0 + ce_col1) / 2)
    assert distillation_loss(audio, text, teacher, 0.5).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("tau", [0.05, torch.tensor([-0.07])])
def test_oracle_teacher_gives_the_contrastive_loss_without_duplicate_clips(tau):
    g = torch.Generator().manual_seed(0)
    audio = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    text = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    clips = torch.randperm(8, generator=g)
    oracle = torch.where(clips[:, None] == clips[None, :], 1e4, -1e4)  # +inf-like same clip, -inf-like else
    ref = contrastive_loss(audio, text, clips, clips, tau)
    assert distillation_loss(audio, text, oracle, tau).item() == pytest.approx(ref.item(), rel=1e-6)


def test_oracle_differs_from_contrastive_when_a_clip_repeats():
    # documents the limit of the equivalence: with duplicates the contrastive loss averages all positive
    # cells while distillation spreads each row's target over its positives
    g = torch.Generator().manual_seed(1)
    audio = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    clips = torch.tensor([0, 0, 1, 2, 3, 4])
    audio[1] = audio[0]  # the same clip's audio row twice
    oracle = torch.where(clips[:, None] == clips[None, :], 1e4, -1e4)
    ref = contrastive_loss(audio, text, clips, clips, 0.05)
    assert abs(distillation_loss(audio, text, oracle, 0.05).item() - ref.item()) > 1e-3


def test_ensemble_is_the_mean_of_teacher_similarities():
    g = torch.Generator().manual_seed(2)
    sims = torch.rand(3, 5, 4, generator=g) * 2 - 1
    assert torch.allclose(teacher_logits(sims, 0.05), sims.mean(0) / 0.05)
    audio = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    assert torch.allclose(distillation_loss(audio, text, sims, 0.05), distillation_loss(audio, text, sims.mean(0), 0.05))


def test_gradients_reach_the_student_only_and_loss_is_minimal_at_the_targets():
    g = torch.Generator().manual_seed(3)
    teacher_a = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    teacher_t = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    sim = (teacher_a @ teacher_t.T).requires_grad_(True)
    audio = F.normalize(torch.randn(6, 8, generator=g), dim=-1).requires_grad_(True)
    text = F.normalize(torch.randn(6, 8, generator=g), dim=-1).requires_grad_(True)
    distillation_loss(audio, text, sim, 0.05).backward()
    assert audio.grad is not None and audio.grad.abs().sum() > 0 and sim.grad is None
    # a student equal to the teacher sits at the minimum (cross-entropy = entropy): lower than a random one
    at_teacher = distillation_loss(teacher_a, teacher_t, sim.detach(), 0.05)
    assert at_teacher < distillation_loss(audio.detach(), text.detach(), sim.detach(), 0.05)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="does not match the batch"):
        distillation_loss(torch.eye(3), torch.eye(3), torch.eye(2), 0.05)


def test_weights_default_to_the_paper_and_combined_loss_mixes_terms():
    assert resolve_weights(None, None, distilling=False) == (1.0, 0.0)
    assert resolve_weights(None, None, distilling=True) == (0.0, 1.0)
    assert resolve_weights(0.5, None, distilling=True) == (0.5, 1.0)
    with pytest.raises(ValueError, match="needs teacher targets"):
        resolve_weights(None, 1.0, distilling=False)
    with pytest.raises(ValueError, match="not both 0"):
        resolve_weights(0.0, 0.0, distilling=True)
    g = torch.Generator().manual_seed(4)
    audio = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    clips = torch.arange(4)
    sim = torch.rand(4, 4, generator=g)
    total, parts = combined_loss(audio, text, clips, clips, 0.05, sim, loss_weight=0.3, distill_weight=2.0)
    assert torch.allclose(total, 0.3 * parts["contrastive"] + 2.0 * parts["distill"])
    only_sup, parts = combined_loss(audio, text, clips, clips, 0.05, None)
    assert set(parts) == {"contrastive"} and torch.allclose(only_sup, contrastive_loss(audio, text, clips, clips, 0.05))
