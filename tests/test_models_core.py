"""models/: loss, schedule, pooling, heads, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from audioret.models import (AudioFeatures, HeadConfig, RetrievalHeads, TextFeatures, contrastive_loss,
                             load_heads, lr_at, masked_mean, masked_mean_std, pad_ragged, save_heads,
                             segment_mean)


def _loss_by_loops(a, t, akey, tkey, tau):
    """Section 5 written out cell by cell, as a reference."""
    c = (a @ t.T / tau).tolist()
    na, nt = len(c), len(c[0])
    pos = [(i, j) for i in range(na) for j in range(nt) if akey[i] == tkey[j]]
    s1 = s2 = 0.0
    for i, j in pos:
        s1 += c[i][j] - math.log(sum(math.exp(c[k][j]) for k in range(na)))
        s2 += c[i][j] - math.log(sum(math.exp(c[i][k]) for k in range(nt)))
    return -0.5 * (s1 / len(pos) + s2 / len(pos))


def test_loss_matches_cell_by_cell_reference_with_duplicate_clips():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=-1)
    clips = torch.tensor([3, 1, 3, 7, 1, 2])  # two pairs of captions share a clip
    a[2] = a[0]  # the same clip's audio row appears twice, as in the baseline's batches
    a[4] = a[1]
    got = contrastive_loss(a, t, clips, clips, 0.05)
    assert got.item() == pytest.approx(_loss_by_loops(a, t, clips.tolist(), clips.tolist(), 0.05), rel=1e-5)


def test_loss_diagonal_only_equals_symmetric_cross_entropy():
    g = torch.Generator().manual_seed(1)
    a, t = F.normalize(torch.randn(5, 4, generator=g), dim=-1), F.normalize(torch.randn(5, 4, generator=g), dim=-1)
    clips = torch.arange(5)
    logits = a @ t.T / 0.1
    ref = 0.5 * (F.cross_entropy(logits.T, clips) + F.cross_entropy(logits, clips))
    assert contrastive_loss(a, t, clips, clips, torch.tensor([-0.1])).item() == pytest.approx(ref.item(), rel=1e-5)


def test_loss_falls_when_pairs_align_and_rejects_orphan_captions():
    t = F.normalize(torch.randn(4, 8), dim=-1)
    clips = torch.arange(4)
    assert contrastive_loss(t, t, clips, clips, 0.05) < contrastive_loss(t.roll(1, 0), t, clips, clips, 0.05)
    with pytest.raises(ValueError, match="no audio of its clip"):
        contrastive_loss(t[:2], t, clips[:2], clips, 0.05)


def test_loss_gradient_flows_to_both_sides_and_tau():
    a = torch.randn(4, 8, requires_grad=True)
    t = torch.randn(4, 8, requires_grad=True)
    tau = torch.tensor([0.05], requires_grad=True)
    contrastive_loss(F.normalize(a, dim=-1), F.normalize(t, dim=-1), torch.arange(4), torch.arange(4), tau).backward()
    assert a.grad.abs().sum() > 0 and t.grad.abs().sum() > 0 and tau.grad.abs().sum() > 0


def test_schedule_follows_section_6_formula():
    kw = dict(max_lr=2e-5, min_lr=1e-7, warmup_epochs=1, rampdown_epochs=15)
    s = 10
    assert lr_at(0, s, **kw) == pytest.approx(1e-7)  # warmup starts at min_lr, not 0
    assert lr_at(5, s, **kw) == pytest.approx(1e-7 + (2e-5 - 1e-7) * 0.5)
    assert lr_at(10, s, **kw) == pytest.approx(2e-5)  # peak at the start of epoch 1
    mid = 10 + 75  # half way through the cosine
    assert lr_at(mid, s, **kw) == pytest.approx(1e-7 + (2e-5 - 1e-7) * 0.5)
    assert lr_at(159, s, **kw) > 1e-7 and lr_at(160, s, **kw) == pytest.approx(1e-7)
    assert lr_at(10_000, s, **kw) == pytest.approx(1e-7)
    lrs = [lr_at(i, s, **kw) for i in range(10, 161)]
    assert all(x >= y for x, y in zip(lrs, lrs[1:]))  # monotone down after warmup
    with pytest.raises(ValueError):
        lr_at(0, 0, **kw)


def test_pooling_ignores_padding_and_segment_mean_averages_windows():
    x = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    m = torch.tensor([[True, True, False]])
    assert masked_mean(x, m).tolist() == [[2.0, 4.0]]
    ms = masked_mean_std(x, m, eps=0.0)
    assert ms.tolist() == [[2.0, 4.0, 1.0, 2.0]]
    assert segment_mean(x, m).tolist() == [[2.0, 4.0]]
    assert masked_mean(x, torch.zeros_like(m)).tolist() == [[0.0, 0.0]]


def test_pad_ragged_gathers_items_with_masks():
    flat = torch.arange(12.0).reshape(6, 2)
    starts, lengths = torch.tensor([0, 1, 4]), torch.tensor([1, 3, 2])
    out, mask = pad_ragged(flat, starts, lengths, torch.tensor([2, 0, 1]))
    assert mask.tolist() == [[True, True, False], [True, False, False], [True, True, True]]
    assert out[0].tolist() == [[8, 9], [10, 11], [0, 0]]
    assert out[2].tolist() == flat[1:4].tolist()


def _batches(b=3, t=5, w=2, l=4, da=6, dt=10):
    g = torch.Generator().manual_seed(2)
    fm = torch.ones(b, t, dtype=torch.bool); fm[0, 3:] = False
    tm = torch.ones(b, l, dtype=torch.bool); tm[1, 2:] = False
    audio = AudioFeatures(torch.randn(b, t, da, generator=g), fm, torch.randn(b, w, da, generator=g),
                          torch.ones(b, w, dtype=torch.bool))
    text = TextFeatures(torch.randn(b, l, dt, generator=g), tm, torch.randn(b, dt, generator=g))
    return audio, text


@pytest.mark.parametrize("ap,tp,proj,seq", [("segment-mean", "first", "linear", 0), ("mean-std", "mean", "mlp", 0),
                                            ("attention", "attention", "mlp", 0), ("mean", "mean-std", "linear", 1)])
def test_heads_embed_unit_vectors_and_ignore_padding(ap, tp, proj, seq):
    cfg = HeadConfig(audio_dim=6, text_dim=10, embed_dim=8, audio_pooling=ap, text_pooling=tp, projection=proj,
                     hidden_dim=16, seq_layers=seq, seq_dim=8, seq_heads=2)
    heads = RetrievalHeads(cfg).eval()
    audio, text = _batches()
    ea, et = heads.embed_audio(audio), heads.embed_text(text)
    assert ea.shape == (3, 8) and et.shape == (3, 8)
    assert torch.allclose(ea.norm(dim=-1), torch.ones(3)) and torch.allclose(et.norm(dim=-1), torch.ones(3))
    audio.frames[0, 3:] = 1e3  # padding content must not matter
    text.tokens[1, 2:] = -1e3
    assert torch.allclose(heads.embed_audio(audio), ea, atol=1e-5)
    assert torch.allclose(heads.embed_text(text), et, atol=1e-5)


def test_head_config_rejects_bad_combinations():
    with pytest.raises(ValueError, match="audio_pooling"):
        RetrievalHeads(HeadConfig(audio_pooling="max"))
    with pytest.raises(ValueError, match="seq_layers"):
        RetrievalHeads(HeadConfig(text_pooling="first", seq_layers=1))


def test_checkpoint_round_trip_and_clear_errors(tmp_path):
    cfg = HeadConfig(audio_dim=6, text_dim=10, embed_dim=8, hidden_dim=16)
    heads = RetrievalHeads(cfg).eval()
    path = save_heads(tmp_path / "h.pt", heads, store={"metadata": {"audio_encoder": {"name": "x"}}},
                      metrics={"val/mAP@10": 0.5})
    loaded = load_heads(path)
    audio, text = _batches()
    assert torch.equal(loaded.embed_audio(audio), heads.embed_audio(audio))
    assert torch.equal(loaded.embed_text(text), heads.embed_text(text))
    assert loaded.checkpoint_info["store"]["metadata"]["audio_encoder"]["name"] == "x"
    assert loaded.checkpoint_info["metrics"]["val/mAP@10"] == 0.5
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an audioret head checkpoint"):
        load_heads(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_heads(tmp_path / "missing.pt")


def test_damaged_checkpoints_raise_errors_that_name_the_file(tmp_path):
    from audioret.models import load_heads
    from audioret.models.checkpoint import checkpoint_kind
    from audioret.models.dual_encoder import load_finetuned

    bad = tmp_path / "heads.pt"
    bad.write_bytes(b"not a torch file" * 4)
    for load in (load_heads, checkpoint_kind, load_finetuned):
        with pytest.raises(ValueError, match=str(bad)):
            load(bad)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_finetuned(tmp_path / "missing.ckpt")


def test_one_precision_policy_for_both_trainers():
    from audioret.models.precision import choose_precision

    assert choose_precision("auto", cuda=False) == "32-true"
    assert choose_precision("auto", cuda=True, bf16_supported=True) == "bf16-mixed"
    assert choose_precision("auto", cuda=True, bf16_supported=False) == "16-mixed"  # Turing (2080 Ti)
    assert choose_precision("16-mixed", cuda=False) == "32-true"  # the baseline default on a laptop
    assert choose_precision("bf16-mixed", cuda=False) == "bf16-mixed"
