"""Decoding (each writable format, corrupt/truncated/empty files), resampling, probing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioret.audio import AudioDecodeError, decode, load_audio, probe, resample

SR = 44_100
FORMATS = ["wav", "flac", "ogg", "mp3"]


def _sine(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def _peak_hz(wave: torch.Tensor, sr: int) -> float:
    spec = torch.fft.rfft(wave.double() * torch.hann_window(wave.numel(), dtype=torch.float64)).abs()
    return float(torch.argmax(spec)) * sr / wave.numel()


def _write(path: Path, data: np.ndarray, sr: int = SR) -> Path:
    sf.write(str(path), data, sr)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_decodes_to_mono_float32_with_its_pitch(tmp_path, fmt):
    if fmt.upper() not in sf.available_formats() and not (fmt == "ogg" and "OGG" in sf.available_formats()):
        pytest.skip(f"libsndfile here cannot write {fmt}")
    left, right = _sine(880.0, 1.5), _sine(880.0, 1.5) * 0.5
    path = _write(tmp_path / f"x.{fmt}", np.stack([left, right], axis=1))
    info = probe(path)
    assert (info.sample_rate, info.channels) == (SR, 2)
    assert abs(info.duration - 1.5) < 0.06
    samples, rate = decode(path)
    assert rate == SR and samples.dtype == np.float32 and samples.ndim == 1
    wave = load_audio(path, target_sr=16_000)
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert abs(wave.numel() - 24_000) < 0.06 * 16_000
    assert abs(_peak_hz(wave, 16_000) - 880.0) < 5.0
    if fmt in ("wav", "flac"):  # lossless: exactly the channel mean
        np.testing.assert_allclose(samples, (left + right) / 2, atol=1e-4)


def test_mp3_is_supported_by_this_libsndfile():
    assert "MP3" in sf.available_formats(), "soundfile >= 0.12 ships libsndfile with mp3"


def test_silence_is_valid_input(tmp_path):
    path = _write(tmp_path / "silence.wav", np.zeros(8000, dtype=np.float32), 16_000)
    wave = load_audio(path, target_sr=16_000)
    assert wave.shape == (8000,) and float(wave.abs().max()) == 0.0


def _expect_error(path: Path, *words: str) -> AudioDecodeError:
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path)
    err = info.value
    assert err.path == path and str(path) in str(err)
    for w in words:
        assert w in err.reason
    return err


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _expect_error(path, "empty")


def test_missing_file_and_directory(tmp_path):
    _expect_error(tmp_path / "nope.flac", "does not exist")
    folder = tmp_path / "dir.wav"
    folder.mkdir()
    _expect_error(folder, "directory")


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    _expect_error(path)


def test_header_only_wav_has_no_samples(tmp_path):
    path = _write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32))
    _expect_error(path)


@pytest.mark.parametrize("fmt,keep", [("wav", 0.5), ("flac", 0.3), ("mp3", 0.3), ("ogg", 0.5)])
def test_truncated_files(tmp_path, fmt, keep):
    full = _write(tmp_path / f"full.{fmt}", _sine(440.0, 3.0))
    data = full.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: int(len(data) * keep)])
    load_audio(full)  # the intact file decodes
    _expect_error(cut)


def test_max_samples_reads_only_the_start(tmp_path):
    path = _write(tmp_path / "long.wav", _sine(440.0, 3.0))
    full = load_audio(path, 16_000)
    head = load_audio(path, 16_000, max_samples=8000)
    assert head.shape == (8000,)
    assert torch.equal(head, full[:8000])  # decoded past the cut: same samples as the whole file


def test_resample_keeps_sine_frequency_44k_to_16k():
    wave = torch.from_numpy(_sine(1234.0, 2.0))
    out = resample(wave, SR, 16_000)
    assert out.shape == (32_000,)
    assert abs(_peak_hz(out, 16_000) - 1234.0) < 2.0
    assert abs(_peak_hz(wave, SR) - 1234.0) < 2.0


def test_resample_batches_equal_rows():
    batch = torch.randn(3, 4410)
    out = resample(batch, SR, 16_000)
    assert out.shape == (3, 1600) and out.dtype == torch.float32
    assert torch.equal(out[1], resample(batch[1], SR, 16_000))
    assert resample(batch, 16_000, 16_000) is batch
