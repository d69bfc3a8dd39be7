"""Batched fbank vs torchaudio's per-clip Kaldi fbank; batch independence; autocast."""

from __future__ import annotations

import pytest
import torch

from audioret.encoders.beats import BEATs, randomize_, tiny_beats_config
from audioret.encoders.fbank import beats_fbank, num_fbank_frames, reference_fbank_loop


@pytest.mark.parametrize("length", [400, 16000, 27681, 48000])
def test_batched_fbank_matches_kaldi_per_clip(length):
    g = torch.Generator().manual_seed(length)
    wave = torch.randn(3, length, generator=g) * 0.2
    wave[1] *= 0.001                       # quiet clip: log floor territory
    wave[2, length // 2:] = 0.0            # zero padding -> log(eps) frames
    ours = beats_fbank(wave)
    ref = reference_fbank_loop(wave)
    assert ours.shape == ref.shape == (3, num_fbank_frames(length), 128)
    assert (ours - ref).abs().max() < 1e-4


def test_fbank_rejects_too_short_input():
    with pytest.raises(ValueError, match="400 samples"):
        beats_fbank(torch.zeros(1, 399))


def test_padded_neighbours_do_not_change_a_clip():
    model = randomize_(BEATs(tiny_beats_config()), 1).eval()
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 32000, generator=g) * 0.1
    b = torch.zeros(1, 32000)
    b[0, :9000] = torch.randn(9000, generator=g) * 0.1
    mask = torch.zeros(2, 32000, dtype=torch.bool)
    mask[1, 9000:] = True
    with torch.no_grad():
        alone, _ = model.extract_features(a, torch.zeros(1, 32000, dtype=torch.bool))
        batch, tmask = model.extract_features(torch.cat([a, b]), mask)
    assert not tmask[0].any() and tmask[1].any()
    assert (batch[0] - alone[0]).abs().max() < 1e-4


def test_bf16_autocast_runs_and_keeps_fbank_fp32():
    model = randomize_(BEATs(tiny_beats_config()), 2).eval()
    x = torch.randn(2, 24000) * 0.1
    with torch.no_grad():
        ref, _ = model.extract_features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert beats_fbank(x).dtype == torch.float32
            out, _ = model.extract_features(x)
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()
    rel = (out.float() - ref).norm() / ref.norm()
    assert rel < 0.05
