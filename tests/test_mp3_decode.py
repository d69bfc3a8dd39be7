"""mp3: soundfile's decoder (libsndfile's mpg123) against ffmpeg's, on files encoded here from known
content (a chirp and a click train), with and without the LAME/Xing gapless header.

Measured (libsndfile 1.2.2, ffmpeg 5.1, 5 s at 44.1/48 kHz, mono and stereo):
- at the file's rate both decoders give the same length and start: the source length and no
  offset with the gapless header; 1105 samples of encoder delay (and padding to whole frames)
  without it, in both. Samples differ by at most 1.4e-6 (float decoders' rounding).
- audioret's 16 kHz wave equals ``librosa.load(mp3, sr=16000)`` bit for bit (librosa decodes mp3
  with soundfile first, then soxr HQ), so mp3 goes the same way as wav.
- the seed's own mp3 command (``ffmpeg -ss 0 -t D -i f.mp3 -ac 1 -ar 16000 -f f32le``) has the
  same start; its length is ffmpeg's rounding (80666 vs ceil's 80667 for 222336 frames at 44.1 kHz,
  the seed then zero-pads to 30 s). Its samples differ: ffmpeg's resampler (57-61 dB SNR against
  soxr HQ) and, for stereo, its downmix 0.707 (L + R), sqrt(2) times the channel mean of librosa
  and of the seed's own wav path. These tests pin what the decoders do; that difference is the
  seed's, between its wav and mp3 paths, and is documented rather than copied.
- a VBR mp3 without the Xing/Info header: libsndfile guesses its length from the first frame and
  stops there (1.02 s of a 5 s file; librosa.load too); ffmpeg decodes it to the end (the seed's
  command then cuts at ffprobe's own guess, 4.77 s). audioret sends exactly these files through
  ffmpeg (audio/mp3.py) and decodes all of them; without ffmpeg they fail with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioret.audio import decode, load_audio, probe

FFMPEG = shutil.which("ffmpeg")
ENCODER_DELAY = 1105  # LAME's 576 + the decoder's 529, both decoders report it without Xing info
DECODER_ATOL = 1e-5   # measured 1.4e-6


def _has_lame() -> bool:
    if FFMPEG is None:
        return False
    out = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return "libmp3lame" in out


needs_ffmpeg = pytest.mark.skipif(not _has_lame(), reason="ffmpeg with libmp3lame is not installed "
                                  "(apt-get install ffmpeg); it encodes the mp3s and is the seed's decoder")


def _content(sr: int, seconds: float, channels: int) -> np.ndarray:
    """Chirp 200 Hz -> 4 kHz plus clicks every 0.5 s from 0.25 s: [S, C] float32."""
    n = int(sr * seconds)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 * t + 3800 * t ** 2 / (2 * seconds)))
    x[int(0.25 * sr):: sr // 2] += 0.6
    return np.stack([x * (1.0 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def _encode(tmp: Path, sr: int, channels: int, gapless: bool) -> tuple[Path, np.ndarray]:
    src = _content(sr, 5.0, channels)
    wav, mp3 = tmp / "src.wav", tmp / f"x_{sr}_{channels}_{int(gapless)}.mp3"
    sf.write(wav, src, sr)
    extra = [] if gapless else ["-write_xing", "0"]
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", *extra, str(mp3)],
                   check=True)
    return mp3, src


def _ffmpeg_decode(path: Path, *args: str) -> np.ndarray:
    out = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), *args, "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, np.float32)


def _lag(ref: np.ndarray, x: np.ndarray, max_lag: int = 2000) -> int:
    """Shift of ``x`` against ``ref`` (samples; positive = ``x`` starts later)."""
    m = min(len(ref), len(x)) - max_lag
    scores = [float(np.dot(ref[max_lag:m], x[max_lag + k:m + k])) for k in range(-max_lag, max_lag)]
    return int(np.argmax(scores)) - max_lag


CASES = [(44100, 1, True), (44100, 2, True), (48000, 2, True), (44100, 1, False), (48000, 2, False)]


@needs_ffmpeg
@pytest.mark.parametrize("sr,channels,gapless", CASES)
def test_soundfile_and_ffmpeg_decode_alike(tmp_path, sr, channels, gapless):
    mp3, src = _encode(tmp_path, sr, channels, gapless)
    ours, rate = decode(mp3)  # channel mean, file rate
    theirs = _ffmpeg_decode(mp3, "-ac", str(channels)).reshape(-1, channels).mean(axis=1, dtype=np.float32)
    assert rate == sr
    assert len(ours) == len(theirs)
    expected_lag = 0 if gapless else ENCODER_DELAY
    assert _lag(src.mean(axis=1), ours) == _lag(src.mean(axis=1), theirs) == expected_lag
    if gapless:  # the gapless header gives back exactly the encoded samples
        assert len(ours) == len(src) == probe(mp3).num_frames
    assert float(np.abs(ours - theirs).max()) <= DECODER_ATOL


@needs_ffmpeg
@pytest.mark.parametrize("sr,channels,gapless", CASES)
def test_mp3_at_16k_equals_librosa_load(tmp_path, sr, channels, gapless):
    librosa = pytest.importorskip("librosa", reason="librosa (test extra) is the seed's audio loader")
    mp3, _ = _encode(tmp_path, sr, channels, gapless)
    ref, _ = librosa.load(mp3, sr=16000)
    ours = load_audio(mp3, 16000)
    assert ours.shape == ref.shape
    assert float(np.abs(ours.numpy() - ref).max()) <= 4 * 2.0 ** -24
    capped = load_audio(mp3, 16000, max_samples=3 * 16000)
    assert float(np.abs(capped.numpy() - ref[:3 * 16000]).max()) <= 4 * 2.0 ** -24


@needs_ffmpeg
@pytest.mark.parametrize("sr,channels,gapless", [(44100, 1, True), (48000, 2, False)])
def test_seed_ffmpeg_command_has_our_start_and_length(tmp_path, sr, channels, gapless):
    """The seed's mp3 path: same start (no shift), length within ffmpeg's rounding (1 sample)."""
    mp3, _ = _encode(tmp_path, sr, channels, gapless)
    seed = _ffmpeg_decode(mp3, "-ac", "1", "-ar", "16000")
    ours = load_audio(mp3, 16000).numpy()
    assert abs(len(seed) - len(ours)) <= 1
    assert _lag(ours, seed) == 0


def _encode_vbr_untagged(tmp: Path) -> tuple[Path, np.ndarray]:
    src = _content(44100, 5.0, 2)
    wav, mp3 = tmp / "src.wav", tmp / "vbr_untagged.mp3"
    sf.write(wav, src, 44100)
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", "-q:a", "4",
                    "-write_xing", "0", str(mp3)], check=True)
    return mp3, src


@needs_ffmpeg
def test_length_header_detection(tmp_path):
    from audioret.audio.mp3 import length_is_guessed

    tagged, _ = _encode(tmp_path, 44100, 2, True)
    cbr_untagged, _ = _encode(tmp_path, 48000, 2, False)
    vbr_untagged, _ = _encode_vbr_untagged(tmp_path)
    assert not length_is_guessed(tagged) and not length_is_guessed(cbr_untagged)
    assert length_is_guessed(vbr_untagged)


@needs_ffmpeg
def test_vbr_mp3_without_length_header_is_decoded_to_its_end(tmp_path):
    """libsndfile stops at its guess (1.02 s of this 5 s file, measured; librosa too); audioret decodes it
    with ffmpeg: the whole file, the probe agrees, same start as the tagged decodes (encoder delay)."""
    mp3, src = _encode_vbr_untagged(tmp_path)
    with sf.SoundFile(mp3) as f:
        guessed = f.frames
    theirs = _ffmpeg_decode(mp3, "-ac", "2").reshape(-1, 2).mean(axis=1, dtype=np.float32)
    assert guessed < 0.5 * len(theirs), "the fixture should show libsndfile's short guess"
    ours, rate = decode(mp3)
    assert rate == 44100 and len(ours) == len(theirs) == probe(mp3).num_frames
    assert float(np.abs(ours - theirs).max()) == 0.0
    assert _lag(src.mean(axis=1), ours) == ENCODER_DELAY
    wave = load_audio(mp3, 16000)
    assert wave.shape == (int(np.ceil(len(theirs) * 16000 / 44100)),)
    assert torch.equal(load_audio(mp3, 16000, max_samples=32000), wave[:32000])


@needs_ffmpeg
def test_vbr_mp3_without_header_and_without_ffmpeg_is_a_clear_failure(tmp_path, monkeypatch):
    from audioret.audio import AudioDecodeError
    from audioret.audio import io as audio_io

    mp3, _ = _encode_vbr_untagged(tmp_path)
    monkeypatch.setattr(audio_io, "ffmpeg_available", lambda: False)
    with pytest.raises(AudioDecodeError, match="install ffmpeg"):
        load_audio(mp3, 16000)


@needs_ffmpeg
@pytest.mark.parametrize("sr,channels,extra", [(44100, 1, []), (48000, 2, ["-q:a", "4"]), (22050, 2, [])])
def test_probe_of_an_mp3_without_length_header_counts_its_frames(tmp_path, sr, channels, extra):
    """extract plans from the probe: without a length header libsndfile's count is an estimate (too long for
    CBR, far too short for VBR); the frame headers give what both decoders then produce."""
    src = _content(sr, 5.3, channels)
    wav, mp3 = tmp_path / "src.wav", tmp_path / "untagged.mp3"
    sf.write(wav, src, sr)
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame", *extra, "-write_xing", "0",
                    str(mp3)], check=True)
    theirs = len(_ffmpeg_decode(mp3, "-ac", "1"))
    assert sf.info(mp3).frames != theirs, "the fixture should show libsndfile's estimate"
    assert probe(mp3).num_frames == len(decode(mp3)[0]) == theirs
