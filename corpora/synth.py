"""A seeded synthetic corpus in the exact Clotho v2.1 on-disk layout.

``synthesize(out)`` writes (``<split-dir>`` = development / validation / evaluation)::

    out/CLOTHO_v2.1/clotho_audio_files/<split-dir>/<file_name>.wav     44.1 kHz mono PCM16
    out/CLOTHO_v2.1/clotho_csv_files/clotho_captions_<split-dir>.csv   file_name,caption_1..caption_5
    out/CLOTHO_v2.1/clotho_csv_files/clotho_metadata_<split-dir>.csv   file_name,keywords,sound_id,
                                                  sound_link,start_end_samples,manufacturer,license
    out/metadata_eval.csv          multi-match annotations for eval: query,audio_filenames
                                   (a Python-literal list, single quotes), one row per distinct caption
    out/synth_attributes.json      per split and file: the attributes each clip was rendered from
    out/synth_config.json          the SynthConfig used (marks the folder as ours for --overwrite)

so ``load_corpus("clotho", out, split)`` (and aac-datasets' ``Clotho(root=out)``) reads it
unchanged. Each clip has a source (tone / chirp / noise burst / click train / hum), a pitch
(low / high), events (one / two / three / repeating), loudness (rising / falling / steady) and
a background (silence / noise / hum); its five captions paraphrase a subset of them. A query's
relevant eval clips are all those whose attributes satisfy everything the caption states.
Clip ``i`` of a split depends only on (seed, split, i): growing a split keeps earlier clips.
File names include spaces, commas and HTML entities (``&amp;``, ``&#39;``) like real Clotho.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from audioret.config import atomic_write_text, option, to_dict

from .base import CorpusError
from .synth_captions import clip_captions, satisfies
from .synth_sounds import BACKGROUNDS, EVENTS, LOUDNESS, PITCHES, SOURCES, render_clip

logger = logging.getLogger(__name__)

SAMPLE_RATE = 44_100
SPLIT_DIRS = {"dev": "development", "val": "validation", "eval": "evaluation"}
_SPLIT_SEED = {"dev": 0, "val": 1, "eval": 2}
CAPTION_COLUMNS = ("file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5")
METADATA_COLUMNS = ("file_name", "keywords", "sound_id", "sound_link", "start_end_samples",
                    "manufacturer", "license")
MARKER = "synth_config.json"


@dataclass
class SynthConfig:
    """Write a seeded synthetic corpus in the Clotho v2.1 layout (dev/val/eval + multi-match CSV)."""

    STAGE = "corpus synth"  # recorded in saved configs (audioret.config.to_dict); not a field

    out: Path = option(help="output folder (the corpus's --data-path; CLOTHO_v2.1/ goes inside)")
    n_dev: int = option(120, "clips in the dev (training) split", unit="clips")
    n_val: int = option(40, "clips in the val split", unit="clips")
    n_eval: int = option(40, "clips in the eval split (multi-match annotated)", unit="clips")
    seed: int = option(0, "random seed; the corpus is a pure function of the config")
    min_duration: float = option(2.0, "shortest clip", unit="s")
    max_duration: float = option(8.0, "longest regular clip", unit="s")
    long_fraction: float = option(0.0, "fraction of clips drawn from the long range instead "
                                       "(exercises multi-window paths)", unit="fraction 0-1")
    long_min_duration: float = option(10.5, "shortest long clip", unit="s")
    long_max_duration: float = option(16.0, "longest long clip", unit="s")
    overwrite: bool = option(False, "replace an existing synthetic corpus in --out")


def multi_match_annotations_path(root: str | Path) -> Path:
    """Where ``synthesize(root)`` writes the eval multi-match annotations (query, audio_filenames)."""
    return Path(root) / "metadata_eval.csv"


def attributes_path(root: str | Path) -> Path:
    return Path(root) / "synth_attributes.json"


def clip_file_name(split: str, index: int) -> str:
    """Mostly plain names; every 10th has a comma and spaces, every 10th (+5) HTML entities."""
    if index % 10 == 3:
        return f"synth {split} {index:04d}, take 2.wav"
    if index % 10 == 8:
        return f"synth_{split}_{index:04d} rock &amp; roll &#39;live&#39;.wav"
    return f"synth_{split}_{index:04d}.wav"


def draw_attributes(rng: np.random.Generator) -> dict[str, str]:
    choose = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    return {"source": choose(SOURCES), "pitch": choose(PITCHES), "events": choose(EVENTS),
            "loudness": choose(LOUDNESS), "background": choose(BACKGROUNDS)}


def draw_duration(cfg: SynthConfig, rng: np.random.Generator) -> float:
    if rng.uniform() < cfg.long_fraction:
        return round(float(rng.uniform(cfg.long_min_duration, cfg.long_max_duration)), 3)
    return round(float(rng.uniform(cfg.min_duration, cfg.max_duration)), 3)


@dataclass(frozen=True)
class SynthClip:
    file_name: str
    attrs: dict[str, str]
    duration: float
    captions: tuple[tuple[str, tuple[str, ...]], ...]  # (text, stated attribute names)


def plan_split(cfg: SynthConfig, split: str, n: int) -> list[SynthClip]:
    """Attributes, duration and captions of every clip (no audio yet)."""
    clips = []
    for i in range(n):
        rng = np.random.default_rng([cfg.seed, _SPLIT_SEED[split], i, 0])
        attrs = draw_attributes(rng)
        clips.append(SynthClip(clip_file_name(split, i), attrs, draw_duration(cfg, rng),
                               tuple(clip_captions(attrs, rng))))
    return clips


def multi_match_rows(clips: list[SynthClip]) -> list[tuple[str, list[str]]]:
    """(query, relevant file names) per distinct caption, in first-appearance order."""
    rows: dict[str, list[str]] = {}
    for clip in clips:
        for text, stated in clip.captions:
            if text in rows:
                continue
            required = {k: clip.attrs[k] for k in stated}
            rows[text] = [c.file_name for c in clips if satisfies(c.attrs, required)]
    return list(rows.items())


def synthesize(out: str | Path, *, n_dev: int = 120, n_val: int = 40, n_eval: int = 40, seed: int = 0,
               min_duration: float = 2.0, max_duration: float = 8.0, long_fraction: float = 0.0,
               long_min_duration: float = 10.5, long_max_duration: float = 16.0,
               overwrite: bool = False) -> Path:
    """Write the synthetic corpus under ``out`` (see module docstring); returns ``out``."""
    cfg = SynthConfig(out=Path(out), n_dev=n_dev, n_val=n_val, n_eval=n_eval, seed=seed,
                      min_duration=min_duration, max_duration=max_duration, long_fraction=long_fraction,
                      long_min_duration=long_min_duration, long_max_duration=long_max_duration,
                      overwrite=overwrite)
    return write_corpus(cfg)


def write_wav(path: Path, wave: Any) -> None:
    """16-bit PCM at the corpus rate. libsndfile reports a full disk as a bare "System error": it is
    turned into the OSError(ENOSPC) it is, so the CLI can say so in one line; no half file is left."""
    try:
        sf.write(str(path), wave, SAMPLE_RATE, subtype="PCM_16")
    except sf.LibsndfileError as err:
        path.unlink(missing_ok=True)
        if shutil.disk_usage(path.parent).free < FULL_DISK_BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from err
        raise


FULL_DISK_BYTES = 1 << 20  # less than this free after a failed write: the disk is full


def write_corpus(cfg: SynthConfig) -> Path:
    _validate(cfg)
    out = Path(cfg.out)
    clotho_root = out / "CLOTHO_v2.1"
    _prepare_folder(out, clotho_root, cfg.overwrite)
    started = time.perf_counter()
    csv_dir = clotho_root / "clotho_csv_files"
    csv_dir.mkdir(parents=True, exist_ok=True)
    attributes: dict[str, dict[str, dict]] = {}
    for split, n in (("dev", cfg.n_dev), ("val", cfg.n_val), ("eval", cfg.n_eval)):
        clips = plan_split(cfg, split, n)
        audio_dir = clotho_root / "clotho_audio_files" / SPLIT_DIRS[split]
        audio_dir.mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(clips):
            rng = np.random.default_rng([cfg.seed, _SPLIT_SEED[split], i, 1])
            wave = render_clip(clip.attrs, clip.duration, SAMPLE_RATE, rng)
            write_wav(audio_dir / clip.file_name, wave)
        _write_csvs(csv_dir, split, clips, cfg.seed)
        attributes[split] = {c.file_name: {**c.attrs, "duration": c.duration} for c in clips}
        if split == "eval":
            _write_multi_match(multi_match_annotations_path(out), clips)
    attributes_path(out).write_text(json.dumps(attributes, indent=1, sort_keys=True) + "\n")
    atomic_write_text(out / MARKER, json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")  # marker last
    logger.info("synthetic corpus (%d/%d/%d clips) written to %s in %.1f s",
                cfg.n_dev, cfg.n_val, cfg.n_eval, out, time.perf_counter() - started)
    return out


def _validate(cfg: SynthConfig) -> None:
    if min(cfg.n_dev, cfg.n_val, cfg.n_eval) < 1:
        raise ValueError(f"every split needs at least one clip, got {cfg.n_dev}/{cfg.n_val}/{cfg.n_eval}")
    if not 0.5 <= cfg.min_duration <= cfg.max_duration:
        raise ValueError(f"durations must satisfy 0.5 <= min ({cfg.min_duration}) <= max ({cfg.max_duration}) s")
    if not 0.0 <= cfg.long_fraction <= 1.0 or cfg.long_min_duration > cfg.long_max_duration:
        raise ValueError("long_fraction must be in [0, 1] and long_min_duration <= long_max_duration")


def _prepare_folder(out: Path, clotho_root: Path, overwrite: bool) -> None:
    if clotho_root.exists():
        if not overwrite:
            raise CorpusError(f"{clotho_root} already exists; pass --overwrite to replace a synthetic "
                              f"corpus, or choose another --out")
        if not (out / MARKER).is_file():
            raise CorpusError(f"{clotho_root} exists but {out / MARKER} does not: it is not a synthetic "
                              f"corpus written by audioret, so it is left alone; choose another --out")
        shutil.rmtree(clotho_root)
    out.mkdir(parents=True, exist_ok=True)


def _write_csvs(csv_dir: Path, split: str, clips: list[SynthClip], seed: int) -> None:
    name = SPLIT_DIRS[split]
    with (csv_dir / f"clotho_captions_{name}.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CAPTION_COLUMNS)
        for clip in clips:
            w.writerow([clip.file_name, *(text for text, _ in clip.captions)])
    with (csv_dir / f"clotho_metadata_{name}.csv").open("w", newline="", encoding="ISO-8859-1") as f:
        w = csv.writer(f)
        w.writerow(METADATA_COLUMNS)
        for i, clip in enumerate(clips):
            keywords = ";".join(["synthetic", clip.attrs["source"], clip.attrs["pitch"]])
            sound_id = str(900000 + seed * 10000 + _SPLIT_SEED[split] * 1000 + i)
            w.writerow([clip.file_name, keywords, sound_id, "NA", "", "audioret", "CC0"])


def _write_multi_match(path: Path, clips: list[SynthClip]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "audio_filenames"])
        for query, files in multi_match_rows(clips):
            w.writerow([query, repr(files)])
