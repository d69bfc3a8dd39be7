"""Model-based evaluation: embed a split, then score it exactly (no training code imported).

Evaluate talks to a model through :class:`EvalSource`: the split's raw ``captions``, each
caption's own audio (``caption_fnames``), the unique ``audio_fnames``, and two methods returning
L2-normalised [N, D] embeddings for row indices. :class:`StoreSource` implements it for trained
heads (``audioret.models.load_heads``) over a feature store split; :class:`audioret.evaluate.sources.
RawSource` implements it over raw audio files (heads + rebuilt encoders, or a finetune checkpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from audioret.evaluate.report import GroundTruth, score_and_report

log = logging.getLogger(__name__)

# store metadata that must match between the checkpoint's training store and the evaluated store
IDENTITY_KEYS = ("audio_encoder", "text_encoder", "preprocessing")


class EvalSource(Protocol):
    captions: list[str]  # raw caption per text row (matched exactly against annotations)
    caption_fnames: list[str]  # the audio each caption belongs to (single-match target)
    audio_fnames: list[str]  # unique audio file names, one per audio row

    def embed_text(self, rows: Sequence[int]) -> torch.Tensor: ...  # [len(rows), D] unit vectors

    def embed_audio(self, rows: Sequence[int]) -> torch.Tensor: ...  # [len(rows), D] unit vectors


def embed_all(embed, n: int, batch_size: int) -> torch.Tensor:
    """Embed rows 0..n-1 in batches -> [n, D] float32 on CPU (no grad)."""
    out = []
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            out.append(embed(list(range(i, min(n, i + batch_size)))).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


class StoreSource:
    """Trained heads over one feature-store split (audio items = unique clips, text items = captions)."""

    def __init__(self, heads: torch.nn.Module, store_path: str | Path, split: str, *, device: str = "cpu",
                 expect: dict | None = None):
        from audioret.store import open_store

        self.heads, self.device = heads.to(device).eval(), device
        st = open_store(store_path, expect=expect)  # StoreMismatchError names differing encoder keys
        self.audio_items, self.text_items = st.audio(split), st.text(split)
        self.audio_items.require_complete()
        self.text_items.require_complete()
        self.audio_fnames = list(self.audio_items.ids)
        self.captions = list(self.text_items.ids)
        clip = self.text_items.column("clip_index").tolist()
        self.caption_fnames = [self.audio_fnames[c] for c in clip]

    def embed_audio(self, rows: Sequence[int]) -> torch.Tensor:
        from audioret.models import AudioFeatures

        fr, wi = self.audio_items.batch("frames", rows), self.audio_items.batch("windows", rows)
        batch = AudioFeatures(torch.from_numpy(fr.values), torch.from_numpy(fr.mask),
                              torch.from_numpy(wi.values), torch.from_numpy(wi.mask))
        return self.heads.embed_audio(batch.to(self.device, torch.float32))

    def embed_text(self, rows: Sequence[int]) -> torch.Tensor:
        from audioret.models import TextFeatures

        tok = self.text_items.batch("tokens", rows)
        first = torch.from_numpy(self.text_items.vectors("first", rows))
        batch = TextFeatures(torch.from_numpy(tok.values), torch.from_numpy(tok.mask), first)
        return self.heads.embed_text(batch.to(self.device, torch.float32))


def evaluate_source(src: EvalSource, annotations: GroundTruth | Sequence[str | Path] | None,
                    out_dir: str | Path | None, *, batch_size: int = 256, ks: Sequence[int] = (10, 16),
                    skip_unmatched: bool = False, chunk_size: int | None = None,
                    device: str | None = None, show: bool = True) -> dict[str, float]:
    """Embed every caption and audio of ``src`` and score them (single-match targets always;
    multi-match when ``annotations`` are given)."""
    text = embed_all(src.embed_text, len(src.captions), batch_size)
    audio = embed_all(src.embed_audio, len(src.audio_fnames), batch_size)
    log.info("embedded %d captions and %d audios (D=%d)", len(text), len(audio), audio.shape[1])
    return score_and_report(text, audio, src.captions, src.audio_fnames, annotations, out_dir,
                            caption_fnames=src.caption_fnames, ks=ks, skip_unmatched=skip_unmatched,
                            chunk_size=chunk_size, device=device, show=show)


def load_store_source(checkpoint: str | Path, store: str | Path, split: str, *,
                      device: str = "cpu") -> StoreSource:
    """Heads from ``checkpoint`` (audioret.models.load_heads) over ``store``/``split``."""
    from audioret.models import load_heads

    from audioret.encoders.registry import audio_encoder_change
    from audioret.store import open_store

    heads = load_heads(checkpoint, map_location=device)
    trained_on = (getattr(heads, "checkpoint_info", {}).get("store") or {}).get("metadata") or {}
    expect = {k: trained_on[k] for k in IDENTITY_KEYS if k in trained_on}
    change = audio_encoder_change(open_store(store).metadata.get("audio_encoder"), expect.get("audio_encoder"))
    if change is not None:  # one clear sentence before the store's key-by-key list
        raise ValueError(f"--store {store} holds {change} ({checkpoint} was trained on it); evaluate these "
                         "heads on a store extracted with that encoder, or give --data-path to embed the raw audio")
    return StoreSource(heads, store, split, device=device, expect=expect)


__all__ = ["EvalSource", "StoreSource", "embed_all", "evaluate_source", "load_store_source"]
