"""Decode audio files with soundfile (libsndfile): wav, flac, ogg/vorbis and mp3.

torchaudio >= 2.9 has no ``load``/``info``; soundfile is the decoder here, except for VBR mp3s
without a length header, which libsndfile cuts short and ffmpeg decodes (``mp3``). Every failure
(missing, unreadable, corrupt, truncated, zero-length, non-finite samples, float samples beyond
``FLOAT_PEAK_LIMIT`` times full scale) surfaces as
``AudioDecodeError`` naming the file. Silence is valid audio.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .errors import AudioDecodeError
from .mp3 import counted_frames, ffmpeg_available, ffmpeg_decode, length_is_guessed
from .resample import context_frames, resample


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int  # Hz
    num_frames: int  # samples per channel
    channels: int
    duration: float  # seconds


def probe(path: str | Path) -> AudioInfo:
    """Rate, length and channels from the file header, without decoding the samples."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError/OSError
        raise AudioDecodeError(path, _reason(path, exc)) from exc
    frames = int(info.frames)
    rate = int(info.samplerate)
    if rate <= 0:
        raise AudioDecodeError(path, f"invalid sample rate {rate}")
    if _is_mpeg(info.format):  # no length header: libsndfile's count is a guess, the frames are not
        frames = counted_frames(path) or frames
    return AudioInfo(sample_rate=rate, num_frames=frames, channels=int(info.channels),
                     duration=frames / rate)


def decode(path: str | Path, *, max_frames: int | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 samples [S], native sample rate); channels are averaged.

    ``max_frames`` stops reading after that many frames (cheap crop of long files).
    """
    return _decode(Path(path), lambda rate: max_frames)


def _decode(path: Path, frames_at: Callable[[int], int | None]) -> tuple[np.ndarray, int]:
    """``decode`` with the frame limit computed from the file's rate (one open per file)."""
    try:
        with sf.SoundFile(str(path)) as f:
            rate = int(f.samplerate)
            expected = int(f.frames)  # from the header (an estimate for mp3/ogg)
            if rate <= 0:
                raise AudioDecodeError(path, f"invalid sample rate {rate}")
            max_frames = frames_at(rate)
            frames = -1 if max_frames is None else int(max_frames)
            if _is_mpeg(f.format) and length_is_guessed(path):  # libsndfile would stop at its guess
                data = _ffmpeg_frames(path, int(f.channels), max_frames)
                expected = data.shape[0]  # ffmpeg decoded to the end (then cut): the guess says nothing
            else:
                data = f.read(frames=frames, dtype="float32", always_2d=True)  # [S, C]
            lossy = (f.format or "").upper() in _LOSSY_FORMATS
            short_data = _wav_data_shortfall(f.extra_info)
    except AudioDecodeError:
        raise
    except Exception as exc:
        raise AudioDecodeError(path, _reason(path, exc)) from exc
    if data.shape[0] == 0:
        raise AudioDecodeError(path, "file holds no audio samples (zero length or truncated header)")
    if short_data is not None:
        raise AudioDecodeError(path, f"truncated: the WAV header declares {short_data[0]} data bytes, "
                                     f"the file holds only {short_data[1]}")
    wanted = expected if max_frames is None else min(expected, int(max_frames))
    if _is_truncated(data.shape[0], wanted, lossy):
        raise AudioDecodeError(path, f"truncated: header promises {wanted} frames, "
                                     f"only {data.shape[0]} could be decoded")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise AudioDecodeError(path, "decoded samples contain NaN or infinity")
    _check_peak(path, data)
    return np.ascontiguousarray(mono), rate


def load_audio(path: str | Path, target_sr: int | None = 16000, *,
               max_samples: int | None = None) -> torch.Tensor:
    """Decode ``path`` to a mono float32 tensor [S] at ``target_sr`` (None keeps the file's rate):
    ``librosa.load(path, sr=target_sr)`` (channel mean, then soxr HQ; see ``resample``).

    ``max_samples`` (counted at ``target_sr``) keeps only the first samples: the decoder reads
    just enough frames, so a 10 min file capped at 30 s costs 30 s of decoding.
    """
    samples, rate = _decode(Path(path), lambda native: _frames_needed(native, target_sr, max_samples))
    wave = torch.from_numpy(samples)
    if target_sr is not None and target_sr != rate:
        wave = resample(wave, rate, target_sr)
    if max_samples is not None:
        wave = wave[:max_samples]
    return wave.contiguous()


def _frames_needed(native_sr: int, target_sr: int | None, max_samples: int | None) -> int | None:
    """Source frames to read for ``max_samples`` at ``target_sr`` (None: all of them). Reads past
    the cut when resampling, so the kept samples equal those of resampling the whole file."""
    if max_samples is None:
        return None
    rate = target_sr or native_sr
    frames = int(np.ceil(max_samples * native_sr / rate))
    return frames + context_frames(native_sr) if rate != native_sr else frames


def _is_mpeg(fmt: str | None) -> bool:
    return (fmt or "").upper() in ("MP3", "MPEG")


def _ffmpeg_frames(path: Path, channels: int, max_frames: int | None) -> np.ndarray:
    """[S, C] float32 from ffmpeg, for mp3s whose length libsndfile only guesses (see ``mp3``)."""
    if not ffmpeg_available():
        raise AudioDecodeError(path, "VBR mp3 without a Xing/Info header: libsndfile cannot tell its length and "
                                     "stops early; install ffmpeg (apt-get install ffmpeg), which decodes it, or "
                                     "re-encode the file with a header")
    try:
        return ffmpeg_decode(path, channels, max_frames)
    except (RuntimeError, OSError) as exc:
        raise AudioDecodeError(path, str(exc)) from exc


_LOSSY_FORMATS = ("MP3", "OGG", "MPEG")

# Full scale is 1.0. Integer PCM decodes inside [-1, 1]; float files may go over (a hot mix,
# resampling overshoot, lossy decoding: a few dB, rarely +12 dB = 4x). A float file written with
# integer-scaled samples (the classic int16 -> float mistake) is off by 32768 (+90 dB) or more, so
# a limit of 16x (+24 dB) refuses every such file whose audio is louder than -66 dBFS (near
# silence) and never a plausible real recording.
FLOAT_PEAK_LIMIT = 16.0


def _check_peak(path: Path, data: np.ndarray) -> None:
    """Refuse samples far outside [-1, 1] (the models would see +90 dB audio without a word)."""
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > FLOAT_PEAK_LIMIT:
        raise AudioDecodeError(path, f"samples reach {peak:.3g}, {peak:.0f} times full scale (1.0; the "
                                     f"limit is {FLOAT_PEAK_LIMIT:g}): a float file holding integer-scaled "
                                     f"samples? re-save it with samples in [-1, 1] (e.g. divide by 32768)")


def _is_truncated(decoded: int, expected: int, lossy: bool) -> bool:
    """Lossless formats must decode every frame the header promises; lossy ones (whose
    header count is an estimate, off by encoder delay/padding) at least 90 % of it."""
    if expected <= 0:
        return False
    if lossy:
        return decoded < 0.9 * expected
    return decoded < expected


_WAV_DATA_LOG = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)  # placeholders written by streaming encoders


def _wav_data_shortfall(log: str) -> tuple[int, int] | None:
    """(declared, present) data bytes when libsndfile's header log says a WAV lost its tail.

    libsndfile silently clamps such files to what is present, so this is the only sign.
    """
    match = _WAV_DATA_LOG.search(log or "")
    if match is None:
        return None
    declared, present = int(match.group(1)), int(match.group(2))
    if declared in _STREAMING_SIZES or present >= declared:
        return None
    return declared, present


def _reason(path: Path, exc: BaseException) -> str:
    if not path.exists():
        return "file does not exist"
    if path.is_dir():
        return "path is a directory, not an audio file"
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"cannot stat file ({err})"
    if size == 0:
        return "file is empty (0 bytes)"
    text = str(exc).strip() or type(exc).__name__
    return f"{text} ({size} bytes; corrupt, truncated or unsupported format)"
