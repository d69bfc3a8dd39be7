"""What train_heads and finetune call for stage 2 (kept here so their edits stay one line each).

- ``teacher_for_reader(path, reader, store_info)``: train_heads' training split reader -> ``BoundTeacher``
  whose rows are the reader's clip rows and caption rows (``TrainBatch.caption_clip`` / ``caption_index``).
- ``teacher_for_pairs(path, clip_ids, captions, caption_clip)``: finetune's flat (clip, caption) items ->
  ``BoundTeacher`` whose rows are the dataset's clip indices and item indices (``TrainBatch.clip``/``index``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .artifact import BoundTeacher, load_targets


def reader_keys(reader: Any) -> tuple[list[str], list[str], torch.Tensor]:
    """(clip ids, captions, caption -> clip row) of a train_heads ``SplitReader`` (memory or streaming:
    both expose ``clip_ids``, ``captions`` and ``caption_clip``)."""
    return list(reader.clip_ids), list(reader.captions), reader.caption_clip.cpu()


def teacher_for_reader(path: str | Path, reader: Any, store_info: dict[str, Any] | None = None) -> BoundTeacher:
    clip_ids, captions, caption_clip = reader_keys(reader)
    store_info = store_info or {}
    corpus = (store_info.get("metadata") or {}).get("corpus")
    return load_targets(path).bind(clip_ids, captions, caption_clip, split=reader.name, corpus=corpus,
                                   where=f"the training split {reader.name!r} of {store_info.get('path', 'the store')}")


def teacher_for_pairs(path: str | Path, clip_ids: Sequence[str], captions: Sequence[str],
                      caption_clip: Sequence[int] | np.ndarray, *, split: str = "dev",
                      corpus: str | None = "clotho") -> BoundTeacher:
    return load_targets(path).bind(list(clip_ids), list(captions), list(map(int, caption_clip)), split=split,
                                   corpus={"name": corpus} if corpus else None,
                                   where=f"finetune's training data ({corpus} {split})")


__all__ = ["reader_keys", "teacher_for_reader", "teacher_for_pairs"]
