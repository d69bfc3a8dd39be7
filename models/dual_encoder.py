"""The baseline's end-to-end model for inference: encoders + linear projections, no Lightning.

``DualEncoder`` is what ``audioret finetune`` trains (its LightningModule holds one as ``model``)
and what evaluate/predict load with :func:`load_finetuned`. Recipe (baseline.md sections 3.2-3.3, 4):

- audio: 16 kHz mono, cropped to ``max_seconds`` (30 s), cut into 10 s windows (last zero-padded,
  ceil(d / 10 s) windows = the seed's duration rule), each window through BEATs without a padding
  mask, mean of ALL its tokens; clip vector = mean over its windows (``models.pooling.segment_mean``);
  ``audio_projection`` Linear(D_a -> 1024); L2 norm.
- text: baseline preprocessing, <= 32 tokens, the first (<s>) token of the last hidden state;
  ``text_projection`` Linear(D_t -> 1024); L2 norm. Text dropout 0.2 (hidden and attention).
- ``tau``: a [1] parameter (|tau| is used by the loss).

With PaSST (``--audio-encoder passt``, the official baseline, baseline.md 3.1-3.2) audio is at
32 kHz and each 10 s window gives (CLS + DIST) / 2; ceil(d / 10 s) windows from the start is exactly
the baseline's rule (<= 10 s: window 0, <= 20 s: mean of 0-1, else all three) for clips <= 30 s
(longer ones: the baseline crops at random, we keep the first 30 s).

State-dict keys follow the baseline's checkpoints (baseline.md 11): ``audio_embedding_model.
model.model.<BEATs or PaSST keys>``, ``audio_projection.*``, ``text_embedding_model.<RoBERTa keys>``,
``text_projection.*``, ``tau``; :func:`adapt_state_dict` accepts ``_orig_mod.`` (torch.compile)
prefixes, the official file's repeated relative-position tables and the unused ``predictor``.
The released PaSST baseline checkpoint loads directly (:func:`load_finetuned`): its audio tower is
recognised by its keys and the PaSST is built from its shapes, so no PaSST file is needed.

Inference API::

    model = load_finetuned("run/checkpoints/last.ckpt")      # eval mode, on CPU
    model.embed_text(["a dog barks"])                         # [B, 1024] unit vectors
    model.embed_audio([wave_16k_1d, ...])                     # [B, 1024] unit vectors
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pooling import segment_mean

log = logging.getLogger(__name__)

COMPILE_PREFIX = "_orig_mod."
BEATS_PREFIX = "audio_embedding_model.model.model."
LIGHTNING_PREFIX = "model."  # the finetune LightningModule keeps the DualEncoder as ``model``


class AudioSegmenter(nn.Module):
    """Holds the audio encoder under ``.model`` so keys match the seed's segmenting wrapper."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.model = encoder  # audioret.encoders AudioEncoder (its ``.model`` is BEATs)


def window_counts(num_samples: Sequence[int], window: int) -> list[int]:
    """Windows per clip: ceil(S / window), at least 1 (the seed's 10/20/30 s duration rule)."""
    return [max(1, -(-int(n) // window)) for n in num_samples]


def pad_windows(means: Tensor, counts: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Flat per-window vectors [sum W_i, D] -> (padded [B, W_max, D], mask [B, W_max] bool)."""
    parts = list(means.split(list(counts)))
    padded = nn.utils.rnn.pad_sequence(parts, batch_first=True)
    w = torch.arange(padded.shape[1], device=means.device)
    mask = w[None, :] < torch.as_tensor(list(counts), device=means.device)[:, None]
    return padded, mask


def set_dropout(module: nn.Module, p: float) -> None:
    """Set every nn.Dropout (and HF attention dropout, which reads ``.dropout.p``) to ``p``."""
    for m in module.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
    cfg = getattr(module, "config", None)
    if cfg is not None:
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if hasattr(cfg, name):
                setattr(cfg, name, p)


class DualEncoder(nn.Module):
    """Audio encoder + projection, text encoder + projection, temperature (module docstring)."""

    def __init__(self, audio_encoder: nn.Module, text_encoder: nn.Module, *, embed_dim: int = 1024,
                 initial_tau: float = 0.05, tau_trainable: bool = False, max_seconds: float = 30.0,
                 text_dropout: float = 0.2) -> None:
        super().__init__()
        self.audio_embedding_model = AudioSegmenter(audio_encoder)
        self.audio_projection = nn.Linear(audio_encoder.dim, embed_dim)
        # the HF model is the submodule (seed key layout); the wrapper only tokenises
        self.text_embedding_model = text_encoder.model
        self.__dict__["text_encoder"] = text_encoder
        self.text_projection = nn.Linear(text_encoder.dim, embed_dim)
        self.tau = nn.Parameter(torch.tensor([float(initial_tau)]), requires_grad=tau_trainable)
        self.max_seconds = max_seconds
        set_dropout(self.text_embedding_model, text_dropout)
        beats = audio_encoder.model
        if getattr(beats, "predictor", None) is not None:  # never used: keep it out of DDP and AdamW
            beats.predictor.requires_grad_(False)

    # ---- properties --------------------------------------------------------------------------
    @property
    def audio_encoder(self) -> nn.Module:
        return self.audio_embedding_model.model

    @property
    def audio_trainable(self) -> bool:
        return not self.audio_encoder.frozen

    @property
    def sample_rate(self) -> int:
        return int(self.audio_encoder.sample_rate)

    @property
    def window_samples(self) -> int:
        return int(self.audio_encoder.window_samples)

    @property
    def max_samples(self) -> int:
        return int(round(self.max_seconds * self.sample_rate))

    # ---- audio ----------------------------------------------------------------------------------
    def window_means(self, windows: Tensor) -> Tensor:
        """[N, window_samples] -> [N, D_a]: the encoder's window vector (BEATs: mean of all tokens,
        padding included; PaSST: (CLS + DIST) / 2). A frozen encoder runs without gradient and
        stays in eval mode (no layer drop, no patchout)."""
        enc = self.audio_encoder
        ctx = torch.no_grad() if enc.frozen else torch.enable_grad() if torch.is_grad_enabled() \
            else torch.no_grad()
        with ctx:
            return enc.window_vectors(windows)

    def pooled_audio(self, windows: Tensor, counts: Sequence[int]) -> Tensor:
        """Windows of a batch [sum W_i, S_w] with ``counts[i]`` per clip -> seed pooled [B, D_a]."""
        padded, mask = pad_windows(self.window_means(windows), counts)
        return segment_mean(padded, mask)

    def project_audio(self, pooled: Tensor) -> Tensor:
        return F.normalize(self.audio_projection(pooled), dim=-1)

    def windows_of(self, waves: Sequence[Tensor]) -> tuple[Tensor, list[int]]:
        """1-D waves at ``sample_rate`` -> (windows [sum W_i, window_samples], counts); crops to
        max_seconds."""
        from audioret.encoders.features import clip_windows

        wins = [clip_windows(w, self.window_samples, self.max_samples) for w in waves]
        return torch.cat(wins), [len(w) for w in wins]

    def embed_audio(self, waves: Sequence[Tensor]) -> Tensor:
        """List of 1-D float waves at ``sample_rate`` -> [B, E] unit vectors (deterministic crop)."""
        windows, counts = self.windows_of(waves)
        device = self.audio_projection.weight.device
        return self.project_audio(self.pooled_audio(windows.to(device), counts))

    # ---- text -----------------------------------------------------------------------------------
    def first_token(self, captions: Sequence[str]) -> Tensor:
        """Raw captions -> [B, D_t] first-token features (ambient autocast applies)."""
        batch = self.text_encoder.tokenize(list(captions))
        device = self.text_projection.weight.device
        out = self.text_embedding_model(input_ids=batch["input_ids"].to(device),
                                        attention_mask=batch["attention_mask"].to(device))
        return out.last_hidden_state[:, 0]

    def embed_text(self, captions: Sequence[str]) -> Tensor:
        """Raw captions -> [B, E] unit vectors."""
        return F.normalize(self.text_projection(self.first_token(captions)), dim=-1)

    # ---- compile ----------------------------------------------------------------------------------
    def compile_encoders(self) -> None:
        """torch.compile the encoders in place (``nn.Module.compile``): state-dict keys unchanged.

        The audio encoder is compiled at its transformer stack (the module whose forward runs);
        projections and the mel/fbank front end are left alone, as the baseline does."""
        self.audio_encoder.compile_backbone()
        self.text_embedding_model.compile()


def text_model_name(spec: Mapping[str, Any]) -> str:
    """--text-model, else roberta-base with --roberta_base, else roberta-large (the seed's rule)."""
    if spec.get("text_model"):
        return str(spec["text_model"])
    return "roberta-base" if spec.get("roberta_base") else "roberta-large"


PASST_NAMES = ("passt", "tiny-passt")


def audio_checkpoint_of(spec: Mapping[str, Any]) -> Any:
    """The audio encoder's weights file in a finetune config: ``passt_ckpt_path`` (else the
    ``load_ckpt_path`` it starts from) for PaSST, ``beats_ckpt_path`` for BEATs."""
    if spec.get("audio_encoder") in PASST_NAMES:
        return spec.get("passt_ckpt_path") or (spec.get("load_ckpt_path") if spec.get("audio_encoder") == "passt"
                                               else None)
    return spec.get("beats_ckpt_path")


def check_passt_file(spec: Mapping[str, Any]) -> None:
    """A PaSST weights file named in a finetune config must exist; the error names the finetune flag it
    came from (the encoder loader only knows extract's --audio-checkpoint)."""
    path = audio_checkpoint_of(spec)
    if path is None or Path(path).is_file():
        return
    flag = "--passt_ckpt_path" if spec.get("passt_ckpt_path") else "--load_ckpt_path"
    raise FileNotFoundError(f"{flag} {path}: no such file; pass the PaSST release file "
                            "passt-s-f128-p16-s16-ap.468.pt or the baseline's Lightning .ckpt")


def build_dual_encoder(spec: Mapping[str, Any], device: str | torch.device = "cpu", *,
                       audio_weights: Mapping[str, Tensor] | None = None,
                       audio_source: str | Path | None = None) -> DualEncoder:
    """Build from a finetune config dict (the checkpoint's ``hyper_parameters``): keys
    ``audio_encoder``, ``beats_ckpt_path`` / ``passt_ckpt_path``, ``text_model``/``roberta_base``,
    ``audio_trainable``, ``initial_tau``, ``tau_trainable``, ``max_seconds``, ``text_dropout``,
    ``embed_dim``, and for PaSST ``s_patchout_t`` / ``s_patchout_f`` (training-only patchout).
    ``audio_weights``: a PaSST tower in the release layout (from a checkpoint) instead of a file."""
    from audioret.encoders.registry import build_audio_encoder, build_text_encoder

    name = spec.get("audio_encoder") or "beats"
    if name in PASST_NAMES and audio_weights is None:
        check_passt_file(spec)
    audio = build_audio_encoder(name, checkpoint=audio_source if audio_weights is not None
                                else audio_checkpoint_of(spec), device=device,
                                frozen=not bool(spec.get("audio_trainable", False)),
                                weights=audio_weights)
    if name in PASST_NAMES:
        cfg = audio.model.cfg
        audio.model.cfg = dataclasses.replace(
            cfg, s_patchout_t=int(spec.get("s_patchout_t", cfg.s_patchout_t)),
            s_patchout_f=int(spec.get("s_patchout_f", cfg.s_patchout_f)))
        audio.model.cfg.validate("patchout (--s_patchout_t/--s_patchout_f)")
    text = build_text_encoder(text_model_name(spec), device=device, frozen=False)
    return DualEncoder(audio, text, embed_dim=int(spec.get("embed_dim", 1024)),
                       initial_tau=float(spec.get("initial_tau", 0.05)),
                       tau_trainable=bool(spec.get("tau_trainable", False)),
                       max_seconds=float(spec.get("max_seconds", 30.0)),
                       text_dropout=float(spec.get("text_dropout", 0.2))).to(device)


def _droppable(key: str, own: Mapping[str, Tensor]) -> bool:
    """Keys of a seed/official checkpoint that carry nothing our model needs."""
    if key in own:
        return False
    if key.startswith(BEATS_PREFIX):
        rest = key[len(BEATS_PREFIX):]
        if rest.startswith("predictor."):
            return True  # randomly initialised and unused in the seed copy
        if rest.endswith("self_attn.relative_attention_bias.weight"):
            return True  # official file repeats layer 0's shared table for every layer
    return key.endswith("embeddings.position_ids")  # old transformers buffer


def adapt_state_dict(state: Mapping[str, Tensor], own: Mapping[str, Tensor], *,
                     source: str = "checkpoint") -> dict[str, Tensor]:
    """Normalise a (Lightning-prefix-free) state dict to ``own``'s keys.

    Strips ``_orig_mod.`` (written under torch.compile), drops the harmless extras
    (:func:`_droppable`), and raises naming missing / unexpected / mis-shaped keys otherwise.
    """
    out = {k.replace(COMPILE_PREFIX, ""): v for k, v in state.items()}
    out = {k: v for k, v in out.items() if not _droppable(k, own)}
    missing = sorted(set(own) - set(out))
    unexpected = sorted(set(out) - set(own))
    shapes = [f"{k}: {tuple(out[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(out) & set(own)) if out[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source}: weights do not fit the model built from its config: missing {missing[:8]} "
            f"({len(missing)}), unexpected {unexpected[:8]} ({len(unexpected)}), shape mismatches "
            f"{shapes[:8]}. Check --audio-encoder/--beats_ckpt_path/--text-model match the run that "
            "wrote the checkpoint.")
    return out


def strip_lightning_prefix(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Lightning checkpoint of the finetune module -> DualEncoder keys (seed checkpoints have none)."""
    if any(k.startswith(LIGHTNING_PREFIX) for k in state):
        return {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    return dict(state)


def read_finetune_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict of a finetune Lightning checkpoint, with errors that name the file."""
    from .checkpoint import load_checked

    path = Path(path)
    ckpt = load_checked(path, "a Lightning .ckpt written by `audioret finetune`, e.g. <out>/checkpoints/last.ckpt")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (needs 'state_dict' and "
                         "'hyper_parameters'); head checkpoints load with audioret.models.load_heads")
    return ckpt


def passt_tower(state: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    """The PaSST audio tower (release layout) of a DualEncoder-layout state dict, or None when
    the audio encoder is not PaSST (recognised by its time/frequency positional embeddings)."""
    from audioret.encoders.passt import COMPILE_PREFIX as _C, CHECKPOINT_PREFIX

    tower = {k.replace(_C, "")[len(CHECKPOINT_PREFIX):]: v for k, v in state.items()
             if k.replace(_C, "").startswith(CHECKPOINT_PREFIX)}
    return tower if "time_new_pos_embed" in tower else None


def load_finetuned(path: str | Path, *, map_location: str | torch.device = "cpu",
                   beats_ckpt_path: str | Path | None = None,
                   text_model: str | None = None) -> DualEncoder:
    """A finetune, seed BEATs-copy or official PaSST baseline Lightning checkpoint ->
    ``DualEncoder`` in eval mode.

    The encoders are rebuilt from ``hyper_parameters`` (audio encoder name + BEATs file for its
    architecture, text model name/folder), then every weight comes from the checkpoint. A PaSST
    tower is built from the checkpoint's own shapes (the official checkpoint has no
    ``audio_encoder`` entry: its PaSST keys say it). ``beats_ckpt_path`` / ``text_model``
    override where those files are found on this machine; nothing is downloaded.
    """
    path = Path(path)
    ckpt = read_finetune_checkpoint(path)
    spec = dict(ckpt["hyper_parameters"])
    if beats_ckpt_path is not None:
        spec["beats_ckpt_path"] = str(beats_ckpt_path)
    if text_model is not None:
        spec["text_model"] = text_model
    raw = strip_lightning_prefix(ckpt["state_dict"])
    tower = passt_tower(raw)
    if tower is not None:
        spec["audio_encoder"] = spec.get("audio_encoder") or "passt"
        if spec["audio_encoder"] not in PASST_NAMES:
            raise ValueError(f"{path}: hyper_parameters say audio_encoder={spec['audio_encoder']!r} but "
                             "the weights are a PaSST tower; the checkpoint was edited or mixed up")
    model = build_dual_encoder(spec, audio_weights=tower, audio_source=path)
    state = adapt_state_dict(raw, model.state_dict(), source=str(path))
    model.load_state_dict(state)
    model.checkpoint_info = {"path": str(path), "hyper_parameters": spec,
                             "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
    return model.to(map_location).eval()


__all__ = ["DualEncoder", "AudioSegmenter", "build_dual_encoder", "load_finetuned", "adapt_state_dict",
           "passt_tower", "audio_checkpoint_of",
           "strip_lightning_prefix", "window_counts", "pad_windows", "text_model_name", "set_dropout"]
