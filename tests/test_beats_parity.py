"""Our BEATs against reference outputs stored in encoders/fixtures (see its README)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import audioret.encoders as enc_pkg
from audioret.encoders.beats import load_beats, pool_time_frames

FIXDIR = Path(enc_pkg.__file__).parent / "fixtures"
TOL = 1e-4


def _maker():
    spec = importlib.util.spec_from_file_location("make_beats_fixture", FIXDIR / "make_beats_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def setup():
    maker = _maker()
    ref = torch.load(FIXDIR / "beats_tiny_fixture.pt", weights_only=True)
    model = load_beats(FIXDIR / "beats_tiny_official.pt")
    wave, mask = maker.padded_batch()
    full = maker.fixture_waveforms(3, maker.FULL)
    assert float(wave.double().sum()) == pytest.approx(ref["wave_checksum"][0], rel=1e-9)
    assert float(full.double().abs().sum()) == pytest.approx(ref["wave_checksum"][1], rel=1e-9)
    return model, ref, wave, mask, full


def test_padded_batch_matches_reference(setup):
    model, ref, wave, mask, _ = setup
    with torch.no_grad():
        tokens, token_mask = model.extract_features(wave, mask)
    assert torch.equal(token_mask, ref["padded_token_mask"])
    valid = ~token_mask
    assert (tokens - ref["padded_tokens"])[valid].abs().max() < TOL
    # the non-geometric rule: the 0.3 s clip keeps 15 tokens (1 full time patch + 7 freq patches)
    assert valid.sum(1).tolist() == (~ref["padded_token_mask"]).sum(1).tolist()


def test_unpadded_and_all_false_mask_match_reference(setup):
    model, ref, _, _, full = setup
    with torch.no_grad():
        a, none_mask = model.extract_features(full, None)
        b, false_mask = model.extract_features(full, torch.zeros_like(full, dtype=torch.bool))
    assert none_mask is None
    assert torch.equal(false_mask, ref["allfalse_token_mask"]) and not false_mask.any()
    assert (a - ref["unpadded_tokens"]).abs().max() < TOL
    assert (b - ref["allfalse_tokens"]).abs().max() < TOL


def test_audioset_head_matches_reference_and_stays_out_of_features(setup):
    model, ref, wave, mask, _ = setup
    with torch.no_grad():
        probs = model.predict(wave, mask)
        tokens, _ = model.extract_features(wave, mask)
    assert (probs - ref["padded_probs"]).abs().max() < 1e-5
    assert tokens.shape[-1] == model.cfg.encoder_embed_dim  # features, not class scores


def test_time_frames_rule_on_partly_valid_patch(setup):
    model, _, wave, mask, _ = setup
    with torch.no_grad():
        tokens, token_mask = model.extract_features(wave, mask)
        frames, frame_pad = model.frames(wave, mask)
    f = model.cfg.freq_patches
    assert frames.shape == (3, tokens.shape[1] // f, tokens.shape[2])
    # clip 0: 15 valid tokens -> time patch 1 has 7 valid tokens, patch 2.. padded
    assert frame_pad[0].tolist()[:3] == [False, False, True]
    expect = tokens[0, 8:15].mean(0)
    assert torch.allclose(frames[0, 1], expect, atol=1e-6)
    assert torch.allclose(frames[0, 0], tokens[0, :8].mean(0), atol=1e-6)
    assert frames[0, 2:].abs().max() == 0
    again, pad2 = pool_time_frames(tokens, None, f)
    assert not pad2.any() and torch.allclose(again[2], tokens[2].view(-1, f, tokens.shape[2]).mean(1))
