"""AudioCaps through aac-datasets' metadata reader.

Layout (baseline: JKU ``AUDIOCAPS.zip``, mp3 at 32 kHz)::

    AUDIOCAPS/csv_files_v1/{train,val,test}.csv    (or AUDIOCAPS/{train,val,test}.csv)
    AUDIOCAPS/audio_32000Hz/{train,val,test}/<youtube_id>_<start_time>.mp3

Clips whose audio is not on disk (removed YouTube videos) are dropped, as the baseline does,
and counted in ``removed["not_on_disk"]``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._aac_compat import import_aac_datasets
from .base import Clip, CorpusError, CorpusSplit, warn_empty_captions
from .csvfile import read_csv_rows
from .durations import probe_durations

logger = logging.getLogger(__name__)

AUDIOCAPS_SPLITS = ("train", "val", "test")


def load_audiocaps(data_path: Path, split: str, *, download: bool = False, audio_format: str = "mp3",
                   sr: int = 32_000, version: str = "v1", durations: bool = False) -> CorpusSplit:
    if split not in AUDIOCAPS_SPLITS:
        raise CorpusError(f"audiocaps: unknown split {split!r}; expected one of {AUDIOCAPS_SPLITS}")
    import_aac_datasets()
    from aac_datasets.datasets.functional import audiocaps as f

    data_path = Path(data_path)
    if download:  # metadata only, like the baseline (audio comes from the JKU zip)
        data_path.mkdir(parents=True, exist_ok=True)
        f.download_audiocaps_dataset(str(data_path), split, download_audio=False, audio_format=audio_format,
                                     sr=sr, version=version)
    audio_dir = Path(f._get_audio_subset_dpath(str(data_path), split, sr, version))
    if not f._is_prepared_audiocaps(str(data_path), split, sr, audio_format, verbose=-1, version=version):
        captions = Path(f._get_captions_dpath(str(data_path), split, sr, version)) / f"{split}.csv"
        raise CorpusError(
            f"audiocaps {split}: not prepared under {data_path}: expected captions CSV {captions} "
            f"({'found' if captions.is_file() else 'missing'}) and {audio_format} files in {audio_dir} "
            f"({'no such folder' if not audio_dir.is_dir() else 'none found'}); "
            f"fix: extract the baseline's AUDIOCAPS.zip into {data_path} and pass --download "
            f"once to fetch the CSV metadata")
    captions_csv = Path(f._get_captions_dpath(str(data_path), split, sr, version)) / \
        f._AUDIOCAPS_LINKS[version][split]["captions"]["fname"]
    raw = read_audiocaps_csv(captions_csv, audio_format, audio_dir)
    keep = [i for i, on_disk in enumerate(raw["is_on_disk"]) if on_disk]
    removed = {"not_on_disk": len(raw["fname"]) - len(keep)} if len(keep) < len(raw["fname"]) else {}
    if removed:
        logger.info("audiocaps %s: %d of %d clips not on disk, skipped", split, removed["not_on_disk"],
                    len(raw["fname"]))
    paths = [audio_dir / raw["fname"][i] for i in keep]
    secs = probe_durations(paths) if durations else [None] * len(paths)
    clips = [Clip(clip_id=raw["fname"][i], path=p, captions=tuple(raw["captions"][i]), split=split,
                  dataset="audiocaps", duration=d) for i, p, d in zip(keep, paths, secs)]
    warn_empty_captions(f"audiocaps {split} ({captions_csv})", clips)
    return CorpusSplit(name="audiocaps", split=split, root=audio_dir, clips=clips, removed=removed)


def read_audiocaps_csv(path: Path, audio_format: str, audio_dir: Path) -> dict[str, list]:
    """aac-datasets' ``load_audiocaps_dataset`` fields (fname, captions, is_on_disk), one clip per
    ``<youtube_id>_<start_time>.<format>`` in first-seen order, its rows' captions in file order.

    Read here (UTF-8, a BOM stripped, columns checked) rather than by aac-datasets, which opens
    the file in the locale's encoding and fails with a KeyError on a BOM or a renamed column.
    """
    rows = read_csv_rows(path, ("youtube_id", "start_time", "caption"), "AudioCaps captions CSV")
    captions: dict[str, list[str]] = {}
    for r in rows:
        captions.setdefault(f"{r['youtube_id']}_{r['start_time']}.{audio_format}", []).append(r["caption"])
    on_disk = set(os.listdir(audio_dir)) if audio_dir.is_dir() else set()
    return {"fname": list(captions), "captions": list(captions.values()),
            "is_on_disk": [n in on_disk for n in captions]}
