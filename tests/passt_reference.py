"""The official baseline's PaSST pieces from hear21passt 0.0.26 (a test-only reference), shared by
tests/test_passt_parity.py and tests/test_passt_checkpoint.py. hear21passt prints to stdout on import
and on its first forward and calls a deprecated torch.stft: it runs under ``quiet()`` here. Import
this module after ``pytest.importorskip("hear21passt")``."""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import torch
import torch.nn.functional as F

from audioret.encoders import passt as P

SR = P.SAMPLE_RATE


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


with quiet():
    from hear21passt.models import passt as hear_passt
    from hear21passt.models.preprocess import AugmentMelSTFT


def hear_mel() -> torch.nn.Module:
    """The baseline's front end settings (baseline.md 3.1)."""
    with quiet():
        return AugmentMelSTFT(n_mels=128, sr=SR, win_length=800, hopsize=320, n_fft=1024, freqm=0, timem=0,
                              htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)


def hear_model(cfg: P.PaSSTConfig) -> torch.nn.Module:
    """hear21passt's PaSST with ``cfg``'s architecture (the baseline's exact constructor call for the
    full-size model)."""
    with quiet():
        if cfg == P.passt_s_config(num_classes=527):
            return hear_passt.get_model(arch="passt_s_p16_s16_128_ap468", pretrained=False, input_tdim=1000,
                                        fstride=16, tstride=16, s_patchout_t=15, s_patchout_f=2)
        return hear_passt.PaSST(img_size=(128, 1000), stride=16, patch_size=16, in_chans=1,
                                embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                                mlp_ratio=cfg.mlp_dim / cfg.embed_dim, num_classes=cfg.num_classes,
                                distilled=True, s_patchout_t=cfg.s_patchout_t, s_patchout_f=cfg.s_patchout_f)


def clips(lengths_s: list[float], seed: int = 0) -> list[torch.Tensor]:
    """Noise + a tone + a chirp, different per clip (deterministic), at 32 kHz."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k, sec in enumerate(lengths_s):
        n = int(round(sec * SR))
        t = torch.arange(n) / SR
        w = 0.05 * torch.randn(n, generator=g) + 0.3 * torch.sin(2 * math.pi * (220 * (k + 1)) * t)
        w += 0.2 * torch.sin(2 * math.pi * (100 + 400 * t) * t)
        out.append(w.float())
    return out


def baseline_clip_embedding(ref: torch.nn.Module, wave: torch.Tensor) -> torch.Tensor:
    """The baseline's CutInputIntoSegmentsWrapper (baseline.md 3.2), written from the spec: pad or
    crop to 30 s, three 10 s segments through hear21passt's PaSST (eval mode) in one batch, average
    by true duration (<= 10 s: segment 0, <= 20 s: 0-1, else all three) -> [D]."""
    duration = len(wave) / SR
    x = F.pad(wave[:30 * SR], (0, max(0, 30 * SR - len(wave))))
    segments = x.reshape(3, 10 * SR)
    with torch.no_grad(), quiet():
        _, per_segment = ref.eval()(hear_mel().eval()(segments).unsqueeze(1))
    if duration <= 10:
        return per_segment[0]
    if duration <= 20:
        return per_segment[:2].mean(0)
    return per_segment.mean(0)
