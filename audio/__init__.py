"""audioret.audio: decode (soundfile; ffmpeg for VBR mp3s without a length header), resample (soxr HQ,
as librosa), crop/pad/window. A 16 kHz wave here equals ``librosa.load(path, sr=16000)`` (the seed's).

Public API::

    AudioDecodeError(path, reason)            # the one error of every read; .path, .reason
    probe(path) -> AudioInfo(sample_rate, num_frames, channels, duration)   # header only
    decode(path, *, max_frames=None) -> (np.float32 [S] mono, sample_rate)
    load_audio(path, target_sr=16000, *, max_samples=None) -> Tensor [S] float32 mono
    resample(wave[..., S], orig_sr, target_sr) -> Tensor   # soxr HQ + librosa's length rule
    RESAMPLER (recorded in store identity), resampled_length(n, orig_sr, target_sr)
    crop(wave, max_samples, mode="start"|"center"|"end"), pad_to(wave, length)
    split_windows(wave[S], window) -> Tensor [n_win, window]; num_windows(S, window)
    valid_samples_per_window(S, window) -> list[int]
    AUDIO_EXTENSIONS: file suffixes treated as audio by folder listings
"""

from __future__ import annotations

from .errors import AudioDecodeError
from .io import AudioInfo, decode, load_audio, probe
from .resample import RESAMPLER, resample, resampled_length
from .windows import crop, num_windows, pad_to, split_windows, valid_samples_per_window

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".aiff", ".aif")

__all__ = ["AudioDecodeError", "AudioInfo", "probe", "decode", "load_audio", "resample", "RESAMPLER",
           "resampled_length",
           "crop", "pad_to", "split_windows", "num_windows", "valid_samples_per_window",
           "AUDIO_EXTENSIONS"]
