"""The checkpoints of an ``evaluate``/``predict`` run, each embedding the split once, with a cache.

Each member reads the split where its kind can: a heads checkpoint from ``--store`` when one is given
(its stored features), anything else from raw audio (``--data-path`` corpus split, or predict's audio
folder + captions CSV: heads rebuild their encoders, finetune checkpoints embed end to end).

With an output folder, each member's embeddings are kept in ``<out>/embeddings/<sha256[:16]>-<input>/``
(``text.npy`` [Q, D] and ``audio.npy`` [A, D] float32, and ``embeddings.json``: the checkpoint's full
sha256, its kind, the input and split, the caption/audio ids and the audio files left out), so that
adding a model to an ensemble embeds only the new one. An entry is reused only when the checkpoint's
sha256, the input (paths, split, corpus, overrides) and a fingerprint of the split's listing (ids; a
store's encoder identity; each audio file's size and modification time) all match (audio is not
re-hashed). No pickle: ``np.load(allow_pickle=False)`` and JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioret.evaluate.ensemble import MemberSplit

log = logging.getLogger(__name__)

CACHE_DIR = "embeddings"
CACHE_FORMAT = "audioret-embeddings"
CACHE_VERSION = 1
META_FILE = "embeddings.json"
STORE_BATCH = 256  # store items are cheap to embed: larger batches than for raw audio


@dataclass(frozen=True)
class SplitInputs:
    """Where the members read the split from, and how raw audio is embedded."""

    store: Path | None = None
    data_path: Path | None = None
    corpus: str = "clotho"
    split: str = "eval"
    captions_csv: Path | None = None
    beats_ckpt: Path | None = None
    text_model: str | None = None
    batch_size: int = 16
    num_workers: int = 2
    device: str = "cpu"


@dataclass(frozen=True)
class Plan:
    """One member before it runs: checkpoint, kind, sha256 (None without a cache), input descriptor."""

    checkpoint: Path
    kind: str
    sha256: str | None
    input: dict[str, Any]


@dataclass
class Embedded:
    """One member over the split: ids and L2-normalised embeddings in row order."""

    plan: Plan
    captions: list[str]
    caption_fnames: list[str]
    audio_fnames: list[str]
    text: torch.Tensor  # [Q, D] float32
    audio: torch.Tensor  # [A, D] float32
    failures: dict[str, str] = field(default_factory=dict)  # audio file name -> why it was left out
    cached: bool = False

    @property
    def label(self) -> str:
        return f"{self.plan.checkpoint} ({describe_input(self.plan.input)})"

    def member_split(self) -> MemberSplit:
        return MemberSplit(self.label, self.captions, self.caption_fnames, self.audio_fnames)


def describe_input(desc: dict[str, Any]) -> str:
    if desc["input"] == "store":
        return f"store {desc['store']}, split {desc['split']}"
    if desc["corpus"] == "folder":
        return f"audio {desc['data_path']}, captions {desc['captions_csv']}"
    return f"{desc['corpus']} audio {desc['data_path']}, split {desc['split']}"


def member_input(checkpoint: Path, kind: str, inputs: SplitInputs) -> dict[str, Any]:
    """The input a member reads (heads: --store when given; otherwise raw audio), as a JSON-able key."""
    from audioret.evaluate.sources import HEADS

    if kind == HEADS and inputs.store is not None:
        return {"input": "store", "store": str(Path(inputs.store).resolve()), "split": inputs.split}
    if inputs.data_path is None:
        raise ValueError(f"{checkpoint}: a {kind} checkpoint embeds raw audio, not store features; give the "
                         "audio too (evaluate: --data-path DIR --corpus NAME; predict: --data-path DIR or "
                         "--audio-dir DIR --captions CSV)")
    csv = inputs.captions_csv
    return {"input": "audio", "data_path": str(Path(inputs.data_path).resolve()), "corpus": inputs.corpus,
            "split": inputs.split, "captions_csv": str(Path(csv).resolve()) if csv is not None else None,
            "text_model": inputs.text_model,
            "beats_ckpt": str(Path(inputs.beats_ckpt).resolve()) if inputs.beats_ckpt is not None else None}


def _cached_kind(root: Path | None, sha256: str | None) -> str | None:
    """The kind an earlier run recorded for this file (spares loading a checkpoint whose embeddings are kept)."""
    if root is None or sha256 is None:
        return None
    for meta in sorted(root.glob(f"{sha256[:16]}-*/{META_FILE}")):
        try:
            rec = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("sha256") == sha256 and isinstance(rec.get("kind"), str):
            return rec["kind"]
    return None


def plan_members(checkpoints: Sequence[Path], inputs: SplitInputs, cache_root: Path | None) -> list[Plan]:
    """Kind and input of every member, before any of them embeds (a wrong flag fails in seconds)."""
    from audioret.encoders.beats import file_sha256
    from audioret.evaluate.sources import checkpoint_kind

    plans = []
    for ckpt in map(Path, checkpoints):
        if not ckpt.is_file():
            checkpoint_kind(ckpt)  # its one-line "checkpoint not found" error
        sha = file_sha256(ckpt) if cache_root is not None else None
        kind = _cached_kind(cache_root, sha) or checkpoint_kind(ckpt)
        plans.append(Plan(ckpt, kind, sha, member_input(ckpt, kind, inputs)))
    return plans


def check_inputs_used(plans: Sequence[Plan], inputs: SplitInputs) -> None:
    """With both --store and raw audio, each must serve a member (heads read the store, the rest audio)."""
    if inputs.store is None or inputs.data_path is None:
        return
    used = {p.input["input"] for p in plans}
    if "audio" not in used:
        raise ValueError(f"--store {inputs.store} and --data-path {inputs.data_path}: every checkpoint is a heads "
                         "checkpoint and reads the store, so the audio would not be used; give only one of them")
    if "store" not in used:
        raise ValueError(f"--store {inputs.store}: no heads checkpoint among --checkpoint reads it (finetune "
                         "checkpoints embed raw audio from --data-path); leave --store out")


# --------------------------------------------------------------------------- computing

def _items(desc: dict[str, Any]):
    from audioret.evaluate.sources import items_from_corpus

    items = items_from_corpus(desc["corpus"], desc["data_path"], desc["split"], captions_csv=desc["captions_csv"])
    if not items.captions:
        where = desc["captions_csv"] or desc["data_path"]
        raise ValueError(f"{where}: no captions to rank in split {desc['split']!r}")
    return items


def split_listing(desc: dict[str, Any]) -> dict[str, Any]:
    """What the input lists now, cheaply (no model): a cache entry is valid only for the same listing."""
    if desc["input"] == "store":
        from audioret.evaluate.model import IDENTITY_KEYS
        from audioret.store import open_store

        st = open_store(desc["store"])
        audio, text = st.audio(desc["split"]), st.text(desc["split"])
        return {"identity": {k: st.metadata.get(k) for k in IDENTITY_KEYS}, "audio": list(audio.ids),
                "captions": list(text.ids), "clip_index": [int(c) for c in text.column("clip_index").tolist()],
                "written": store_written(st, desc["split"])}
    items = _items(desc)
    stats = [(p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None for p in map(Path, items.audio_paths)]
    return {"audio": list(items.audio_fnames), "files": stats, "captions": list(items.captions),
            "caption_fnames": list(items.caption_fnames or [])}


def store_written(st: Any, split: str) -> dict[str, Any]:
    """When the split's features were written and what their files hold: the store's creation time and
    every part record (each completed part lists its shard files with size and crc32c), so a store
    extracted again, or a part rewritten, with the same ids does not reuse embeddings of the old features."""
    out: dict[str, Any] = {"created": st.metadata.get("created")}
    for kind in ("audio", "text"):
        records = st.records(split, kind)
        out[kind] = [records.read_part(p) for p in range(st.plan_of(split, kind).num_parts)]
    return out


def listing_sha256(desc: dict[str, Any]) -> str:
    text = json.dumps(split_listing(desc), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compute_member(plan: Plan, inputs: SplitInputs) -> Embedded:
    """Load the member's model, embed every caption and audio of its input; the model is freed after."""
    from audioret.evaluate.model import embed_all, load_store_source
    from audioret.evaluate.sources import RawSource, load_raw_model

    desc = plan.input
    failures: dict[str, str] = {}
    if desc["input"] == "store":
        src = load_store_source(plan.checkpoint, desc["store"], desc["split"], device=inputs.device)
        batch = max(inputs.batch_size, STORE_BATCH)
    else:
        items = _items(desc)
        model = load_raw_model(plan.checkpoint, beats_ckpt=inputs.beats_ckpt, text_model=inputs.text_model,
                               device=inputs.device)
        src = RawSource(model, items, batch_size=inputs.batch_size, num_workers=inputs.num_workers).prepare()
        failures, batch = dict(src.failures), inputs.batch_size
    text = embed_all(src.embed_text, len(src.captions), batch)
    audio = embed_all(src.embed_audio, len(src.audio_fnames), batch)
    log.info("%s: embedded %d captions and %d audios (D=%d)", plan.checkpoint, len(text), len(audio),
             audio.shape[1])
    return Embedded(plan, list(src.captions), list(src.caption_fnames), list(src.audio_fnames), text, audio,
                    failures)


# --------------------------------------------------------------------------- the cache

def cache_root(out: str | Path | None, enabled: bool = True) -> Path | None:
    return Path(out) / CACHE_DIR if out is not None and enabled else None


def entry_dir(root: Path, plan: Plan) -> Path:
    """One folder per (checkpoint file, input): the same model over two inputs keeps both."""
    key = hashlib.sha256(json.dumps(plan.input, sort_keys=True).encode("utf-8")).hexdigest()[:8]
    return root / f"{plan.sha256[:16]}-{key}"


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Atomic .npy write. Serialised in memory first: ``np.save`` to a real file goes through
    ``ndarray.tofile``, whose short write on a full disk is an OSError without errno (not
    recognisable as ENOSPC); a plain ``write`` raises the real ENOSPC."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_entry(root: Path, emb: Embedded, listing: str) -> Path:
    """Arrays first, the JSON last (it marks the entry complete); an old entry's JSON goes first."""
    from audioret.config import atomic_write_text

    folder = entry_dir(root, emb.plan)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).unlink(missing_ok=True)
    _save_npy(folder / "text.npy", emb.text.numpy().astype(np.float32, copy=False))
    _save_npy(folder / "audio.npy", emb.audio.numpy().astype(np.float32, copy=False))
    meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "checkpoint": str(emb.plan.checkpoint),
            "sha256": emb.plan.sha256, "kind": emb.plan.kind, "input": emb.plan.input,
            "split": emb.plan.input["split"], "listing_sha256": listing,
            "text_shape": list(emb.text.shape), "audio_shape": list(emb.audio.shape),
            "captions": emb.captions, "caption_fnames": emb.caption_fnames, "audio_fnames": emb.audio_fnames,
            "failures": emb.failures}
    atomic_write_text(folder / META_FILE, json.dumps(meta, ensure_ascii=False) + "\n")
    return folder


def load_entry(root: Path, plan: Plan, listing: str) -> Embedded | None:
    """The kept embeddings of ``plan`` if the entry is complete and matches; else None (logged why)."""
    folder = entry_dir(root, plan)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        want = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "sha256": plan.sha256, "input": plan.input,
                "listing_sha256": listing}
        stale = [k for k, v in want.items() if meta.get(k) != v]
        if stale:
            log.info("%s: not reused (%s changed)", folder, ", ".join(stale))
            return None
        text = np.load(folder / "text.npy", allow_pickle=False)
        audio = np.load(folder / "audio.npy", allow_pickle=False)
    except (OSError, ValueError) as err:  # a damaged entry is recomputed, not an error
        log.warning("%s: unreadable cached embeddings (%s); recomputing", folder, err)
        return None
    if list(text.shape) != meta["text_shape"] or list(audio.shape) != meta["audio_shape"] \
            or len(meta["captions"]) != len(text) or len(meta["audio_fnames"]) != len(audio):
        log.warning("%s: cached embeddings do not match their record; recomputing", folder)
        return None
    log.info("%s: reusing the embeddings kept in %s", plan.checkpoint, folder)
    return Embedded(plan, meta["captions"], meta["caption_fnames"], meta["audio_fnames"],
                    torch.from_numpy(text), torch.from_numpy(audio), dict(meta.get("failures") or {}), cached=True)


def embed_member(plan: Plan, inputs: SplitInputs, root: Path | None) -> Embedded:
    """From the cache when it holds this member over this input, else computed (and kept)."""
    if root is None:
        return compute_member(plan, inputs)
    listing = listing_sha256(plan.input)
    emb = load_entry(root, plan, listing)
    if emb is None:
        emb = compute_member(plan, inputs)
        log.info("kept the embeddings of %s in %s", plan.checkpoint, save_entry(root, emb, listing))
    return emb


def embed_members(plans: Sequence[Plan], inputs: SplitInputs, root: Path | None) -> list[Embedded]:
    """Every member in order, one model in memory at a time."""
    return [embed_member(p, inputs, root) for p in plans]


def embed_ensemble(checkpoints: Sequence[Path], inputs: SplitInputs, root: Path | None) -> list[Embedded]:
    """Plan (flags checked before any model runs), embed (cached), and check that all rank the same split."""
    from audioret.evaluate.ensemble import check_agreement

    plans = plan_members(checkpoints, inputs, root)
    check_inputs_used(plans, inputs)
    embedded = embed_members(plans, inputs, root)
    check_agreement([e.member_split() for e in embedded])
    return embedded


def ensemble_block(embedded: Sequence[Embedded], weights: Sequence[float], device: str | None):
    """Score blocks of the weighted mean of the members' cosine scores (one member: its own blocks)."""
    from audioret.evaluate.ensemble import mean_block_fn
    from audioret.evaluate.metrics import embedding_blocks

    return mean_block_fn([embedding_blocks(e.text, e.audio, device)[0] for e in embedded], list(weights))


__all__ = ["CACHE_DIR", "Embedded", "Plan", "SplitInputs", "cache_root", "check_inputs_used", "compute_member",
           "describe_input", "embed_ensemble", "embed_member", "embed_members", "ensemble_block", "load_entry",
           "member_input", "plan_members", "save_entry"]
