"""WavCaps (FreeSound, BBC, SoundBible, AudioSet-SL) from aac-datasets' JSON metadata.

Layout (aac-datasets' ``WavCaps`` root, under ``data_path``)::

    WavCaps/json_files/<Source>/{fsd,bbc,sb,as}_final.json
    WavCaps/Audio/<Source>/<fname>.flac                (aac-datasets download)
    WavCaps_mp3/Audio/<Source>/<stem>.mp3              (the baseline's mp3 re-encode)

aac-datasets' own loader refuses a folder whose file count differs from the full release
(``_is_prepared_wavcaps``), which rules out partial copies and the baseline's mp3 tree; so the
JSON files are read with aac-datasets' reader and path helpers and missing files are reported
here. ``clip_id`` is the ``fname`` aac-datasets reports (``<id>.flac``) whatever the audio format.
FreeSound drops the DCASE 2025 excluded ids, AudioSet-SL the six broken files (``removed``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ._aac_compat import import_aac_datasets
from .base import Clip, CorpusError, CorpusSplit, log_removed, missing_paths, missing_report
from .exclusion import BROKEN_AUDIOSET_STEMS, exclude_by_stem, excluded_freesound_ids

logger = logging.getLogger(__name__)

# corpus-name suffix -> (aac-datasets source folder, JSON file name)
WAVCAPS_SOURCES: dict[str, tuple[str, str]] = {
    "freesound": ("FreeSound", "fsd_final.json"),
    "bbc": ("BBC_Sound_Effects", "bbc_final.json"),
    "soundbible": ("SoundBible", "sb_final.json"),
    "audioset": ("AudioSet_SL", "as_final.json"),
}


def wavcaps_fname(source: str, raw_id: str) -> str:
    """File name aac-datasets gives an item: AudioSet ids carry ``.wav``, the others nothing."""
    raw_id = str(raw_id)
    return raw_id.replace(".wav", ".flac") if source == "AudioSet_SL" else f"{raw_id}.flac"


def apply_dcase_exclusions(subset: str, clips: list[Clip]) -> tuple[list[Clip], dict[str, int]]:
    """FreeSound: drop excluded Freesound ids; AudioSet: drop broken files; by file stem, as strings."""
    if subset == "freesound":
        kept, n = exclude_by_stem(clips, [c.clip_id for c in clips], excluded_freesound_ids())
        return kept, {"dcase2025_excluded_freesound_ids": n}
    if subset == "audioset":
        kept, n = exclude_by_stem(clips, [c.clip_id for c in clips], BROKEN_AUDIOSET_STEMS)
        return kept, {"broken_audioset_files": n}
    return clips, {}


def load_wavcaps(data_path: Path, subset: str, *, split: str = "train", download: bool = False,
                 audio_format: str = "auto", allow_missing: bool = False) -> CorpusSplit:
    """One WavCaps source as a corpus split (``split`` is a label: WavCaps is training data)."""
    if subset not in WAVCAPS_SOURCES:
        raise CorpusError(f"wavcaps: unknown subset {subset!r}; expected one of {tuple(WAVCAPS_SOURCES)}")
    import_aac_datasets()
    from aac_datasets.datasets.functional import wavcaps as f

    data_path = Path(data_path)
    source, json_name = WAVCAPS_SOURCES[subset]
    if download:
        data_path.mkdir(parents=True, exist_ok=True)
        f.download_wavcaps_dataset(str(data_path), subset)
    json_path = Path(f._get_json_dpath(str(data_path), None, None)) / source / json_name
    if not json_path.is_file():
        raise CorpusError(f"wavcaps-{subset}: metadata {json_path} is missing; fix: point --data-path at the "
                          f"folder holding WavCaps/json_files, or pass --download")
    data, size = _read_json(f, json_path)
    flac_dir = Path(f._get_audio_subset_dpath(str(data_path), None, None, source))
    audio_dir, ext = _audio_location(data_path, flac_dir, audio_format)
    clips = []
    for i in range(size):
        fname = wavcaps_fname(source, data["id"][i])
        name = fname if ext == ".flac" else fname.rsplit(".", 1)[0] + ext
        duration = data.get("duration", [None] * size)[i]
        clips.append(Clip(clip_id=fname, path=audio_dir / name, captions=(str(data["caption"][i]),),
                          split=split, dataset=f"wavcaps-{subset}",
                          duration=None if duration is None else float(duration)))
    before = len(clips)
    clips, removed = apply_dcase_exclusions(subset, clips)
    clips, removed = _handle_missing(subset, clips, removed, allow_missing, audio_dir)
    log_removed(f"wavcaps-{subset}", removed, before)
    return CorpusSplit(name=f"wavcaps-{subset}", split=split, root=audio_dir, clips=clips, removed=removed)


def _read_json(f, json_path: Path) -> tuple[dict, int]:
    """aac-datasets' JSON reader, its faults (not JSON, not UTF-8, no ``data`` list) as one line."""
    try:
        data, size = f._load_json(str(json_path))
        if size and not {"id", "caption"} <= set(data):
            raise KeyError("id/caption")
        return data, size
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise CorpusError(f"{json_path}: not a WavCaps metadata file ({type(err).__name__}: {err}); "
                          f"expected UTF-8 JSON {{\"data\": [{{\"id\": ..., \"caption\": ...}}, ...]}}: "
                          f"download it again with --download") from None


def _audio_location(data_path: Path, flac_dir: Path, audio_format: str) -> tuple[Path, str]:
    """(folder, extension): aac-datasets' flac tree, or the baseline's ``WavCaps_mp3`` mirror."""
    rel = flac_dir.relative_to(data_path)
    mp3_dir = data_path / Path("WavCaps_mp3", *rel.parts[1:])
    if audio_format == "flac" or (audio_format == "auto" and flac_dir.is_dir()):
        return flac_dir, ".flac"
    if audio_format in ("mp3", "auto"):
        return mp3_dir, ".mp3"
    raise CorpusError(f"wavcaps: audio_format must be auto, flac or mp3, got {audio_format!r}")


def _handle_missing(subset: str, clips: list[Clip], removed: dict[str, int], allow_missing: bool,
                    audio_dir: Path) -> tuple[list[Clip], dict[str, int]]:
    missing = missing_paths(c.path for c in clips)
    if not missing:
        return clips, removed
    if not allow_missing:
        raise CorpusError(missing_report(
            f"wavcaps-{subset} ({audio_dir})", missing, len(clips),
            "fix: extract the WavCaps audio there (--download, or the baseline's WavCaps_mp3 archive); "
            "`audioret corpus list` counts the absent files"))
    gone = set(missing)
    return [c for c in clips if c.path not in gone], {**removed, "missing_audio": len(gone)}
