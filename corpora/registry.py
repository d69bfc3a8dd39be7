"""``load_corpus(name, data_path, split)``: one entry point for every supported corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import CorpusError, CorpusSplit

_NAMES = ("clotho", "audiocaps", "wavcaps-freesound", "wavcaps-bbc", "wavcaps-soundbible",
          "wavcaps-audioset", "folder")


def corpus_names() -> list[str]:
    return list(_NAMES)


def load_corpus(name: str, data_path: str | Path, split: str, *, download: bool = False,
                **kw: Any) -> CorpusSplit:
    """Load ``split`` of corpus ``name`` from ``data_path``.

    clotho: splits dev/val/eval; kw durations=True, allow_missing=False.
    audiocaps: splits train/val/test; kw audio_format="mp3", sr=32000, version="v1", durations=False.
    wavcaps-<freesound|bbc|soundbible|audioset>: split is a label (train); kw audio_format="auto",
        allow_missing=False; DCASE exclusions applied (counts in ``removed``).
    folder: data_path = folder of audio; kw captions_csv (CSV with a ``caption`` column), durations.
    Without ``download`` nothing is fetched; missing data raises ``CorpusError`` with counts,
    examples and the fix.
    """
    data_path = Path(data_path)
    if name == "clotho":
        from .clotho import load_clotho
        return load_clotho(data_path, split, download=download, **kw)
    if name == "audiocaps":
        from .audiocaps import load_audiocaps
        return load_audiocaps(data_path, split, download=download, **kw)
    if name.startswith("wavcaps-") and name in _NAMES:
        from .wavcaps import load_wavcaps
        return load_wavcaps(data_path, name.split("-", 1)[1], split=split, download=download, **kw)
    if name == "folder":
        if download:
            raise CorpusError("folder corpus: nothing to download; pass a folder of audio files")
        from .folder import load_folder
        return load_folder(data_path, split, **kw)
    raise CorpusError(f"unknown corpus {name!r}; expected one of {', '.join(_NAMES)}")
