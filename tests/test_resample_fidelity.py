"""audioret's 16 kHz waves are the seed's: ``librosa.load(path, sr=16000)`` (soxr HQ after the channel
mean, librosa's length rule), on 44.1 and 48 kHz files, mono and stereo, whole and capped.

Measured on this code: max |audioret - librosa| = 0.0 on every file below (bit for bit; the
torchaudio sinc kernel used before differed by up to 0.21, SNR 15 dB, on the same full-band files). The
tolerance allows float32 rounding (a few ulps of full scale) in case a soxr build orders its sums
differently; the old resampler fails it by orders of magnitude.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audioret.audio import RESAMPLER, load_audio, resampled_length
from audioret.extract.plan import planned_samples

librosa = pytest.importorskip("librosa", reason="librosa (test extra) is the seed's audio loader")

ATOL = 4 * 2.0 ** -24  # a few float32 ulps of full scale


def _content(sr: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """Chirp 50 Hz -> 0.45 sr, a click train and some noise: energy across the whole band,
    including above 8 kHz where the resamplers' anti-alias filters differ most. [S, C] float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0, f1 = 50.0, 0.45 * sr
    chirp = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
    clicks = np.zeros(n)
    clicks[:: sr // 7] = 0.9
    cols = [0.4 * np.roll(chirp, 97 * c) + 0.3 * clicks + 0.05 * rng.standard_normal(n) for c in range(channels)]
    return np.clip(np.stack(cols, axis=1), -1, 1).astype(np.float32)


CASES = [(44100, 1, "PCM_16"), (44100, 2, "PCM_16"), (48000, 1, "FLOAT"), (48000, 2, "PCM_24"),
         (22050, 2, "PCM_16")]


@pytest.mark.parametrize("sr,channels,subtype", CASES)
def test_16k_wave_equals_librosa_load(tmp_path, sr, channels, subtype):
    path = tmp_path / f"clip_{sr}_{channels}.wav"
    sf.write(path, _content(sr, 3.217, channels), sr, subtype=subtype)
    ours = load_audio(path, 16000)
    ref, ref_sr = librosa.load(path, sr=16000)
    assert ref_sr == 16000 and ours.dtype == torch.float32
    assert ours.shape == ref.shape
    diff = float(np.abs(ours.numpy() - ref).max())
    assert diff <= ATOL, f"max |audioret - librosa| = {diff:.3g}"


@pytest.mark.parametrize("sr,channels", [(44100, 2), (48000, 1)])
def test_capped_wave_equals_the_start_of_librosa_load(tmp_path, sr, channels):
    """Only the kept start is decoded (plus context): the samples equal librosa's whole-file result."""
    path = tmp_path / "long.wav"
    sf.write(path, _content(sr, 12.5, channels, seed=1), sr, subtype="PCM_16")
    ref, _ = librosa.load(path, sr=16000)
    for cap in (5 * 16000, 5 * 16000 + 7, 12 * 16000):
        ours = load_audio(path, 16000, max_samples=cap)
        assert ours.shape == (cap,)
        diff = float(np.abs(ours.numpy() - ref[:cap]).max())
        assert diff <= ATOL, f"cap {cap}: max |audioret - librosa| = {diff:.3g}"


@pytest.mark.parametrize("sr", [44100, 48000, 22050, 32000, 8000, 16000])
@pytest.mark.parametrize("frames", [1, 441, 44099, 132301, 1_323_000])
def test_planned_samples_equal_the_decoded_length(tmp_path, sr, frames):
    """extract's plan (header only) predicts the length librosa and audioret produce."""
    n = planned_samples(frames, sr, 16000, None)
    assert n == resampled_length(frames, sr, 16000) == int(np.ceil(frames * (16000 / sr)))
    if frames <= 44099:
        path = tmp_path / "x.wav"
        sf.write(path, np.zeros(frames, np.float32), sr)
        assert load_audio(path, 16000).shape == (n,)


def _drop_resampler(meta_fn):
    def wrapped(*args, **kwargs):
        meta = meta_fn(*args, **kwargs)
        del meta["preprocessing"]["resampler"]
        return meta
    return wrapped


@pytest.mark.parametrize("old", ["missing", "torchaudio-sinc"])
def test_store_made_with_another_resampler_is_refused(synth_corpus, tmp_path, monkeypatch, capsys, old):
    from audioret.extract import ExtractConfig, pipeline, run
    from audioret.extract.cli import main
    from audioret.store import StoreMismatchError, open_store

    store = tmp_path / "old.zarr"
    kw = dict(data_path=synth_corpus, store=store, corpus="clotho", splits=("val",), passes=("audio",),
              audio_encoder="tiny-beats", items_per_part=4, batch_windows=4, num_workers=0, progress=False)
    with monkeypatch.context() as m:  # a store made before this change (or with another resampler)
        if old == "missing":
            m.setattr(pipeline, "store_metadata", _drop_resampler(pipeline.store_metadata))
        else:
            m.setattr(pipeline, "RESAMPLER", old)
        run(ExtractConfig(**kw))
    assert open_store(store).metadata["preprocessing"].get("resampler") == (None if old == "missing" else old)
    with pytest.raises(StoreMismatchError, match=r"preprocessing\.resampler") as err:
        run(ExtractConfig(**kw))
    assert RESAMPLER in str(err.value)
    argv = ["--data-path", str(synth_corpus), "--store", str(store), "--corpus", "clotho", "--splits", "val",
            "--passes", "audio", "--audio-encoder", "tiny-beats", "--items-per-part", "4", "--num-workers", "0",
            "--no-progress"]
    assert main(argv) == 2
    assert "preprocessing.resampler" in capsys.readouterr().err
    # store verify --deep (extract --verify-sample) says why instead of calling every item damaged
    with pytest.raises(StoreMismatchError, match=r"preprocessing\.resampler"):
        run(ExtractConfig(**kw, verify_sample=2))
    # a frozen-audio fine-tune does not train on another resampler's features either
    from audioret.encoders.registry import build_audio_encoder
    from audioret.finetune.config import FinetuneConfig
    from audioret.finetune.run import open_audio_store

    identity = build_audio_encoder("tiny-beats").identity
    with pytest.raises(StoreMismatchError, match=r"preprocessing\.resampler"):
        open_audio_store(FinetuneConfig(audio_store=store), identity)
