"""Configs of the ``audioret corpus`` subcommands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audioret.config import option

from .synth import SynthConfig

CorpusName = Literal["clotho", "audiocaps", "wavcaps-freesound", "wavcaps-bbc", "wavcaps-soundbible",
                     "wavcaps-audioset", "folder"]


@dataclass
class ListConfig:
    """Summarise one split of a corpus: clips, captions, total duration, missing files, removals."""

    STAGE = "corpus list"  # recorded in saved configs (audioret.config.to_dict); not a field

    data_path: Path = option(help="corpus root (holds CLOTHO_v2.1/, AUDIOCAPS/, WavCaps/; or the audio folder)")
    corpus: CorpusName = option("clotho", "corpus name")
    split: str = option("dev", "split (clotho: dev/val/eval; audiocaps: train/val/test; wavcaps: train)")
    captions_csv: Path | None = option(None, "folder corpus only: CSV with a 'caption' column")
    download: bool = option(False, "fetch missing data through aac-datasets first")
    allow_missing: bool = option(True, "count missing audio files instead of failing (not for audiocaps/folder)")


__all__ = ["SynthConfig", "ListConfig"]
