"""Batched Kaldi-compatible log-mel filterbank (the BEATs front end), in torch.

Why our own: the reference loops over clips calling ``torchaudio.compliance.kaldi.fbank`` one
at a time on the CPU. This computes the same features for a whole batch ``[B, S]`` at once on
whatever device the waveform is on, and always in float32 (under autocast too: the log of tiny
mel energies is not representable in bf16/fp16 with enough precision).

Matches ``kaldi.fbank(w, num_mel_bins=128, sample_frequency=16000, frame_length=25,
frame_shift=10)`` per clip (every other argument at torchaudio's default: dither 0, povey
window, preemphasis 0.97, DC removal, n_fft 512, low 20 Hz, high = Nyquist, snip_edges, power
spectrum, natural log floored at float32 eps) to about 1e-4 (tests/test_beats_fbank.py).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torchaudio.compliance.kaldi import get_mel_banks

SAMPLE_RATE = 16000
FRAME_LENGTH = 400      # samples (25 ms)
FRAME_SHIFT = 160       # samples (10 ms)
N_FFT = 512             # next power of two >= FRAME_LENGTH (round_to_power_of_two)
NUM_MEL_BINS = 128
PREEMPHASIS = 0.97
LOW_FREQ = 20.0         # Hz
HIGH_FREQ = 0.0         # <= 0 means Nyquist + HIGH_FREQ, kaldi convention
FBANK_MEAN = 15.41663   # BEATs normalisation constants (reference defaults)
FBANK_STD = 6.55582
EPS = torch.finfo(torch.float32).eps  # log floor used by torchaudio (1.1921e-7)


def num_fbank_frames(num_samples: int) -> int:
    """Frames produced by snip-edges framing: ``1 + (S - 400) // 160`` (0 if S < 400)."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


@functools.lru_cache(maxsize=8)
def _constants_cpu(num_mel_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(povey window [400], mel matrix [N_FFT//2+1, num_mel_bins]) on CPU, float32."""
    window = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float32).pow(0.85)
    banks, _ = get_mel_banks(num_mel_bins, N_FFT, float(SAMPLE_RATE), LOW_FREQ, HIGH_FREQ,
                             100.0, -500.0, 1.0)        # vtln defaults: no warping
    banks = F.pad(banks.to(torch.float32), (0, 1))     # [mel, 257]: Nyquist bin unused
    return window, banks.T.contiguous()


def _constants(num_mel_bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    window, mel = _constants_cpu(num_mel_bins)
    return window.to(device), mel.to(device)


def kaldi_fbank(wave: torch.Tensor, num_mel_bins: int = NUM_MEL_BINS) -> torch.Tensor:
    """Log-mel filterbank of a batch: ``wave [B, S]`` (already int16-scaled) -> ``[B, T, mel]``.

    Always float32, autocast disabled inside. Needs S >= 400 samples.
    """
    if wave.dim() != 2:
        raise ValueError(f"kaldi_fbank expects a [B, S] waveform batch, got shape {tuple(wave.shape)}")
    if wave.shape[1] < FRAME_LENGTH:
        raise ValueError(f"kaldi_fbank needs at least {FRAME_LENGTH} samples (25 ms at 16 kHz), "
                         f"got {wave.shape[1]}; pad or drop such clips")
    with torch.autocast(device_type=wave.device.type, enabled=False):
        x = wave.float()
        frames = x.unfold(1, FRAME_LENGTH, FRAME_SHIFT)                  # [B, T, 400]
        frames = frames - frames.mean(dim=-1, keepdim=True)              # DC removal
        prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)    # replicate-pad shift
        frames = frames - PREEMPHASIS * prev
        window, mel = _constants(num_mel_bins, x.device)
        frames = frames * window
        spec = torch.fft.rfft(frames, n=N_FFT).abs().pow(2.0)            # [B, T, 257]
        energies = spec @ mel                                            # [B, T, mel]
        return energies.clamp_min(EPS).log()


def beats_fbank(source: torch.Tensor, fbank_mean: float = FBANK_MEAN,
                fbank_std: float = FBANK_STD) -> torch.Tensor:
    """BEATs preprocessing of ``source [B, S]`` in [-1, 1] at 16 kHz -> ``[B, T, 128]`` float32.

    int16 scaling, 128-bin fbank, then ``(fbank - mean) / (2 * std)`` (the factor 2 is the
    reference's).
    """
    fb = kaldi_fbank(source.float() * 2 ** 15)
    return (fb - fbank_mean) / (2 * fbank_std)


def reference_fbank_loop(source: torch.Tensor, fbank_mean: float = FBANK_MEAN,
                         fbank_std: float = FBANK_STD) -> torch.Tensor:
    """The reference's per-clip loop over ``torchaudio.compliance.kaldi.fbank`` (for tests and
    the benchmark; not used by the model)."""
    from torchaudio.compliance import kaldi
    out = [kaldi.fbank(w.unsqueeze(0) * 2 ** 15, num_mel_bins=NUM_MEL_BINS,
                       sample_frequency=SAMPLE_RATE, frame_length=25, frame_shift=10)
           for w in source]
    return (torch.stack(out) - fbank_mean) / (2 * fbank_std)
