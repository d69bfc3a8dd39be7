"""Procedural sounds for the synthetic corpus: every caption attribute is audible.

Pure numpy; each function returns float32 samples at ``sr``.
"""

from __future__ import annotations

import numpy as np

SOURCES = ("tone", "chirp", "noise burst", "click train", "hum")
PITCHES = ("low", "high")
EVENTS = ("one", "two", "three", "repeating")
LOUDNESS = ("rising", "falling", "steady")
BACKGROUNDS = ("silence", "noise", "hum")
EVENT_COUNTS = {"one": 1, "two": 2, "three": 3}


def base_frequency(source: str, pitch: str, rng: np.random.Generator) -> float:
    """Hz: hums sit lower than the rest; low and high never overlap."""
    if source == "hum":
        lo, hi = (60.0, 110.0) if pitch == "low" else (300.0, 500.0)
    else:
        lo, hi = (150.0, 350.0) if pitch == "low" else (1500.0, 3500.0)
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def event_wave(source: str, freq: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One event of ``n`` samples of ``source`` at ``freq`` Hz, peak about 1, 5 ms fades."""
    t = np.arange(n) / sr
    if source == "tone":
        x = np.sin(2 * np.pi * freq * t)
    elif source == "chirp":  # exponential sweep from freq up one octave
        k = np.log(2.0) / max(t[-1], 1e-3) if n > 1 else 0.0
        phase = 2 * np.pi * freq * (np.expm1(k * t) / k if k else t)
        x = np.sin(phase)
    elif source == "noise burst":  # noise band-limited to [freq/2, 2 freq]
        nfft = 1 << max(1, (n - 1).bit_length())  # power of two: fast FFT
        spec = np.fft.rfft(rng.standard_normal(nfft))
        f = np.fft.rfftfreq(nfft, 1 / sr)
        spec[(f < freq / 2) | (f > freq * 2)] = 0
        x = np.fft.irfft(spec, nfft)[:n]
    elif source == "click train":  # 4 ms decaying sine clicks every 40 ms
        x = np.zeros(n)
        click_len = max(1, int(0.004 * sr))
        ct = np.arange(click_len) / sr
        click = np.sin(2 * np.pi * freq * ct) * np.exp(-ct / 0.001)
        for start in range(0, n - click_len, int(0.04 * sr)):
            x[start:start + click_len] += click
    elif source == "hum":  # harmonic-rich drone
        x = sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, 6))
    else:
        raise ValueError(f"unknown source {source!r}")
    x = x / (np.abs(x).max() + 1e-9)
    fade = min(int(0.005 * sr), n // 2)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return x.astype(np.float32)


def event_layout(events: str, total: int, sr: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(start, length) in samples of each event; separated by clear gaps."""
    if events == "repeating":
        count = int(rng.integers(6, 11))
        period = total // (count + 1)
        length = min(int(0.18 * sr), int(period * 0.5))
        return [((i + 1) * period - length // 2, length) for i in range(count)]
    count = EVENT_COUNTS[events]
    slot = total // count
    length = int(min(slot * 0.55, 1.6 * sr))
    out = []
    for i in range(count):
        jitter = int(rng.integers(0, max(1, slot - length - int(0.1 * sr))))
        out.append((i * slot + int(0.05 * sr) + jitter, length))
    return out


def loudness_envelope(loudness: str, total: int) -> np.ndarray:
    """Gain over the clip: +-24 dB ramps for rising/falling, flat for steady."""
    ramp = np.linspace(0.0, 1.0, total, dtype=np.float32)
    if loudness == "rising":
        db = -24.0 + 24.0 * ramp
    elif loudness == "falling":
        db = -24.0 * ramp
    elif loudness == "steady":
        db = np.full(total, -6.0, dtype=np.float32)
    else:
        raise ValueError(f"unknown loudness {loudness!r}")
    return (10.0 ** (db / 20.0)).astype(np.float32)


def background_wave(background: str, total: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    if background == "silence":
        return np.zeros(total, dtype=np.float32)
    if background == "noise":
        return (0.03 * rng.standard_normal(total)).astype(np.float32)
    if background == "hum":
        t = np.arange(total) / sr
        return (0.03 * (np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 100 * t))).astype(np.float32)
    raise ValueError(f"unknown background {background!r}")


def render_clip(attrs: dict[str, str], duration: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Samples [S] float32 in [-1, 1] of one clip with these attributes."""
    total = int(round(duration * sr))
    freq = base_frequency(attrs["source"], attrs["pitch"], rng)
    fg = np.zeros(total, dtype=np.float32)
    for start, length in event_layout(attrs["events"], total, sr, rng):
        start = max(0, min(start, total - length))
        fg[start:start + length] += event_wave(attrs["source"], freq, length, sr, rng)
    fg *= loudness_envelope(attrs["loudness"], total) * 0.7
    x = fg + background_wave(attrs["background"], total, sr, rng)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
