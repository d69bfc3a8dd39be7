"""``audioret distill teachers``: run each stage-1 model once over the training split and keep its
embeddings (the paper's ``cmd_generate_embeddings``; baseline.md section 12) as one artifact.

A teacher is a ``train-heads`` checkpoint (heads over a feature store split: no encoder runs) or a
``finetune`` checkpoint (encoders + projections over the corpus audio, or over the stored BEATs window
means when the teacher was trained with ``--audio-store``). Every teacher is aligned on the first
teacher's (clip, caption) keys; a teacher that lacks one of them is refused with the missing keys named.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from audioret.corpora import load_corpus
from audioret.encoders.beats import file_sha256
from audioret.evaluate.model import IDENTITY_KEYS
from audioret.finetune.data import ClipUnavailable, LiveAudio, StoreAudio
from audioret.finetune.run import store_expectation
from audioret.models import load_heads
from audioret.models.checkpoint import checkpoint_kind
from audioret.models.dual_encoder import load_finetuned, pad_windows
from audioret.models.pooling import segment_mean
from audioret.models.teachers import TeacherMismatchError, TeacherTargets, save_targets
from audioret.store import open_store
from audioret.train_heads.store_reader import load_feature_split

from .config import TeachersConfig

log = logging.getLogger(__name__)


@dataclass
class TeacherOutput:
    """One teacher over one split: keys + L2-normalised embeddings in key order."""

    identity: dict[str, Any]
    clip_ids: list[str]
    captions: list[str]
    caption_clip: np.ndarray  # [N_captions] int64
    audio: np.ndarray  # [N_clips, E] float32
    text: np.ndarray  # [N_captions, E]
    corpus: dict[str, Any]


def _batches(n: int, size: int) -> list[torch.Tensor]:
    return [torch.arange(i, min(n, i + size)) for i in range(0, n, size)]


# --------------------------------------------------------------------------- heads teachers

def heads_teacher(checkpoint: Path, store: Path | None, split: str, *, device: str = "cpu",
                  batch_size: int = 256) -> TeacherOutput:
    """Trained heads over a store split (captions/clips that failed at extraction left out)."""
    heads = load_heads(checkpoint, map_location=device)
    trained_on = heads.checkpoint_info.get("store") or {}
    store = store or (Path(trained_on["path"]) if trained_on.get("path") not in (None, "memory") else None)
    if store is None:
        raise ValueError(f"{checkpoint}: heads teacher needs --store (the checkpoint records no store path)")
    expect = {k: v for k, v in (trained_on.get("metadata") or {}).items() if k in IDENTITY_KEYS}
    st = open_store(store, expect=expect)  # StoreMismatchError: other encoders than the teacher was trained on
    data = load_feature_split(st, split)
    used = sorted(set(data.caption_clip.tolist()))  # clips of usable captions only (failed clips dropped)
    remap = torch.full((data.num_clips,), -1, dtype=torch.long)
    remap[torch.tensor(used, dtype=torch.long)] = torch.arange(len(used))
    with torch.inference_mode():
        audio = torch.cat([heads.embed_audio(data.audio(torch.tensor(used)[b]).to(device, torch.float32)).float().cpu()
                           for b in _batches(len(used), batch_size)])
        text = torch.cat([heads.embed_text(data.text(b).to(device, torch.float32)).float().cpu()
                          for b in _batches(data.num_captions, batch_size)])
    identity = {"kind": "heads", "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint),
                "embed_dim": int(audio.shape[1]), "store": {"path": str(store),
                **{k: st.metadata[k] for k in IDENTITY_KEYS if k in st.metadata}},
                "head_config": heads.checkpoint_info.get("head_config", {}),
                "seed": (heads.checkpoint_info.get("train_config") or {}).get("seed"),
                "metrics": heads.checkpoint_info.get("metrics", {})}
    return TeacherOutput(identity, [data.clip_ids[c] for c in used], list(data.captions),
                         remap[data.caption_clip].numpy().astype(np.int64), audio.numpy(), text.numpy(),
                         dict(st.metadata.get("corpus") or {}))


# --------------------------------------------------------------------------- finetune teachers

def finetune_teacher(checkpoint: Path, data_path: Path | None, split: str, *, corpus: str = "clotho",
                     audio_store: Path | None = None, device: str = "cpu", batch_size: int = 32) -> TeacherOutput:
    """A finetune checkpoint over a corpus split: decoded audio (start crop, as evaluation) or the
    stored window means of ``audio_store`` (the teacher's own ``--audio-store`` by default)."""
    if data_path is None:
        raise ValueError(f"{checkpoint}: a finetune teacher needs --data-path (the corpus root with its captions)")
    model = load_finetuned(checkpoint, map_location=device)
    hp = model.checkpoint_info["hyper_parameters"]
    audio_store = audio_store or (Path(hp["audio_store"]) if hp.get("audio_store") else None)
    clips = load_corpus(corpus, data_path, split).clips
    if audio_store is not None:
        table = open_store(audio_store, expect=store_expectation(model.audio_encoder.identity)).audio(split)
        table.require_complete()
        source: Any = StoreAudio(table, where=str(audio_store))
    else:
        source = LiveAudio(model.sample_rate, model.window_samples, model.max_seconds)
    keep, audio_rows = [], []
    with torch.inference_mode():
        for start in range(0, len(clips), batch_size):
            items = []
            for clip in clips[start:start + batch_size]:
                try:
                    items.append((clip, source(clip)))
                except ClipUnavailable as e:
                    log.warning("teacher %s: clip %s skipped (%s)", checkpoint, clip.clip_id, e)
            if not items:
                continue
            counts = [int(x.shape[0]) for _, x in items]
            values = torch.cat([x for _, x in items]).to(device)
            if source.kind == "windows":
                pooled = model.pooled_audio(values, counts)
            else:
                pooled = segment_mean(*pad_windows(values.float(), counts))
            audio_rows.append(model.project_audio(pooled).float().cpu())
            keep.extend(c for c, _ in items)
        captions = [cap for c in keep for cap in c.captions]
        caption_clip = np.array([i for i, c in enumerate(keep) for _ in c.captions], dtype=np.int64)
        text = torch.cat([model.embed_text(captions[i:i + batch_size]).float().cpu()
                          for i in range(0, len(captions), batch_size)])
    audio = torch.cat(audio_rows)
    identity = {"kind": "finetune", "checkpoint": str(checkpoint), "checkpoint_sha256": file_sha256(checkpoint),
                "embed_dim": int(audio.shape[1]),
                "encoders": {"audio": model.audio_encoder.identity, "text_model": hp.get("text_model") or
                             ("roberta-base" if hp.get("roberta_base") else "roberta-large")},
                "audio_source": str(audio_store) if audio_store else "decoded audio",
                "epoch": model.checkpoint_info.get("epoch"), "global_step": model.checkpoint_info.get("global_step"),
                "seed": hp.get("seed")}
    return TeacherOutput(identity, [c.clip_id for c in keep], captions, caption_clip, audio.numpy(), text.numpy(),
                         {"name": corpus, "root": str(data_path)})


# --------------------------------------------------------------------------- ensemble

def align(reference: TeacherOutput, other: TeacherOutput) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``other`` for the reference's clips and (clip, caption) keys; refuses missing keys."""
    clip_row = {c: i for i, c in enumerate(other.clip_ids)}
    cap_row = {(other.clip_ids[c], cap): j for j, (c, cap) in enumerate(zip(other.caption_clip.tolist(),
                                                                              other.captions))}
    keys = [(reference.clip_ids[c], cap) for c, cap in zip(reference.caption_clip.tolist(), reference.captions)]
    missing_clips = [c for c in reference.clip_ids if c not in clip_row]
    missing = [k for k in keys if k not in cap_row]
    if missing_clips or missing:
        raise TeacherMismatchError(
            f"teacher {other.identity['checkpoint']} lacks {len(missing_clips)} clips and {len(missing)} "
            f"captions of teacher {reference.identity['checkpoint']} (e.g. "
            f"{(missing_clips or [None])[0]!r}, {(missing or [None])[0]!r}): all teachers must see the same split")
    return (np.array([clip_row[c] for c in reference.clip_ids], dtype=np.int64),
            np.array([cap_row[k] for k in keys], dtype=np.int64))


def ensemble(outputs: Sequence[TeacherOutput], split: str) -> TeacherTargets:
    ref = outputs[0]
    audio, text = [ref.audio], [ref.text]
    for other in outputs[1:]:
        a_rows, t_rows = align(ref, other)
        audio.append(other.audio[a_rows])
        text.append(other.text[t_rows])
    return TeacherTargets(split=split, corpus=ref.corpus, clip_ids=ref.clip_ids, captions=ref.captions,
                          caption_clip=ref.caption_clip, teachers=[o.identity for o in outputs], audio=audio,
                          text=text)


def compute_teacher(checkpoint: Path, cfg: TeachersConfig) -> TeacherOutput:
    kind = checkpoint_kind(checkpoint)
    log.info("teacher %s (%s) over split %s", checkpoint, kind, cfg.split)
    if kind == "heads":
        return heads_teacher(checkpoint, cfg.store, cfg.split, device=cfg.device, batch_size=cfg.batch_size)
    return finetune_teacher(checkpoint, cfg.data_path, cfg.split, corpus=cfg.corpus, audio_store=cfg.audio_store,
                            device=cfg.device, batch_size=cfg.batch_size)


def run(cfg: TeachersConfig) -> Path:
    """Compute every teacher, write the artifact to ``cfg.out``; returns its path."""
    if not cfg.checkpoints:
        raise ValueError("--checkpoints: give at least one teacher checkpoint")
    if cfg.out.exists() and not cfg.overwrite:  # before hours of encoder time, not after
        raise FileExistsError(f"{cfg.out} exists: pass --overwrite to replace it, or choose another --out")
    targets = ensemble([compute_teacher(Path(c), cfg) for c in cfg.checkpoints], cfg.split)
    path = save_targets(cfg.out, targets, overwrite=cfg.overwrite)
    log.info("teachers artifact %s: %d teachers, %d clips, %d captions", path, targets.num_teachers,
             len(targets.clip_ids), len(targets.captions))
    return path


__all__ = ["TeacherOutput", "heads_teacher", "finetune_teacher", "align", "ensemble",
           "compute_teacher", "run"]
