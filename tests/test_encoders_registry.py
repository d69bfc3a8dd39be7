"""Registry: every entry builds offline; wrapper API used by extract and finetune."""

from __future__ import annotations

import pytest
import torch

from audioret.encoders import registry
from audioret.encoders.registry import build_audio_encoder, build_text_encoder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("audioret_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("AUDIORET_CACHE", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def tiny_audio(cache):
    return build_audio_encoder("tiny-beats")


def test_tiny_beats_is_an_official_checkpoint_in_the_cache(cache, tiny_audio):
    path = cache / "tiny-beats" / "tiny_beats_seed0.pt"
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) == {"cfg", "model"} and ckpt["cfg"]["encoder_layers"] == 2
    ident = tiny_audio.identity
    assert ident["name"] == "tiny-beats" and len(ident["checkpoint_sha256"]) == 64
    assert ident["config"]["encoder_embed_dim"] == tiny_audio.dim == 192
    again = build_audio_encoder("tiny-beats")            # reuses the cached file
    assert again.identity["checkpoint_sha256"] == ident["checkpoint_sha256"]


def test_encode_windows_shapes_and_seed_pooling(tiny_audio):
    g = torch.Generator().manual_seed(0)
    windows = torch.randn(3, tiny_audio.window_samples, generator=g) * 0.1
    windows[2, 50000:] = 0.0
    frames, mean = tiny_audio.encode_windows(windows)
    assert tiny_audio.frames_per_window == 62
    assert frames.shape == (3, 62, 192) and mean.shape == (3, 192)
    with torch.no_grad():
        tokens, mask = tiny_audio.extract_features(windows[1:2])
    assert mask is None and tokens.shape[1] == 496
    assert torch.allclose(mean[1], tokens[0].mean(0), atol=1e-5)      # all 496 tokens
    assert torch.allclose(frames[1], tokens[0].view(62, 8, 192).mean(1), atol=1e-5)
    with pytest.raises(ValueError, match="160000"):
        tiny_audio.encode_windows(torch.zeros(1, 16000))


def test_num_valid_frames_agrees_with_masked_frames(tiny_audio):
    s = tiny_audio.window_samples
    lengths = [1, 2799, 2800, 48000, 116800, 159999, s]
    wave = torch.zeros(len(lengths), s)
    mask = torch.ones(len(lengths), s, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = False
    with torch.no_grad():
        _, frame_pad = tiny_audio.frames(wave, mask)
    expect = (~frame_pad).sum(1).tolist()
    assert [tiny_audio.num_valid_frames(n) for n in lengths] == expect
    assert tiny_audio.num_valid_frames(0) == 0 and tiny_audio.num_valid_frames(48000) == 19


def test_frozen_encoder_stays_in_eval_mode(tiny_audio):
    tiny_audio.train()
    assert not tiny_audio.model.training
    assert not any(p.requires_grad for p in tiny_audio.parameters())


def test_beats_needs_a_checkpoint_and_unknown_names_fail(cache):
    with pytest.raises(ValueError, match="checkpoint"):
        build_audio_encoder("beats")
    with pytest.raises(ValueError, match="unknown audio encoder"):
        build_audio_encoder("no-such-encoder")
    with pytest.raises(ValueError, match="needs its weights"):
        build_audio_encoder("passt")
    enc = build_audio_encoder("beats", registry.build_tiny_beats())
    assert enc.identity["checkpoint"].endswith("tiny_beats_seed0.pt")
