"""Clotho v2.1 (dev/val/eval) through aac-datasets' metadata reader (never its audio loader).

Layout (under ``data_path``)::

    CLOTHO_v2.1/clotho_csv_files/clotho_captions_{development,validation,evaluation}.csv
    CLOTHO_v2.1/clotho_csv_files/clotho_metadata_{development,validation,evaluation}.csv
    CLOTHO_v2.1/clotho_audio_files/{development,validation,evaluation}/<file_name>.wav
"""

from __future__ import annotations

import logging
from pathlib import Path

from ._aac_compat import import_aac_datasets
from .base import Clip, CorpusError, CorpusSplit, missing_paths, missing_report, warn_empty_captions
from .csvfile import read_csv_rows, refuse_duplicates
from .durations import probe_durations

logger = logging.getLogger(__name__)

CLOTHO_SPLITS = ("dev", "val", "eval")
CLOTHO_VERSION = "v2.1"


def _functional():
    import_aac_datasets()
    from aac_datasets.datasets.functional import clotho

    return clotho


def clotho_paths(data_path: Path, split: str) -> tuple[Path, Path, Path]:
    """(captions CSV, metadata CSV, audio folder) of a split, as aac-datasets lays them out."""
    f = _functional()
    links = f._CLOTHO_LINKS[CLOTHO_VERSION][split]
    csv_dir = Path(f._get_csv_dpath(str(data_path), CLOTHO_VERSION))
    audio_dir = Path(f._get_audio_subset_dpath(str(data_path), CLOTHO_VERSION, split))
    return csv_dir / links["captions"]["fname"], csv_dir / links["metadata"]["fname"], audio_dir


def load_clotho(data_path: Path, split: str, *, download: bool = False, durations: bool = True,
                allow_missing: bool = False, keep_missing: bool = False) -> CorpusSplit:
    """Clips of Clotho v2.1 ``split`` (5 captions each, ``clip_id`` = aac-datasets ``fname``).

    Missing audio files raise ``CorpusError`` (with counts and examples); ``allow_missing`` drops
    them instead, and ``keep_missing`` keeps them listed (``duration`` None) so that a consumer
    such as ``extract`` records each one as a failed item with its reason.
    """
    allow_missing = allow_missing or keep_missing
    if split not in CLOTHO_SPLITS:
        raise CorpusError(f"clotho: unknown split {split!r}; expected one of {CLOTHO_SPLITS}")
    data_path = Path(data_path)
    f = _functional()
    if download:
        data_path.mkdir(parents=True, exist_ok=True)
        f.download_clotho_dataset(str(data_path), split, clean_archives=False, verify_files=True,
                                  version=CLOTHO_VERSION)
    captions_csv, metadata_csv, audio_dir = clotho_paths(data_path, split)
    raw = _check_prepared(data_path, split, captions_csv, metadata_csv, audio_dir, allow_missing)
    paths = [audio_dir / name for name in raw["fname"]]
    removed: dict[str, int] = {}
    keep = list(range(len(paths)))
    if allow_missing and not keep_missing:
        gone = set(missing_paths(paths))
        keep = [i for i in keep if paths[i] not in gone]
        if gone:
            removed["missing_audio"] = len(gone)
            logger.warning("clotho %s: %d of %d audio files missing, skipped", split, len(gone), len(paths))
    if keep_missing:
        gone = missing_paths(paths)
        if gone:
            logger.warning("clotho %s: %d of %d audio files missing, kept listed (e.g. %s)", split,
                           len(gone), len(paths), gone[0])
    secs = probe_durations([paths[i] for i in keep]) if durations else [None] * len(keep)
    clips = [Clip(clip_id=raw["fname"][i], path=paths[i], captions=tuple(raw["captions"][i]),
                  split=split, dataset="clotho", duration=d) for i, d in zip(keep, secs)]
    warn_empty_captions(f"clotho {split} ({captions_csv})", clips)
    return CorpusSplit(name="clotho", split=split, root=audio_dir, clips=clips, removed=removed)


def read_clotho_captions_csv(path: Path) -> dict[str, list]:
    """``{"fname": [...], "captions": [[5 captions], ...]}`` in CSV order (aac-datasets' keys).

    Read here rather than by aac-datasets, which opens the file in the locale's encoding (a BOM
    breaks the ``file_name`` key) and turns a repeated ``file_name`` into two clips with one id,
    the first one without captions.
    """
    keys = _functional()._CAPTIONS_KEYS
    rows = read_csv_rows(path, ("file_name", *keys), "Clotho captions CSV")
    names = [r["file_name"] for r in rows]
    refuse_duplicates(path, names, "file_name", "Clotho captions CSV", lines=rows.lines)
    return {"fname": names, "captions": [[r[k] for k in keys] for r in rows]}


def _check_prepared(data_path: Path, split: str, captions_csv: Path, metadata_csv: Path,
                    audio_dir: Path, allow_missing: bool) -> dict[str, list]:
    """The split's captions (``read_clotho_captions_csv``) once its files are found complete."""
    fix = (f"fix: point --data-path at the folder that holds CLOTHO_{CLOTHO_VERSION}/, pass --download to "
           f"fetch Clotho {CLOTHO_VERSION} into {data_path}, or write a synthetic corpus there with "
           f"`audioret corpus synth --out {data_path}`")
    absent = [p for p in (captions_csv, metadata_csv) if not p.is_file()]
    if absent:
        raise CorpusError(f"clotho {split}: missing metadata file(s) {', '.join(map(str, absent))}; {fix}")
    raw = read_clotho_captions_csv(captions_csv)
    names = raw["fname"]
    paths = [audio_dir / n for n in names]
    missing = missing_paths(paths)
    if missing and not allow_missing:
        raise CorpusError(missing_report(f"clotho {split} ({audio_dir})", missing, len(paths),
                                         fix))
    extra = sorted(set(p.name for p in audio_dir.iterdir()) - set(names)) if audio_dir.is_dir() else []
    if extra and not allow_missing:
        raise CorpusError(f"clotho {split}: {len(extra)} file(s) in {audio_dir} are not listed in "
                          f"{captions_csv.name} (aac-datasets requires the folder to match the CSV), "
                          f"e.g. {extra[:3]}; move them out of the folder")
    return raw
