"""PaSST-S (patch 16, stride 16): the official DCASE 2025 Task 6 baseline's audio encoder.

Our own implementation, written from the project's design notes on the baseline (sections 2-3) and checked
against hear21passt 0.0.26 (a test-only reference) on random weights in the release's layout
(tests/test_passt_parity.py). No stdout, no downloads: weights come from a local file.

Pieces (all pure or small modules):

* ``passt_mel(wave [B, S], fmin, fmax) -> [B, 128, T]``: the baseline's mel front end
  (pre-emphasis [-0.97, 1], STFT n_fft 1024 / hann 800 periodic=False / hop 320, centred,
  power, 128 kaldi mel banks, ``log(x + 1e-5)``, ``(x + 4.5) / 5``), always fp32.
  ``MelFrontEnd`` adds the fmin/fmax jitter (training only).
* ``PaSST``: patch conv 16x16 stride 16 -> [B, D, 8, 62] grid, + time and frequency positional
  embeddings, structured patchout (training only: ``s_patchout_t`` time columns and
  ``s_patchout_f`` frequency rows dropped, one draw per forward shared by the batch), flattened
  frequency-major, CLS and DIST tokens (each with its own positional entry), pre-LN ViT blocks
  (LayerNorm eps 1e-6, exact GELU), final LayerNorm.
  ``PaSST.encode(wave) -> (frames [B, t, D], pooled [B, D])``: frames = mean over the frequency
  patches of each time column (the store's time frames); pooled = (CLS + DIST) / 2 (what the
  baseline projects).
* Window rule (``baseline_windows``, ``baseline_window_mean``): clips padded or cropped to 30 s,
  three 10 s windows; duration <= 10 s keeps window 0, <= 20 s averages 0-1, else all three.
  Equivalent to ``ceil(duration / 10 s)`` windows from the start, which is how the rest of
  audioret cuts clips (``audioret.audio.split_windows``).
* ``load_passt(path)``: the PaSST release file (``passt-s-f128-p16-s16-ap.468.pt``: a plain
  state dict) or the audio tower of a baseline Lightning checkpoint (prefix
  ``audio_embedding_model.model.model.``, also with ``_orig_mod.``). The architecture is read from
  the weights' shapes (heads = width / 64 as in every PaSST release).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SAMPLE_RATE = 32000
WINDOW_SECONDS = 10
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE       # 320000
MAX_WINDOWS = 3                                       # the baseline pads/crops to 30 s
N_FFT = 1024
WIN_LENGTH = 800
HOP = 320
N_MELS = 128
PREEMPHASIS = 0.97
FMIN = 0.0
FMAX = SAMPLE_RATE // 2 - 2000 // 2                   # 15000 Hz (fmax=None in the baseline)
FMIN_AUG_RANGE = 10                                   # Hz, training only
FMAX_AUG_RANGE = 2000                                 # Hz, training only
LOG_OFFSET = 1e-5
CHECKPOINT_PREFIX = "audio_embedding_model.model.model."
COMPILE_PREFIX = "_orig_mod."
HEAD_PREFIXES = ("head.", "head_dist.")


class PaSSTCheckpointError(ValueError):
    """A PaSST weights file that cannot be loaded as asked (message names file and fix)."""


# ----------------------------------------------------------------------------------------
# mel front end


def num_mel_frames(num_samples: int) -> int:
    """Frames of ``passt_mel``: pre-emphasis drops one sample, the centred STFT gives
    ``1 + (S - 1) // hop`` (1000 for a 10 s window)."""
    return 1 + max(int(num_samples) - 1, 0) // HOP


@functools.lru_cache(maxsize=64)
def _mel_banks_cpu(fmin: float, fmax: float) -> Tensor:
    """Kaldi mel banks [128, n_fft // 2 + 1] (last column zero), fp32 on CPU."""
    from torchaudio.compliance.kaldi import get_mel_banks

    banks, _ = get_mel_banks(N_MELS, N_FFT, float(SAMPLE_RATE), float(fmin), float(fmax),
                             100.0, -500.0, 1.0)
    return F.pad(banks.float(), (0, 1))


@functools.lru_cache(maxsize=1)
def _window_cpu() -> Tensor:
    return torch.hann_window(WIN_LENGTH, periodic=False)


def passt_mel(wave: Tensor, fmin: float = FMIN, fmax: float = FMAX) -> Tensor:
    """``wave [B, S]`` at 32 kHz -> normalised log-mel ``[B, 128, num_mel_frames(S)]`` fp32
    (autocast off: the log of small mel energies needs fp32)."""
    if wave.dim() != 2:
        raise ValueError(f"passt_mel expects a [B, S] waveform batch, got {tuple(wave.shape)}")
    with torch.autocast(device_type=wave.device.type, enabled=False):
        x = wave.float()
        x = x[:, 1:] - PREEMPHASIS * x[:, :-1]                       # [B, S-1]
        spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN_LENGTH,
                          window=_window_cpu().to(x.device), center=True, normalized=False,
                          return_complex=True)                        # [B, 513, T]
        power = torch.view_as_real(spec).pow(2).sum(-1)
        mel = _mel_banks_cpu(float(fmin), float(fmax)).to(x.device) @ power   # [B, 128, T]
        return ((mel + LOG_OFFSET).log() + 4.5) / 5.0


class MelFrontEnd(nn.Module):
    """``passt_mel`` with the baseline's band-edge jitter in training mode (one draw per call,
    shared by the batch: fmin + U{0..9} Hz, fmax + 1000 - U{0..1999} Hz). No state-dict keys."""

    def forward(self, wave: Tensor) -> Tensor:
        fmin, fmax = FMIN, FMAX
        if self.training:
            fmin = FMIN + int(torch.randint(FMIN_AUG_RANGE, (1,)).item())
            fmax = FMAX + FMAX_AUG_RANGE // 2 - int(torch.randint(FMAX_AUG_RANGE, (1,)).item())
        return passt_mel(wave, fmin, fmax)


# ----------------------------------------------------------------------------------------
# window rule (baseline section 3.2)


def baseline_windows(wave: Tensor) -> Tensor:
    """``wave [B, S]`` -> ``[B, 3, 320000]``: padded with zeros (right) or cropped (from the
    start; the baseline crops at random, which never happens for clips <= 30 s) to 30 s."""
    total = MAX_WINDOWS * WINDOW_SAMPLES
    wave = wave[..., :total]
    wave = F.pad(wave, (0, total - wave.shape[-1]))
    return wave.reshape(wave.shape[0], MAX_WINDOWS, WINDOW_SAMPLES)


def windows_used(num_samples: int) -> int:
    """The baseline's duration rule: <= 10 s -> 1 window, <= 20 s -> 2, else 3."""
    seconds = int(num_samples) / SAMPLE_RATE
    return 1 if seconds <= 10 else 2 if seconds <= 20 else 3


def baseline_window_mean(per_window: Tensor, num_samples: list[int]) -> Tensor:
    """``per_window [B, 3, D]`` + true lengths -> ``[B, D]`` mean of the windows used."""
    rows = [per_window[i, :windows_used(n)].mean(0) for i, n in enumerate(num_samples)]
    return torch.stack(rows)


# ----------------------------------------------------------------------------------------
# config


@dataclasses.dataclass(frozen=True)
class PaSSTConfig:
    """Architecture of a PaSST with non-overlapping patches (stride = patch size)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    patch_size: int = 16
    freq_patches: int = 8            # 128 mel bins / 16
    time_patches: int = 62           # 1000 mel frames (10 s) // 16
    distilled: bool = True           # CLS + DIST tokens
    num_classes: int = 0             # AudioSet head (527 in the release file); 0 = none
    s_patchout_t: int = 15           # training only
    s_patchout_f: int = 2            # training only

    def validate(self, source: str = "config") -> None:
        problems = []
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} not divisible by num_heads {self.num_heads}")
        if self.freq_patches * self.patch_size != N_MELS:
            problems.append(f"freq_patches {self.freq_patches} x patch {self.patch_size} != {N_MELS} "
                            "mel bins (only stride = patch size PaSSTs are supported, e.g. p16-s16)")
        if self.time_patches < num_mel_frames(WINDOW_SAMPLES) // self.patch_size:
            problems.append(f"time positional embedding covers {self.time_patches} patches, a 10 s "
                            f"window needs {num_mel_frames(WINDOW_SAMPLES) // self.patch_size}")
        if not 0 <= self.s_patchout_t < self.time_patches or not 0 <= self.s_patchout_f < self.freq_patches:
            problems.append(f"patchout ({self.s_patchout_t}, {self.s_patchout_f}) must leave patches")
        if problems:
            raise PaSSTCheckpointError(f"{source}: invalid PaSST config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def passt_s_config(**overrides: Any) -> PaSSTConfig:
    """``passt_s_p16_s16_128_ap468``: ViT-Base, 768 x 12 layers, 12 heads, MLP 3072."""
    return dataclasses.replace(PaSSTConfig(), **overrides)


def tiny_passt_config(**overrides: Any) -> PaSSTConfig:
    """Same structure, small: 2 layers x 192 (3 heads of 64), MLP 768, a 10-class head."""
    return dataclasses.replace(PaSSTConfig(embed_dim=192, depth=2, num_heads=3, mlp_dim=768,
                                           num_classes=10), **overrides)


def config_from_state_dict(state: Mapping[str, Tensor], source: str = "state dict",
                           **overrides: Any) -> PaSSTConfig:
    """The architecture the weights describe (heads = width / 64, as in every PaSST release)."""
    try:
        d = int(state["cls_token"].shape[-1])
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        cfg = PaSSTConfig(
            embed_dim=d, depth=depth, num_heads=max(1, d // 64),
            mlp_dim=int(state["blocks.0.mlp.fc1.weight"].shape[0]),
            patch_size=int(state["patch_embed.proj.weight"].shape[-1]),
            freq_patches=int(state["freq_new_pos_embed"].shape[2]),
            time_patches=int(state["time_new_pos_embed"].shape[3]),
            distilled="dist_token" in state,
            num_classes=int(state["head.1.weight"].shape[0]) if "head.1.weight" in state else 0)
    except (KeyError, ValueError, IndexError) as err:
        raise PaSSTCheckpointError(f"{source}: not a PaSST state dict (missing or odd {err}); pass the "
                                   "PaSST release file passt-s-f128-p16-s16-ap.468.pt or a baseline "
                                   ".ckpt") from None
    return dataclasses.replace(cfg, **overrides)


# ----------------------------------------------------------------------------------------
# modules


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:                           # [B, N, D] -> [B, N, D]
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)                 # [B, H, N, dh]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN transformer block (no dropout, no drop path: the baseline uses none)."""

    def __init__(self, cfg: PaSSTConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, cfg.num_heads)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, cfg.mlp_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: PaSSTConfig) -> None:
        super().__init__()
        p = cfg.patch_size
        self.proj = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p)

    def forward(self, mel: Tensor) -> Tensor:                         # [B,1,F,T] -> [B,D,F',T']
        return self.proj(mel)


def patchout_indices(size: int, drop: int) -> Tensor:
    """Sorted random subset of ``size - drop`` of ``range(size)`` (one draw, torch RNG)."""
    return torch.randperm(size)[:size - drop].sort().values


class PaSST(nn.Module):
    """PaSST with the release's parameter names (see the module docstring)."""

    def __init__(self, cfg: PaSSTConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or passt_s_config()
        cfg.validate()
        self.cfg = cfg
        d = cfg.embed_dim
        self.mel = MelFrontEnd()
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.distilled else None
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2 if cfg.distilled else 1, d))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, d, cfg.freq_patches, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, d, 1, cfg.time_patches))
        self.blocks = nn.Sequential(*(Block(cfg) for _ in range(cfg.depth)))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        if cfg.num_classes:  # AudioSet heads: only for checking a file (predict), never features
            self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, cfg.num_classes))
            self.head_dist = nn.Linear(d, cfg.num_classes) if cfg.distilled else None
        self.checkpoint_path: str | None = None
        self.checkpoint_sha256: str | None = None

    @property
    def dim(self) -> int:
        return self.cfg.embed_dim

    @property
    def num_special(self) -> int:
        return 2 if self.cfg.distilled else 1

    def grid(self, mel: Tensor) -> Tensor:
        """``mel [B, 1, 128, T]`` -> patch grid ``[B, D, F', T']`` with positional embeddings
        and, in training mode, structured patchout (time columns first, then frequency rows)."""
        x = self.patch_embed(mel)
        t = x.shape[-1]
        if t > self.cfg.time_patches:
            raise ValueError(f"input gives {t} time patches, the positional embedding covers "
                             f"{self.cfg.time_patches} (PaSST takes 10 s windows)")
        x = x + self.time_new_pos_embed[..., :t] + self.freq_new_pos_embed
        if self.training and self.cfg.s_patchout_t:
            x = x[:, :, :, patchout_indices(t, self.cfg.s_patchout_t).to(x.device)]
        if self.training and self.cfg.s_patchout_f:
            x = x[:, :, patchout_indices(x.shape[2], self.cfg.s_patchout_f).to(x.device), :]
        return x

    def forward_tokens(self, mel: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """``mel [B, 1, 128, T]`` -> (final-norm tokens ``[B, S + F'*T', D]`` (S special tokens
        first, then the grid frequency-major), grid shape ``(F', T')``)."""
        x = self.grid(mel)
        b, _, f, t = x.shape
        patches = x.flatten(2).transpose(1, 2)                       # [B, F'*T', D]
        special = [self.cls_token + self.new_pos_embed[:, :1]]
        if self.dist_token is not None:
            special.append(self.dist_token + self.new_pos_embed[:, 1:2])
        special_tokens = torch.cat(special, dim=1).expand(b, -1, -1).to(patches.dtype)
        x = self.blocks(torch.cat([special_tokens, patches], dim=1))
        return self.norm(x), (f, t)

    def pool(self, tokens: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Final tokens -> (frames ``[B, T', D]``: mean over the frequency patches of each time
        column, pooled ``[B, D]``: mean of the special tokens = (CLS + DIST) / 2)."""
        f, t = grid
        s = self.num_special
        frames = tokens[:, s:].reshape(tokens.shape[0], f, t, -1).mean(dim=1)
        return frames, tokens[:, :s].mean(dim=1)

    def encode(self, wave: Tensor) -> tuple[Tensor, Tensor]:
        """``wave [B, 320000]`` (10 s at 32 kHz) -> ``(frames [B, T', D], pooled [B, D])``."""
        mel = self.mel(wave).unsqueeze(1)
        tokens, grid = self.forward_tokens(mel.to(self.patch_embed.proj.weight.dtype))
        return self.pool(tokens, grid)

    def forward(self, wave: Tensor) -> Tensor:
        """The baseline's per-window embedding: ``wave [B, S]`` -> (CLS + DIST) / 2 ``[B, D]``."""
        return self.encode(wave)[1]

    def predict(self, wave: Tensor) -> Tensor:
        """AudioSet logits as PaSST computes them: ``head`` (LayerNorm + Linear) on the pooled
        (CLS + DIST) / 2 vector (``head_dist`` is kept for the layout, unused). Only for
        checking a weights file."""
        if not self.cfg.num_classes:
            raise RuntimeError("this PaSST has no AudioSet head (weights without head.*)")
        return self.head(self.forward(wave))

    # -- release layout ------------------------------------------------------------------

    def load_release_state_dict(self, state: Mapping[str, Tensor], source: str = "state dict") -> None:
        """Strict load of release-layout keys (``_orig_mod.`` stripped; ``head*`` ignored when
        this model has no head); errors name missing, unexpected and mis-shaped keys."""
        state = {k.replace(COMPILE_PREFIX, ""): v for k, v in state.items()}
        if not self.cfg.num_classes:
            state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        bad = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
               for k, v in own.items() if k in state and state[k].shape != v.shape]
        if missing or unexpected or bad:
            raise PaSSTCheckpointError(
                f"{source}: weights do not fit PaSST {self.cfg.to_dict()}: missing {missing[:8]}, "
                f"unexpected {unexpected[:8]}, shapes {bad[:4]}")
        self.load_state_dict({k: state[k] for k in own}, strict=True)


# ----------------------------------------------------------------------------------------
# files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def passt_state_from(obj: Any, source: str = "checkpoint") -> dict[str, Tensor]:
    """Release-layout PaSST keys from what ``torch.load`` returned: a plain state dict (the
    release file), ``{'model': state dict}``, or a baseline Lightning checkpoint (audio tower
    under ``audio_embedding_model.model.model.``, with or without ``_orig_mod.``)."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        sd = {k.replace(COMPILE_PREFIX, ""): v for k, v in obj["state_dict"].items()}
        for prefix in (CHECKPOINT_PREFIX, "model." + CHECKPOINT_PREFIX):
            tower = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            if tower:
                return tower
        raise PaSSTCheckpointError(
            f"{source}: a Lightning checkpoint without a PaSST audio tower (no keys under "
            f"{CHECKPOINT_PREFIX!r}); pass the baseline's .ckpt or the PaSST release file")
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise PaSSTCheckpointError(f"{source}: not a PaSST state dict (got {type(obj).__name__})")
    return {k.replace(COMPILE_PREFIX, ""): v for k, v in obj.items()}


def build_passt(state: Mapping[str, Tensor], source: str = "state dict",
                **overrides: Any) -> PaSST:
    """A PaSST with the architecture and weights of ``state`` (release layout), eval mode."""
    cfg = config_from_state_dict(state, source, **overrides)
    cfg.validate(source)
    model = PaSST(cfg)
    model.load_release_state_dict(state, source)
    return model.eval()


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` memory-mapped: a baseline ``.ckpt`` also holds RoBERTa-large
    and optimizer states (GBs) of which only the PaSST tower (~350 MB) is read. Legacy (non-zip)
    files cannot be mapped and are read whole."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


def load_passt(path: str | Path, *, sha256: str | None = None, **overrides: Any) -> PaSST:
    """Load PaSST weights from a local file (release ``.pt`` or baseline ``.ckpt``), eval mode,
    fp32, CPU; ``torch.load(weights_only=True)``; ``sha256`` (hex) checked when given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"PaSST weights {path} do not exist; pass the PaSST release file "
            "passt-s-f128-p16-s16-ap.468.pt (github.com/kkoutini/PaSST releases, v0.0.2-audioset) "
            "or the baseline's Lightning .ckpt to --audio-checkpoint")
    digest = _sha256(path)
    if sha256 is not None and digest != sha256.lower():
        raise PaSSTCheckpointError(f"{path}: sha256 {digest} does not match the expected {sha256}; "
                                   "the file is corrupt or a different checkpoint")
    try:
        obj = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - re-raised naming the file
        reason = " ".join(str(exc).split("\n", 1)[0].split())[:200]
        raise PaSSTCheckpointError(f"cannot read PaSST weights {path} ({reason}); pass the PaSST "
                                   "release .pt or the baseline's .ckpt") from None
    model = build_passt(passt_state_from(obj, str(path)), str(path), **overrides)
    model.checkpoint_path, model.checkpoint_sha256 = str(path), digest
    return model


def save_passt_release(model: PaSST, path: str | Path) -> Path:
    """Write ``model`` as a plain release-layout state dict (what the PaSST release file holds)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)
    return path


def randomize_(model: PaSST, seed: int, scale: float = 1.0) -> PaSST:
    """Seeded random weights with trained-like magnitudes (LayerNorm gains near 1, fan-in scaled
    matrices, positional embeddings and tokens of order 0.5): tiny encoders and parity tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            module = name.rsplit(".", 1)[0]
            if module.endswith(("norm", "norm1", "norm2", "head.0")):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * scale * noise)
            elif name.endswith(("pos_embed", "_token")):
                p.copy_(0.5 * scale * noise)
            elif p.dim() >= 2:
                p.copy_(scale * noise / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.1 * scale * noise)
    return model


__all__ = ["MelFrontEnd", "PaSST", "PaSSTCheckpointError", "PaSSTConfig", "SAMPLE_RATE",
           "WINDOW_SAMPLES", "baseline_window_mean", "baseline_windows", "build_passt",
           "config_from_state_dict", "load_passt", "num_mel_frames", "passt_mel",
           "passt_s_config", "passt_state_from", "randomize_", "save_passt_release",
           "tiny_passt_config", "windows_used"]
