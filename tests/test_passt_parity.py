"""Our PaSST against hear21passt 0.0.26 (the official baseline's PaSST; a test-only reference).

Random weights with trained-like magnitudes in the release's layout (the 159 keys of
``passt-s-f128-p16-s16-ap.468.pt``), loaded strictly into both models. hear21passt prints to
stdout on import and on its first forward: it runs under ``quiet()`` (tests/passt_reference.py).
"""

from __future__ import annotations

import math

import pytest
import torch

from audioret.encoders import passt as P

pytest.importorskip("hear21passt")

TOL = 1e-4
SR = P.SAMPLE_RATE

from passt_reference import baseline_clip_embedding, clips, hear_mel, hear_model, quiet  # noqa: E402


def pair(cfg: P.PaSSTConfig, seed: int):
    ours = P.randomize_(P.PaSST(cfg), seed).eval()
    ref = hear_model(cfg)
    ref.load_state_dict(ours.state_dict(), strict=True)   # identical key layout, no renaming
    return ours, ref.eval()


def test_release_layout_is_the_159_keys():
    ours = P.PaSST(P.passt_s_config(num_classes=527))
    sd = ours.state_dict()
    assert len(sd) == 159
    assert tuple(sd["time_new_pos_embed"].shape) == (1, 768, 1, 62)
    assert tuple(sd["freq_new_pos_embed"].shape) == (1, 768, 8, 1)
    assert tuple(sd["new_pos_embed"].shape) == (1, 2, 768)
    with quiet():
        ref = hear_model(P.passt_s_config(num_classes=527))
    assert {k: tuple(v.shape) for k, v in ref.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}


def test_mel_front_end_matches_hear21passt():
    mel = hear_mel().eval()
    waves = torch.stack([torch.nn.functional.pad(c, (0, P.WINDOW_SAMPLES - len(c)))
                         for c in clips([10.0, 3.2])])
    with torch.no_grad(), quiet():
        ref = mel(waves)
    ours = P.passt_mel(waves)
    assert ours.shape == ref.shape == (2, 128, 1000) and P.num_mel_frames(P.WINDOW_SAMPLES) == 1000
    assert (ours - ref).abs().max() < TOL
    # jitter in training mode: same draws (fmin then fmax, torch RNG) give the same banks
    mel.train()
    front = P.MelFrontEnd().train()
    torch.manual_seed(7)
    with torch.no_grad(), quiet():
        ref_aug = mel(waves[:1, :SR])
    torch.manual_seed(7)
    ours_aug = front(waves[:1, :SR])
    assert (ours_aug - ref_aug).abs().max() < TOL
    assert (ours_aug - P.passt_mel(waves[:1, :SR])).abs().max() > 1e-3   # the jitter did something
    assert torch.equal(P.MelFrontEnd().eval()(waves[:1, :SR]), P.passt_mel(waves[:1, :SR]))


def test_full_size_forward_matches_hear21passt():
    """The baseline's model (12 x 768, 498 tokens) on one 10 s window, eval mode, fp32."""
    ours, ref = pair(P.passt_s_config(num_classes=527), seed=2025)
    wave = clips([10.0], seed=3)[0][None]
    with torch.no_grad(), quiet():
        logits, features = ref(hear_mel().eval()(wave).unsqueeze(1))
    with torch.no_grad():
        frames, pooled = ours.encode(wave)
        our_logits = ours.head(pooled)
    assert frames.shape == (1, 62, 768) and pooled.shape == (1, 768)
    assert features.abs().max() > 0.5                  # not a degenerate comparison
    assert (pooled - features).abs().max() < TOL
    assert (our_logits - logits).abs().max() < TOL


def test_patchout_and_jitter_in_training_mode_match_with_the_same_rng():
    """Train mode: hear draws fmin, fmax, the time columns, then the frequency rows; so do we."""
    cfg = P.tiny_passt_config()
    ours, ref = pair(cfg, seed=5)
    ours.train()
    ref.train()
    mel = hear_mel().train()
    wave = clips([10.0, 7.0], seed=4)
    wave = torch.stack([torch.nn.functional.pad(w, (0, P.WINDOW_SAMPLES - len(w))) for w in wave])
    torch.manual_seed(11)
    with torch.no_grad(), quiet():
        _, ref_feat = ref(mel(wave).unsqueeze(1))
    torch.manual_seed(11)
    with torch.no_grad():
        frames, pooled = ours.encode(wave)
    assert frames.shape == (2, 62 - 15, cfg.embed_dim)   # 15 time columns dropped
    assert (pooled - ref_feat).abs().max() < TOL
    with torch.no_grad():
        eval_pooled = ours.eval().encode(wave)[1]
    assert (eval_pooled - pooled).abs().max() > 1e-3


def test_window_rule_matches_the_baseline_segments(tmp_path, monkeypatch):
    """What extract stores and the end-to-end model averages (audioret.encoders.features) equals the
    baseline's segment rule, incl. the edges 10 s, 10.5 s and 20 s."""
    from audioret.encoders.features import audio_clips_features
    from audioret.encoders.registry import build_audio_encoder

    monkeypatch.setenv("AUDIORET_CACHE", str(tmp_path))
    enc = build_audio_encoder("tiny-passt")
    ref = hear_model(enc.model.cfg)
    ref.load_state_dict(enc.model.state_dict(), strict=True)
    ref.eval()
    lengths = [4.0, 10.0, 10.5, 20.0, 27.3, 30.0]
    waves = clips(lengths, seed=9)
    feats = audio_clips_features(enc, waves, max_samples=30 * SR)
    for sec, wave, f in zip(lengths, waves, feats):
        assert len(f.windows) == P.windows_used(len(wave)) == math.ceil(sec / 10)
        want = baseline_clip_embedding(ref, wave)
        assert (f.windows.mean(0) - want).abs().max() < TOL, sec
    # the helpers that state the rule directly
    per_window = torch.stack([baseline_windows_of(enc, w) for w in waves])
    means = P.baseline_window_mean(per_window, [len(w) for w in waves])
    for m, f in zip(means, feats):
        assert (m - f.windows.mean(0)).abs().max() < TOL


def baseline_windows_of(enc, wave: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return enc.model.encode(P.baseline_windows(wave[None])[0])[1]


def test_ours_prints_nothing(tmp_path, capsys):
    model = P.randomize_(P.PaSST(P.tiny_passt_config()), 0)
    path = P.save_passt_release(model, tmp_path / "tiny.pt")
    loaded = P.load_passt(path)
    with torch.no_grad():
        loaded.encode(torch.zeros(1, P.WINDOW_SAMPLES))
    assert capsys.readouterr().out == ""
