"""Raw-audio evaluation sources: a checkpoint + audio files (no feature store needed).

Two model kinds, told apart by the checkpoint's contents (:func:`checkpoint_kind`):

- ``heads``: an ``audioret train-heads`` checkpoint (plain ``heads.pt`` or Lightning). The frozen
  encoders are rebuilt through the registry from the identity of the store it was trained on
  (``store.metadata.audio_encoder`` / ``text_encoder``: name, checkpoint path + sha256), clip
  features are recomputed with ``audioret.encoders.features`` (what extract stores, rounded to the
  store's ``feature_dtype``), then the heads embed them.
- ``finetune``: an ``audioret finetune`` Lightning checkpoint (``state_dict`` + ``hyper_parameters``),
  loaded with ``audioret.models.load_finetuned`` (embeds waveforms and captions end to end).

:class:`RawSource` implements the ``EvalSource`` protocol: audio is decoded (DataLoader workers)
and embedded once up front, so files that cannot be decoded are known before any column is
written; they are left out and reported in ``failures`` (file name -> reason), never silently.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from audioret.models.checkpoint import FINETUNE, HEADS, checkpoint_kind  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

FEATURE_DTYPES = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}


# ---- what to evaluate ------------------------------------------------------------------------
@dataclass
class RawItems:
    """Audio files to rank and the captions to rank them for.

    ``caption_fnames[i]``: the audio caption i describes (single-match target); None for bare
    queries (predict over a folder + captions CSV).
    """

    audio_fnames: list[str]
    audio_paths: list[Path]
    captions: list[str]
    caption_fnames: list[str] | None = None


def items_from_corpus(corpus: str, data_path: str | Path, split: str, *,
                      captions_csv: str | Path | None = None) -> RawItems:
    """A corpus split (``audioret.corpora``): every clip, captions clip by clip (store order).
    The ``folder`` corpus gives its CSV's distinct captions as bare queries."""
    from audioret.corpora import load_corpus

    kw = {"captions_csv": Path(captions_csv)} if corpus == "folder" and captions_csv is not None else {}
    if corpus == "folder" and captions_csv is None:
        raise ValueError(f"corpus 'folder' ({data_path}) needs --captions-csv, a CSV with a 'caption' column")
    cs = load_corpus(corpus, Path(data_path), split, **kw)
    fnames = [c.clip_id for c in cs.clips]
    paths = [c.path for c in cs.clips]
    if cs.queries and not any(c.captions for c in cs.clips):
        return RawItems(fnames, paths, list(cs.queries), None)
    captions = [cap for c in cs.clips for cap in c.captions]
    owners = [c.clip_id for c in cs.clips for _ in c.captions]
    return RawItems(fnames, paths, captions, owners)


def items_from_folder(audio_dir: str | Path, captions_csv: str | Path) -> RawItems:
    """The baseline's predict input: every audio file of ``audio_dir`` (sorted by name) and the
    distinct values of the ``caption`` column of ``captions_csv``."""
    return items_from_corpus("folder", audio_dir, "predict", captions_csv=captions_csv)


# ---- decoding --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodePolicy:
    """How a file becomes the model's input wave (picklable: runs in DataLoader workers)."""

    sample_rate: int = 16000
    max_samples: int | None = None
    crop: str = "start"

    def load(self, path: Path) -> Tensor:
        from audioret.encoders.features import load_clip_wave

        return load_clip_wave(path, self.sample_rate, self.max_samples, self.crop)


class _Decoded(Dataset):
    def __init__(self, paths: Sequence[Path], policy: DecodePolicy) -> None:
        self.paths, self.policy = list(paths), policy

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Tensor | None, str | None]:
        from audioret.audio import AudioDecodeError

        try:
            return i, self.policy.load(self.paths[i]), None
        except AudioDecodeError as err:
            return i, None, err.reason


def decoded_batches(paths: Sequence[Path], policy: DecodePolicy, batch_size: int, num_workers: int):
    """Yield lists of (index, wave | None, reason | None) in file order."""
    kw = {"prefetch_factor": 2} if num_workers > 0 else {}
    loader = DataLoader(_Decoded(paths, policy), batch_size=batch_size, collate_fn=list,
                        num_workers=num_workers, **kw)
    yield from loader


# ---- models ----------------------------------------------------------------------------------
class RawModel(Protocol):
    decode: DecodePolicy

    def embed_waves(self, waves: list[Tensor]) -> Tensor: ...  # [B, E] unit vectors

    def embed_captions(self, captions: list[str]) -> Tensor: ...  # [B, E] unit vectors


def _round(x: Tensor, dtype: torch.dtype | None) -> Tensor:
    """Round features as the store kept them (the heads were trained on those values)."""
    return x if dtype is None else x.to(dtype).float()


def _pad(parts: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Ragged [n_i, D] -> (padded [B, n_max, D] zeros, mask [B, n_max] bool)."""
    padded = torch.nn.utils.rnn.pad_sequence(parts, batch_first=True)
    n = torch.tensor([len(p) for p in parts])
    return padded, torch.arange(padded.shape[1])[None, :] < n[:, None]


class TextModel(Protocol):
    """The text side of a checkpoint (what a search needs: the index already holds the audio)."""

    def embed_text(self, captions: list[str]) -> Tensor: ...  # [B, E] unit vectors

    def embed_captions(self, captions: list[str]) -> Tensor: ...  # the same; RawModel's name


class HeadsTextModel:
    """Trained heads over token features of the store's frozen text encoder (no audio encoder)."""

    def __init__(self, heads: torch.nn.Module, text_enc: Any, feature_dtype: torch.dtype | None,
                 device: str = "cpu") -> None:
        self.heads, self.text_enc = heads.to(device).eval(), text_enc
        self.feature_dtype, self.device = feature_dtype, device

    def text_features(self, captions: list[str]):
        from audioret.models import TextFeatures

        with torch.inference_mode():
            tokens, mask, first = self.text_enc.encode(list(captions))
        mask = mask.bool().cpu()
        tokens = _round(tokens.float().cpu(), self.feature_dtype) * mask[..., None]
        return TextFeatures(tokens, mask, _round(first.float().cpu(), self.feature_dtype))

    def embed_captions(self, captions: list[str]) -> Tensor:
        with torch.inference_mode():
            return self.heads.embed_text(self.text_features(captions).to(self.device, torch.float32))

    def embed_text(self, captions: list[str]) -> Tensor:
        return self.embed_captions(captions)


class HeadsModel(HeadsTextModel):
    """Trained heads over features recomputed by the frozen encoders the store was made with."""

    def __init__(self, heads: torch.nn.Module, audio_enc: Any, text_enc: Any, decode: DecodePolicy,
                 feature_dtype: torch.dtype | None, device: str = "cpu") -> None:
        super().__init__(heads, text_enc, feature_dtype, device)
        self.audio_enc, self.decode = audio_enc, decode

    def audio_features(self, waves: list[Tensor]):
        """Waves (already capped by the decode policy) -> padded ``AudioFeatures`` as from the store."""
        from audioret.encoders.features import audio_clips_features
        from audioret.models import AudioFeatures

        clips = audio_clips_features(self.audio_enc, waves, self.decode.max_samples, self.decode.crop)
        fr, fm = _pad([_round(c.frames, self.feature_dtype) for c in clips])
        wi, wm = _pad([_round(c.windows, self.feature_dtype) for c in clips])
        return AudioFeatures(fr, fm, wi, wm)

    def embed_waves(self, waves: list[Tensor]) -> Tensor:
        with torch.inference_mode():
            return self.heads.embed_audio(self.audio_features(waves).to(self.device, torch.float32))


class FinetunedModel:
    """A ``DualEncoder`` from a finetune checkpoint (crop to its ``max_seconds`` from the start)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model.eval()
        self.decode = DecodePolicy(model.sample_rate, model.max_samples, "start")

    def embed_waves(self, waves: list[Tensor]) -> Tensor:
        with torch.inference_mode():
            return self.model.embed_audio(waves)

    def embed_captions(self, captions: list[str]) -> Tensor:
        with torch.inference_mode():
            return self.model.embed_text(list(captions))


class FinetunedTextModel(torch.nn.Module):
    """The text tower of a finetune checkpoint (RoBERTa + ``text_projection``, the DualEncoder's
    key names), without the audio encoder: embeds captions with ``DualEncoder``'s own text code."""

    def __init__(self, text_encoder: Any, embed_dim: int) -> None:
        super().__init__()
        self.text_embedding_model = text_encoder.model
        self.__dict__["text_encoder"] = text_encoder  # tokeniser wrapper, not a submodule (as DualEncoder)
        self.text_projection = torch.nn.Linear(text_encoder.dim, embed_dim)

    def first_token(self, captions: list[str]) -> Tensor:
        from audioret.models.dual_encoder import DualEncoder

        return DualEncoder.first_token(self, captions)  # [B, D_t]

    def embed_text(self, captions: list[str]) -> Tensor:
        from audioret.models.dual_encoder import DualEncoder

        with torch.inference_mode():
            return DualEncoder.embed_text(self, list(captions))  # [B, E] unit vectors

    def embed_captions(self, captions: list[str]) -> Tensor:
        return self.embed_text(captions)


# ---- the source ------------------------------------------------------------------------------
@dataclass
class RawSource:
    """``EvalSource`` over raw files: audio embedded once in :meth:`prepare`, failures dropped."""

    model: RawModel
    items: RawItems
    batch_size: int = 16
    num_workers: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # audio file name -> reason

    def __post_init__(self) -> None:
        self._audio: Tensor | None = None
        self.audio_fnames: list[str] = []
        self.captions: list[str] = list(self.items.captions)
        self.caption_fnames: list[str] = list(self.items.caption_fnames or [])

    def prepare(self) -> "RawSource":
        """Decode and embed every audio file; leave out (and log) the ones that fail."""
        names, parts = [], []
        for batch in decoded_batches(self.items.audio_paths, self.model.decode, self.batch_size,
                                     self.num_workers):
            good = [(i, w) for i, w, _ in batch if w is not None]
            for i, _, reason in batch:
                if reason is not None:
                    self.failures[self.items.audio_fnames[i]] = reason
                    log.warning("left out %s: cannot decode (%s)", self.items.audio_paths[i], reason)
            if good:
                parts.append(self.model.embed_waves([w for _, w in good]).float().cpu())
                names += [self.items.audio_fnames[i] for i, _ in good]
        if not names:
            raise ValueError(f"none of the {len(self.items.audio_paths)} audio files could be decoded "
                             f"(first failure: {next(iter(self.failures.items()), None)})")
        self._audio, self.audio_fnames = torch.cat(parts), names
        if self.items.caption_fnames is not None and self.failures:
            keep = [k for k, f in enumerate(self.items.caption_fnames) if f not in self.failures]
            log.warning("left out %d captions of the %d undecodable audio files",
                        len(self.captions) - len(keep), len(self.failures))
            self.captions = [self.items.captions[k] for k in keep]
            self.caption_fnames = [self.items.caption_fnames[k] for k in keep]
        return self

    def embed_audio(self, rows: Sequence[int]) -> Tensor:
        if self._audio is None:
            self.prepare()
        return self._audio[list(rows)]

    def embed_text(self, rows: Sequence[int]) -> Tensor:
        return self.model.embed_captions([self.captions[r] for r in rows])


# ---- checkpoints -----------------------------------------------------------------------------
def _audio_encoder_from(ident: dict, ckpt: Path, beats_ckpt: Path | None, device: str):
    from audioret.encoders.registry import build_audio_encoder

    name = ident.get("name", "beats")
    recorded = ident.get("checkpoint")
    path = Path(beats_ckpt) if beats_ckpt is not None else Path(recorded) if recorded else None
    if path is not None and not path.is_file():
        if beats_ckpt is not None or name not in ("tiny-beats", "tiny-passt"):
            raise FileNotFoundError(
                f"{ckpt}: its audio encoder {name!r} was built from {path}, which does not exist here; "
                "pass --audio-checkpoint PATH (alias --beats-ckpt; the same BEATs or PaSST file: its sha256 "
                "is checked)")
        path = None  # tiny encoders are rebuilt in the cache deterministically; the sha256 still checks them
    return build_audio_encoder(name, path, device, sha256=ident.get("checkpoint_sha256"))


def _text_encoder_from(ident: dict, ckpt: Path, text_model: str | None, device: str):
    from audioret.encoders.registry import build_text_encoder
    from audioret.encoders.text import TextModelNotFound

    kw = {"max_length": int(ident.get("max_length", 32)), "preprocess": bool(ident.get("preprocess", True))}
    candidates = [text_model] if text_model else [ident.get("name"), ident.get("source")]
    errors = []
    for cand in [c for c in candidates if c]:
        try:
            enc = build_text_encoder(str(cand), device, **kw)
            break
        except (TextModelNotFound, OSError) as err:
            errors.append(f"{cand}: {err}")
    else:
        raise FileNotFoundError(f"{ckpt}: its text encoder {ident.get('name')!r} is not available here "
                                f"({'; '.join(errors) or 'nothing recorded'}); pass --text-model NAME_OR_FOLDER")
    want, got = ident.get("weights_sha256"), enc.identity.get("weights_sha256")
    if want and got and want != got:
        raise ValueError(f"{ckpt}: text encoder weights differ from the ones the heads were trained on "
                         f"(sha256 {got[:12]} here, {want[:12]} recorded); pass --text-model with the same model")
    return enc


def _heads_and_store(path: Path, device: str, needs: tuple[str, ...]) -> tuple[torch.nn.Module, dict]:
    """Heads + the metadata of their training store, which must record the ``needs`` identities."""
    from audioret.models import load_heads

    heads = load_heads(path, map_location=device)
    meta = ((getattr(heads, "checkpoint_info", {}).get("store") or {}).get("metadata")) or {}
    missing = [k for k in needs if k not in meta]
    if missing:
        raise ValueError(f"{path}: the heads checkpoint records no {' / '.join(missing)} identity of its "
                         "training store, so its encoders cannot be rebuilt for raw audio; extract the "
                         "audio into a store and use --store")
    return heads, meta


def _feature_dtype(meta: dict, round_features: bool) -> torch.dtype | None:
    pre = meta.get("preprocessing") or {}
    return FEATURE_DTYPES.get(str(pre.get("feature_dtype"))) if round_features else None


def load_heads_model(path: str | Path, *, beats_ckpt: Path | None = None, text_model: str | None = None,
                     device: str = "cpu", round_features: bool = True) -> HeadsModel:
    """Heads checkpoint -> heads + the encoders and preprocessing of its training store."""
    path = Path(path)
    heads, meta = _heads_and_store(path, device, ("audio_encoder", "text_encoder"))
    pre = meta.get("preprocessing") or {}
    decode = DecodePolicy(int(pre.get("sample_rate", 16000)), pre.get("max_samples"), pre.get("crop", "start"))
    audio = _audio_encoder_from(meta["audio_encoder"], path, beats_ckpt, device)
    text = _text_encoder_from(meta["text_encoder"], path, text_model, device)
    if audio.sample_rate != decode.sample_rate or audio.window_samples != pre.get("window_samples",
                                                                                  audio.window_samples):
        raise ValueError(f"{path}: store preprocessing {pre} does not fit the rebuilt audio encoder "
                         f"({audio.sample_rate} Hz, {audio.window_samples}-sample windows)")
    return HeadsModel(heads, audio, text, decode, _feature_dtype(meta, round_features), device)


def load_heads_text_model(path: str | Path, *, text_model: str | None = None, device: str = "cpu",
                          round_features: bool = True) -> HeadsTextModel:
    """Heads checkpoint -> heads + only the text encoder of its training store (no audio weights file
    needed); captions embed exactly as with :func:`load_heads_model`."""
    path = Path(path)
    heads, meta = _heads_and_store(path, device, ("text_encoder",))
    text = _text_encoder_from(meta["text_encoder"], path, text_model, device)
    return HeadsTextModel(heads, text, _feature_dtype(meta, round_features), device)


TEXT_KEYS = ("text_embedding_model.", "text_projection.")  # a DualEncoder's text side


def load_finetuned_text_model(path: str | Path, *, text_model: str | None = None,
                              device: str = "cpu") -> FinetunedTextModel:
    """Finetune checkpoint -> its text tower only: the text model named in ``hyper_parameters``
    (``text_model`` overrides where it is found) with every text weight from the checkpoint. The audio
    encoder (and its BEATs/PaSST file) is never built; captions embed as with ``load_finetuned``."""
    from audioret.encoders.registry import build_text_encoder
    from audioret.models.dual_encoder import (COMPILE_PREFIX, adapt_state_dict, read_finetune_checkpoint,
                                              strip_lightning_prefix, text_model_name)

    path = Path(path)
    ckpt = read_finetune_checkpoint(path)
    spec = dict(ckpt["hyper_parameters"])
    if text_model is not None:
        spec["text_model"] = text_model
    raw = strip_lightning_prefix(ckpt["state_dict"])
    state = {k: v for k, v in raw.items() if k.replace(COMPILE_PREFIX, "").startswith(TEXT_KEYS)}
    model = FinetunedTextModel(build_text_encoder(text_model_name(spec), device="cpu", frozen=False),
                               int(spec.get("embed_dim", 1024)))
    model.load_state_dict(adapt_state_dict(state, model.state_dict(), source=str(path)))
    model.checkpoint_info = {"path": str(path), "hyper_parameters": spec,
                             "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
    return model.to(device).eval()


def load_text_model(path: str | Path, *, text_model: str | None = None, device: str = "cpu") -> TextModel:
    """Any supported checkpoint -> its text side only (``embed_text(captions)`` -> [N, D] unit vectors,
    equal to :func:`load_raw_model`'s ``embed_captions``). For searching an index, which already holds
    the audio embeddings: no audio encoder is built, so its weights file need not be on this machine."""
    kind = checkpoint_kind(path)
    log.info("%s: %s checkpoint (text side only)", path, kind)
    if kind == HEADS:
        return load_heads_text_model(path, text_model=text_model, device=device)
    return load_finetuned_text_model(path, text_model=text_model, device=device)


def load_raw_model(path: str | Path, *, beats_ckpt: Path | None = None, text_model: str | None = None,
                   device: str = "cpu") -> RawModel:
    """Any supported checkpoint -> a model that embeds waves and captions."""
    kind = checkpoint_kind(path)
    log.info("%s: %s checkpoint", path, kind)
    if kind == HEADS:
        return load_heads_model(path, beats_ckpt=beats_ckpt, text_model=text_model, device=device)
    from audioret.models.dual_encoder import load_finetuned

    return FinetunedModel(load_finetuned(path, map_location=device, beats_ckpt_path=beats_ckpt,
                                         text_model=text_model))


__all__ = ["DecodePolicy", "FinetunedModel", "FinetunedTextModel", "HeadsModel", "HeadsTextModel", "RawItems",
           "RawModel", "RawSource", "TextModel", "checkpoint_kind", "items_from_corpus", "items_from_folder",
           "load_finetuned_text_model", "load_heads_model", "load_heads_text_model", "load_raw_model",
           "load_text_model"]
