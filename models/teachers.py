"""The teachers artifact of ``audioret distill``: every teacher's caption and audio embeddings over one
training split, computed once (``audioret distill teachers``) and looked up batch by batch in stage 2.

Layout (a folder; format ``audioret-teachers`` version 1)::

    <out>/meta.json         {"format", "format_version", "split", "corpus", "num_clips", "num_captions",
                             "teachers": [identity, ...], "audioret_version", "created"}
                            identity: {"kind": "heads"|"finetune", "checkpoint", "checkpoint_sha256",
                                       "embed_dim", "store"/"encoders" (what the teacher reads), ...}
    <out>/keys.json         {"clip_ids": [...], "captions": [...], "caption_clip": [...]}
                            caption row j is (clip_ids[caption_clip[j]], captions[j])
    <out>/audio_<m>.npy     [num_clips, E_m] float32, teacher m's L2-normalised audio embeddings
    <out>/text_<m>.npy      [num_captions, E_m] float32, its L2-normalised caption embeddings
    <out>/COMPLETE          written last (JSON: file sizes); a folder without it is not an artifact

Written into ``.<name>.tmp-<pid>`` next to ``<out>`` and renamed into place once complete, so a
crash never leaves a half artifact under the final name. Keys: audio by clip id (the store's / corpus's
file name), captions by (clip id, raw caption), as the paper keys by audio path and caption string.
Teachers may have different embedding widths; they only meet through their cosine similarities.

An artifact like the feature store, so it sits below the training stages: train_heads and finetune
read it here (``teacher_for_reader`` / ``teacher_for_pairs``), ``audioret.distill`` (stage 1 -> teachers
-> stage 2) writes it and sits on top. Imports nothing of the stages.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

FORMAT = "audioret-teachers"
FORMAT_VERSION = 1
MARKER = "COMPLETE"


class TeacherMismatchError(ValueError):
    """The teachers artifact does not cover the student's training data (split, corpus or items)."""


@dataclass
class TeacherTargets:
    """All teachers' embeddings in key order (see module docstring); ``audio[m]`` / ``text[m]`` per teacher."""

    split: str
    corpus: dict[str, Any]
    clip_ids: list[str]
    captions: list[str]
    caption_clip: np.ndarray  # [N_captions] int64, row into clip_ids
    teachers: list[dict[str, Any]]  # identities
    audio: list[np.ndarray]  # [N_clips, E_m] float32 unit rows
    text: list[np.ndarray]  # [N_captions, E_m]
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.teachers) == len(self.audio) == len(self.text)) or not self.teachers:
            raise ValueError(f"teachers artifact: {len(self.teachers)} identities, {len(self.audio)} audio and "
                             f"{len(self.text)} text arrays; expected one of each per teacher (>= 1)")
        for m, (a, t) in enumerate(zip(self.audio, self.text)):
            if a.shape != (len(self.clip_ids), t.shape[1]) or t.shape[0] != len(self.captions):
                raise ValueError(f"teachers artifact {self.path or ''}: teacher {m} arrays audio {a.shape} / "
                                 f"text {t.shape} do not fit {len(self.clip_ids)} clips x {len(self.captions)} "
                                 "captions with one embedding width")

    @property
    def num_teachers(self) -> int:
        return len(self.teachers)

    def meta(self) -> dict[str, Any]:
        from audioret import __version__

        return {"format": FORMAT, "format_version": FORMAT_VERSION, "split": self.split, "corpus": self.corpus,
                "num_clips": len(self.clip_ids), "num_captions": len(self.captions), "teachers": self.teachers,
                "audioret_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **self.extra}

    def bind(self, clip_ids: Sequence[str], captions: Sequence[str], caption_clip: Sequence[int] | Tensor, *,
             split: str, corpus: dict[str, Any] | None = None, where: str = "the training split") -> "BoundTeacher":
        """Teacher rows re-ordered to a student's split (its clip rows and caption rows).

        Refuses (``TeacherMismatchError`` naming both sides) another split name, another corpus name
        (when both sides know it), or any student (clip, caption) the teachers never saw."""
        src = str(self.path or "teachers artifact")
        if split != self.split:
            raise TeacherMismatchError(
                f"{src} was computed on split {self.split!r} (corpus {self.corpus.get('name', '?')}), but "
                f"{where} is split {split!r}: recompute with `audioret distill teachers --split {split}` or "
                f"train on {self.split!r}")
        mine, theirs = (corpus or {}).get("name"), self.corpus.get("name")
        if mine and theirs and mine != theirs:
            raise TeacherMismatchError(f"{src} was computed on corpus {theirs!r} split {self.split!r}, but {where} "
                                       f"is corpus {mine!r} split {split!r}: compute the teachers on this corpus")
        clip_row = {c: i for i, c in enumerate(self.clip_ids)}
        cap_row = {(self.clip_ids[c], cap): j for j, (c, cap) in enumerate(zip(self.caption_clip.tolist(),
                                                                                   self.captions))}
        student_clip = [int(c) for c in (caption_clip.tolist() if isinstance(caption_clip, Tensor) else caption_clip)]
        keys = [(clip_ids[c], cap) for c, cap in zip(student_clip, captions)]
        missing = [k for k in keys if k not in cap_row]
        if missing:
            raise TeacherMismatchError(
                f"{src} (split {self.split!r}, {len(self.captions)} captions) lacks {len(missing)} of the "
                f"{len(keys)} (clip, caption) pairs of {where} (split {split!r}), e.g. {missing[0]!r}: the "
                "teachers were computed on other data; recompute them on this split")
        audio_rows = np.array([clip_row.get(c, -1) for c in clip_ids], dtype=np.int64)  # -1: clip unused
        text_rows = np.array([cap_row[k] for k in keys], dtype=np.int64)
        audio = [torch.from_numpy(a[np.maximum(audio_rows, 0)] * (audio_rows >= 0)[:, None]) for a in self.audio]
        text = [torch.from_numpy(t[text_rows]) for t in self.text]
        return BoundTeacher(audio, text)


class BoundTeacher:
    """Teachers aligned to a student's split: ``similarity(clip_rows, caption_rows)`` -> [Ba, Bt] mean cosine.

    Held by the training module as a plain attribute (not a buffer: it never enters a checkpoint).
    The arrays move to the device of the first query and stay there.
    """

    def __init__(self, audio: list[Tensor], text: list[Tensor]):
        self.audio, self.text = audio, text  # per teacher [N_clips, E_m], [N_captions, E_m]

    @property
    def num_teachers(self) -> int:
        return len(self.audio)

    def to(self, device: torch.device | str) -> "BoundTeacher":
        if self.audio[0].device != torch.device(device):
            self.audio = [a.to(device) for a in self.audio]
            self.text = [t.to(device) for t in self.text]
        return self

    def similarity(self, clip_rows: Tensor, caption_rows: Tensor) -> Tensor:
        """clip_rows [Ba], caption_rows [Bt] (student split rows) -> mean teacher cosine [Ba, Bt] fp32."""
        self.to(clip_rows.device)
        sims = [a[clip_rows] @ t[caption_rows].T for a, t in zip(self.audio, self.text)]
        return torch.stack(sims).mean(0)


# --------------------------------------------------------------------------- files

def _tmp_dir(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


def save_targets(path: str | Path, targets: TeacherTargets, *, overwrite: bool = False) -> Path:
    """Write the artifact atomically (temp folder, ``COMPLETE`` last, rename). Refuses to replace an
    existing artifact unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: pass --overwrite to replace it, or choose another --out")
    tmp = _tmp_dir(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "meta.json").write_text(json.dumps(targets.meta(), indent=2, default=str) + "\n")
    (tmp / "keys.json").write_text(json.dumps({"clip_ids": targets.clip_ids, "captions": targets.captions,
                                               "caption_clip": targets.caption_clip.tolist()}) + "\n")
    for m, (a, t) in enumerate(zip(targets.audio, targets.text)):
        np.save(tmp / f"audio_{m}.npy", np.ascontiguousarray(a, dtype=np.float32))
        np.save(tmp / f"text_{m}.npy", np.ascontiguousarray(t, dtype=np.float32))
    sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    with open(tmp / MARKER, "w") as f:
        f.write(json.dumps({"files": sizes}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    targets.path = path
    return path


def load_targets(path: str | Path) -> TeacherTargets:
    """Read an artifact; clear errors for a missing folder, an unfinished write, another format/version."""
    path = Path(path)
    if not (path / "meta.json").is_file():
        raise FileNotFoundError(f"{path}: no teachers artifact (expected meta.json written by "
                                f"`audioret distill teachers --out {path}`)")
    if not (path / MARKER).is_file():
        raise ValueError(f"{path}: incomplete teachers artifact (no {MARKER} marker: the write did not "
                         "finish); rerun `audioret distill teachers --overwrite`")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format {meta.get('format')!r} version {meta.get('format_version')!r}, "
                         f"this audioret reads {FORMAT!r} version {FORMAT_VERSION}; recompute the teachers")
    sizes = json.loads((path / MARKER).read_text()).get("files", {})
    for name, size in sizes.items():
        if not (path / name).is_file() or (path / name).stat().st_size != size:
            raise ValueError(f"{path}: {name} is missing or has another size than when written ({size} bytes); "
                             "the artifact is damaged: recompute it with --overwrite")
    keys = json.loads((path / "keys.json").read_text())
    n = len(meta["teachers"])
    known = {"format", "format_version", "split", "corpus", "num_clips", "num_captions", "teachers",
             "audioret_version", "created"}
    return TeacherTargets(
        split=meta["split"], corpus=meta.get("corpus") or {}, clip_ids=keys["clip_ids"], captions=keys["captions"],
        caption_clip=np.asarray(keys["caption_clip"], dtype=np.int64), teachers=meta["teachers"],
        audio=[np.load(path / f"audio_{m}.npy") for m in range(n)],
        text=[np.load(path / f"text_{m}.npy") for m in range(n)], path=path,
        extra={k: v for k, v in meta.items() if k not in known})


# --------------------------------------------------------------------------- stage 2 lookups

def reader_keys(reader: Any) -> tuple[list[str], list[str], torch.Tensor]:
    """(clip ids, captions, caption -> clip row) of a train_heads ``SplitReader`` (memory or streaming:
    both expose ``clip_ids``, ``captions`` and ``caption_clip``)."""
    return list(reader.clip_ids), list(reader.captions), reader.caption_clip.cpu()


def teacher_for_reader(path: str | Path, reader: Any, store_info: dict[str, Any] | None = None) -> BoundTeacher:
    """train_heads' training split reader -> teachers whose rows are the reader's clip rows and caption rows
    (``TrainBatch.caption_clip`` / ``caption_index``)."""
    clip_ids, captions, caption_clip = reader_keys(reader)
    store_info = store_info or {}
    corpus = (store_info.get("metadata") or {}).get("corpus")
    return load_targets(path).bind(clip_ids, captions, caption_clip, split=reader.name, corpus=corpus,
                                   where=f"the training split {reader.name!r} of {store_info.get('path', 'the store')}")


def teacher_for_pairs(path: str | Path, clip_ids: Sequence[str], captions: Sequence[str],
                      caption_clip: Sequence[int] | np.ndarray, *, split: str = "dev",
                      corpus: str | None = "clotho") -> BoundTeacher:
    """finetune's flat (clip, caption) items -> teachers whose rows are the dataset's clip indices and item
    indices (``TrainBatch.clip`` / ``index``)."""
    return load_targets(path).bind(list(clip_ids), list(captions), list(map(int, caption_clip)), split=split,
                                   corpus={"name": corpus} if corpus else None,
                                   where=f"finetune's training data ({corpus} {split})")


__all__ = ["FORMAT", "FORMAT_VERSION", "MARKER", "TeacherTargets", "BoundTeacher", "TeacherMismatchError",
           "save_targets", "load_targets", "reader_keys", "teacher_for_reader", "teacher_for_pairs"]
