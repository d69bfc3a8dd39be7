"""The one place that builds encoders (extract, finetune and evaluate all come here).

Audio names: ``beats`` (needs ``checkpoint``: an official BEATs file), ``tiny-beats`` (a seeded
random 2 x 192 BEATs written once in the official format to the cache, so it has a sha256),
``passt`` (the official baseline's PaSST-S p16 s16 at 32 kHz; needs ``checkpoint``: the PaSST
release file ``passt-s-f128-p16-s16-ap.468.pt`` or the baseline's Lightning ``.ckpt``, whose audio
tower is used; or ``weights``: a release-layout state dict already in memory), ``tiny-passt`` (a
seeded random 2 x 192 PaSST of the same structure, written once in the release layout to the cache).
Text names: ``roberta-large`` (default), ``roberta-base`` or any Hugging Face name in the local
cache or a local model folder, ``tiny-roberta`` (built on demand into the cache).
Cache: ``$AUDIORET_CACHE`` or ``~/.cache/audioret``.

Audio encoders (``AudioEncoder`` for BEATs, ``PasstAudioEncoder`` for PaSST; what the stages call):
  ``.identity`` (name, architecture, config, checkpoint sha256, ...), ``.dim``, ``.sample_rate``
  (16000 BEATs, 32000 PaSST), ``.window_samples`` (10 s), ``.frames_per_window`` (62),
  ``num_valid_frames(num_samples_in_window) -> int`` (pure),
  ``encode_windows(windows [W, window_samples]) -> (frames [W, 62, D], window_vectors [W, D])``
  (no padding mask, eval mode when frozen, fp32 outputs, chunks of ``batch_size``),
  ``window_vectors(windows) -> [W, D]`` (the vector the end-to-end model averages over a clip's
  windows: BEATs the mean of ALL tokens, padding included (seed recipe); PaSST (CLS + DIST) / 2),
  ``frame_rule`` / ``window_rule`` (text recorded in store metadata), ``compile_backbone()``
  (training), ``compile_windows()`` (inference: extract --compile, see ``audioret.encoders.compiled``).
``TextEncoder``: see ``audioret.encoders.text``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .beats import (BEATs, load_beats, pool_time_frames, randomize_, save_beats_checkpoint,
                    tiny_beats_config, valid_prefix_after_reduce)
from .fbank import SAMPLE_RATE, num_fbank_frames
from .passt import PaSST, build_passt, load_passt, save_passt_release, tiny_passt_config
from .passt import HOP as PASST_HOP
from .passt import SAMPLE_RATE as PASST_SAMPLE_RATE
from .passt import WINDOW_SAMPLES as PASST_WINDOW_SAMPLES
from .passt import num_mel_frames
from .passt import randomize_ as randomize_passt_
from .text import FrozenWrapper, TextEncoder, build_tiny_roberta, load_text_encoder

AUDIO_ENCODERS = ("beats", "tiny-beats", "passt", "tiny-passt")
TEXT_ENCODERS = ("roberta-large", "roberta-base", "tiny-roberta", "<HF name or folder>")
WINDOW_SECONDS = 10
TINY_BEATS_SEED = 0
TINY_PASST_SEED = 0
FRAME_RULE = ("time frame = mean of the valid frequency tokens of a 160 ms time patch; valid if "
              "any of its tokens is valid under the reference token mask")
WINDOW_RULE = "mean of all tokens of each window, padding included (seed recipe)"
PASST_FRAME_RULE = ("time frame = mean of the 8 frequency patches of a 160 ms time column (final "
                    "LayerNorm); valid if the centre of its first mel frame lies in the signal")
PASST_WINDOW_RULE = "(CLS + DIST) / 2 after the final LayerNorm (what the baseline projects)"


def cache_dir() -> Path:
    """``$AUDIORET_CACHE`` or ``~/.cache/audioret`` (created)."""
    root = Path(os.environ.get("AUDIORET_CACHE") or Path.home() / ".cache" / "audioret")
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_tiny_beats(cache: Path | None = None, seed: int = TINY_BEATS_SEED) -> Path:
    """Write (once) the seeded tiny BEATs in the official checkpoint format; returns its path."""
    path = (cache or cache_dir()) / "tiny-beats" / f"tiny_beats_seed{seed}.pt"
    if not path.is_file():
        model = randomize_(BEATs(tiny_beats_config()), seed)
        save_beats_checkpoint(model, path)
    return path


def build_tiny_passt(cache: Path | None = None, seed: int = TINY_PASST_SEED) -> Path:
    """Write (once) the seeded tiny PaSST in the release layout; returns its path."""
    path = (cache or cache_dir()) / "tiny-passt" / f"tiny_passt_seed{seed}.pt"
    if not path.is_file():
        save_passt_release(randomize_passt_(PaSST(tiny_passt_config()), seed), path)
    return path


class WindowEncoder(FrozenWrapper):
    """What BEATs and PaSST share behind the window-level API: the autocast context, and
    ``encode_windows`` (shape check, chunks of ``batch_size``, gradient only when trainable, fp32
    outputs) over the subclass's ``_encode_chunk(windows) -> (frames, window_vectors)``."""

    batch_size: int
    sample_rate: int
    window_samples: int

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None or self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def _encode_chunk(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def compile_windows(self) -> float:
        """Inference (extract ``--compile``): torch.compile the chunk forward for ``batch_size``
        windows as encoders/compiled.py decides, and compile it now; returns the seconds that took.
        Raises CompileError (one line) when the toolchain cannot compile."""
        from .compiled import compile_window_forward, warm_up

        self._encode_chunk = compile_window_forward(self._encode_chunk, self.batch_size)  # type: ignore[method-assign]
        return warm_up(self._encode_chunk, self.batch_size, self.window_samples, self.device)

    def encode_windows(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``windows [W, window_samples]`` -> ``(frames [W, frames_per_window, D], window_vectors
        [W, D])`` float32, each window on its own (no padding mask), in chunks of ``batch_size``."""
        if windows.dim() != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(f"encode_windows expects [W, {self.window_samples}] windows of "
                             f"{WINDOW_SECONDS} s at {self.sample_rate} Hz, got {tuple(windows.shape)}")
        frames, vectors = [], []
        grad = torch.enable_grad() if not self.frozen and torch.is_grad_enabled() else torch.no_grad()
        with grad:
            for chunk in windows.split(self.batch_size):
                fr, vec = self._encode_chunk(chunk)
                frames.append(fr.float())
                vectors.append(vec.float())
        if not frames:
            d = self.dim
            return windows.new_zeros(0, self.frames_per_window, d), windows.new_zeros(0, d)
        return torch.cat(frames), torch.cat(vectors)


class AudioEncoder(WindowEncoder):
    """BEATs behind the window-level API the extract and finetune stages use (a frozen one
    stays in eval mode: cpt2 has layer drop 0.05)."""

    def __init__(self, model: BEATs, *, name: str, dtype: torch.dtype | None = None,
                 frozen: bool = True, batch_size: int = 8) -> None:
        super().__init__(model, name=name, dtype=dtype, frozen=frozen)
        self.batch_size = batch_size
        self.sample_rate = SAMPLE_RATE
        self.window_samples = WINDOW_SECONDS * SAMPLE_RATE

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def device(self) -> torch.device:
        return self.model.patch_embedding.weight.device

    @property
    def frames_per_window(self) -> int:
        return num_fbank_frames(self.window_samples) // self.model.cfg.input_patch_size

    @property
    def identity(self) -> dict[str, Any]:
        return {"kind": "audio", "name": self.name, "architecture": "beats",
                "config": self.model.cfg.to_dict(),
                "checkpoint": self.model.checkpoint_path,
                "checkpoint_sha256": self.model.checkpoint_sha256,
                "sample_rate": self.sample_rate, "window_samples": self.window_samples,
                "frames_per_window": self.frames_per_window, "frame_rule": FRAME_RULE}

    frame_rule, window_rule = FRAME_RULE, WINDOW_RULE

    def compile_backbone(self) -> None:
        """torch.compile the transformer stack in place (state-dict keys unchanged)."""
        self.model.encoder.compile()

    def window_vectors(self, windows: torch.Tensor) -> torch.Tensor:
        """``[W, window_samples] -> [W, D]``: mean of all tokens of each window (fp32; with
        gradient when trainable and grad is enabled)."""
        tokens, _ = self.extract_features(windows)
        return tokens.float().mean(dim=1)

    def num_valid_frames(self, num_samples_in_window: int) -> int:
        """Time frames of a window whose first ``num_samples_in_window`` samples are signal
        (rest zero padding) that count as valid under ``BEATs.frames``'s rule with a padding
        mask (reference mask reduction samples -> fbank frames -> tokens, then any-valid)."""
        s = self.window_samples
        n = min(max(int(num_samples_in_window), 0), s)
        t = num_fbank_frames(s)
        f = self.model.cfg.freq_patches
        tokens = f * (t // self.model.cfg.input_patch_size)
        valid_frames = valid_prefix_after_reduce(n, s, t)
        valid_tokens = valid_prefix_after_reduce(valid_frames, t, tokens)
        return min(self.frames_per_window, -(-valid_tokens // f))

    def extract_features(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None):
        with self._autocast():
            return self.model.extract_features(source.to(self.device), padding_mask)

    def frames(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None):
        with self._autocast():
            return self.model.frames(source.to(self.device), padding_mask)

    def _encode_chunk(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (frames [W, 62, D]: frequency-pooled tokens, mean of all tokens [W, D] (seed pooling))."""
        tokens, _ = self.extract_features(windows)
        frames, _ = pool_time_frames(tokens, None, self.model.cfg.freq_patches)
        return frames, tokens.float().mean(dim=1)


class PasstAudioEncoder(WindowEncoder):
    """PaSST behind the same window-level API (32 kHz, 10 s windows, 62 time frames)."""

    frame_rule, window_rule = PASST_FRAME_RULE, PASST_WINDOW_RULE

    def __init__(self, model: PaSST, *, name: str, dtype: torch.dtype | None = None,
                 frozen: bool = True, batch_size: int = 8) -> None:
        super().__init__(model, name=name, dtype=dtype, frozen=frozen)
        self.batch_size = batch_size
        self.sample_rate = PASST_SAMPLE_RATE
        self.window_samples = PASST_WINDOW_SAMPLES
        if model.cfg.num_classes:  # the AudioSet heads never feed features: keep them out of training
            for head in (model.head, model.head_dist):
                if head is not None:
                    head.requires_grad_(False)

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def device(self) -> torch.device:
        return self.model.patch_embed.proj.weight.device

    @property
    def frames_per_window(self) -> int:
        return num_mel_frames(self.window_samples) // self.model.cfg.patch_size

    @property
    def identity(self) -> dict[str, Any]:
        config = {k: v for k, v in self.model.cfg.to_dict().items()  # patchout: training only
                  if not k.startswith("s_patchout")}
        return {"kind": "audio", "name": self.name, "architecture": "passt", "config": config,
                "checkpoint": self.model.checkpoint_path,
                "checkpoint_sha256": self.model.checkpoint_sha256,
                "sample_rate": self.sample_rate, "window_samples": self.window_samples,
                "frames_per_window": self.frames_per_window, "frame_rule": self.frame_rule,
                "window_rule": self.window_rule}

    def num_valid_frames(self, num_samples_in_window: int) -> int:
        """Time columns holding signal: mel frame j is centred on sample ``320 j``; a column of
        16 frames counts if its first frame's centre is inside the signal (ceil(v / 5120))."""
        n = min(max(int(num_samples_in_window), 0), self.window_samples)
        per_column = PASST_HOP * self.model.cfg.patch_size
        return min(self.frames_per_window, -(-n // per_column))

    def compile_backbone(self) -> None:
        self.model.blocks.compile()

    @property
    def store_pooling(self) -> dict[str, str]:
        """What a store's ``frames`` / ``windows`` hold (extract records it in the metadata)."""
        return {"frames": "mean of the 8 frequency patches of each time column, valid columns only",
                "windows": self.window_rule}

    def encode(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[W, window_samples]`` -> ``(frames [W, T', D], pooled [W, D])`` (patchout in
        training mode: T' < 62 then)."""
        with self._autocast():
            return self.model.encode(windows.to(self.device))

    def window_vectors(self, windows: torch.Tensor) -> torch.Tensor:
        return self.encode(windows)[1].float()

    def _encode_chunk(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (frames [W, 62, D]: frequency-pooled columns, (CLS + DIST) / 2 [W, D])."""
        return self.encode(windows)


def identity_keys_not_compared(stored: Mapping[str, Any]) -> tuple[str, ...]:
    """Keys of a recorded encoder identity that a reopen does not compare.

    Locations (``checkpoint``, ``source``) may move. A text model recorded with its weights'
    sha256 is identified by that hash (with its config, max_length and preprocessing), not by the
    name it was given: ``--text-model roberta-base`` and a folder holding the same files are the
    same model. Identities written without a hash (a hub name missing from the cache) keep
    comparing by name.
    """
    keys = ["checkpoint", "source"]
    if stored.get("kind") == "text" and stored.get("weights_sha256"):
        keys.append("name")
    return tuple(keys)


def _encoder_words(ident: Mapping[str, Any]) -> str:
    return (f"{ident.get('name', '<unnamed>')!r} ({ident.get('architecture', 'beats')}, "
            f"{ident.get('sample_rate', SAMPLE_RATE)} Hz)")


def audio_encoder_change(stored: Mapping[str, Any] | None, wanted: Mapping[str, Any] | None) -> str | None:
    """A short phrase naming both audio encoders when a store's features come from another encoder
    (name or architecture) than the one a run needs, e.g. a BEATs store given to a PaSST run; None
    when they are the same kind (finer differences are left to the store's key-by-key check)."""
    if not stored or not wanted:
        return None
    key = ("name", "architecture")
    if all(stored.get(k, "beats" if k == "architecture" else None) == wanted.get(k, "beats" if k == "architecture"
                                                                                  else None) for k in key):
        return None
    return f"features of audio encoder {_encoder_words(stored)}, but the run needs {_encoder_words(wanted)}"


def build_audio_encoder(name: str = "beats", checkpoint: Path | str | None = None,
                        device: str | torch.device = "cpu", *, dtype: torch.dtype | None = None,
                        frozen: bool = True, sha256: str | None = None, batch_size: int = 8,
                        weights: Mapping[str, torch.Tensor] | None = None,
                        ) -> AudioEncoder | PasstAudioEncoder:
    """Audio encoder by name (see module docstring); offline, never downloads. ``weights``
    (PaSST only): a release-layout state dict giving architecture and weights (e.g. the audio
    tower of a fine-tuned checkpoint), instead of a file."""
    if name in ("passt", "tiny-passt"):
        if weights is not None:
            passt = build_passt(weights, source=str(checkpoint or "state dict"))
            passt.checkpoint_path = str(checkpoint) if checkpoint is not None else None
        elif checkpoint is not None:
            passt = load_passt(checkpoint, sha256=sha256)
        elif name == "tiny-passt":
            passt = load_passt(build_tiny_passt(), sha256=sha256)
        else:
            raise ValueError("audio encoder 'passt' needs its weights: pass --audio-checkpoint PATH "
                             "(the PaSST release file passt-s-f128-p16-s16-ap.468.pt or the "
                             "baseline's .ckpt), or use 'tiny-passt'")
        return PasstAudioEncoder(passt.to(device), name=name, dtype=dtype, frozen=frozen,
                                 batch_size=batch_size)
    if name == "beats":
        if checkpoint is None:
            raise ValueError("audio encoder 'beats' needs a checkpoint file (e.g. "
                             "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt); pass "
                             "--beats-ckpt PATH (finetune: --beats_ckpt_path PATH), or use 'tiny-beats'")
        model = load_beats(checkpoint, sha256=sha256)
    elif name == "tiny-beats":
        model = load_beats(build_tiny_beats() if checkpoint is None else checkpoint, sha256=sha256)
    else:
        raise ValueError(f"unknown audio encoder {name!r}; known: {', '.join(AUDIO_ENCODERS)}")
    return AudioEncoder(model.to(device), name=name, dtype=dtype, frozen=frozen,
                        batch_size=batch_size)


def build_text_encoder(name: str = "roberta-large", device: str | torch.device = "cpu",
                       **kw: Any) -> TextEncoder:
    """Text encoder by name or folder; ``kw`` goes to ``load_text_encoder`` (download,
    max_length, preprocess, dtype, frozen)."""
    if name == "tiny-roberta":
        return load_text_encoder(build_tiny_roberta(cache_dir()), device=device,
                                 name="tiny-roberta", **kw)
    return load_text_encoder(name, device=device, **kw)
