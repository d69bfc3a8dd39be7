"""``audioret extract <the same flags> --verify-sample N``: recompute N stored items of every table
with the store's own encoders and compare them with what the store holds (``verify --deep``).

``audioret store verify`` checks that every shard file is the one its part wrote (checksums); it
cannot see values that were wrong when written, nor read encoders (store/ imports nothing of ours).
This check can: it decodes and encodes a seeded sample of completed, non-failed items exactly as
extract does and compares within fp16 storage rounding plus batch effects (measured: batched vs
single-item features differ by < 1e-4; fp16 rounds at 2^-11 relative).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from audioret.audio import RESAMPLER
from audioret.corpora import CorpusSplit
from audioret.encoders.features import audio_clip_features, load_clip_wave
from audioret.store import AUDIO, TEXT, FeatureStore, StoreMismatchError

from .plan import text_items

log = logging.getLogger(__name__)
ATOL = RTOL = 2e-3  # fp32 compute, fp16 storage: |a - b| <= ATOL + RTOL * |b| elementwise
# bf16/fp16 autocast (GPU extraction): batch composition changes the rounding, so the item is compared
# as a whole: ||a - b|| / ||b|| below the bf16-vs-fp32 error measured on realistic BEATs weights
# (1.1-1.7 %, tests/test_beats_fbank.py) with headroom; garbage rows sit near 1.4.
LOW_PRECISION_REL = 0.05


def completed_items(st: FeatureStore, split: str, kind: str) -> list[int]:
    """Items of completed parts that did not fail: the ones whose stored values can be recomputed."""
    out: list[int] = []
    for p in st.status(split, kind).parts:
        if p.complete:
            failed = {int(i) for i in p.failures}
            out += [i for i in range(p.start, p.start + p.items_done) if i not in failed]
    return out


def sample(items: Sequence[int], n: int, seed: int) -> list[int]:
    if len(items) <= n:
        return list(items)
    return sorted(np.random.default_rng(seed).choice(np.asarray(items), size=n, replace=False).tolist())


def mismatch(stored: np.ndarray, fresh: np.ndarray, low_precision: bool = False) -> str | None:
    """None when ``stored`` equals ``fresh`` within the rounding of how it was computed, else why not."""
    fresh = fresh.astype(np.float32)
    stored = stored.astype(np.float32)
    if stored.shape != fresh.shape:
        return f"shape {stored.shape}, recomputed {fresh.shape}"
    if low_precision:
        rel = float(np.linalg.norm(stored - fresh) / max(float(np.linalg.norm(fresh)), 1e-12))
        return None if rel <= LOW_PRECISION_REL else f"relative difference {rel:.3g} from a recomputation"
    bad = np.abs(stored - fresh) > ATOL + RTOL * np.abs(fresh)
    if bad.any():
        return (f"{int(bad.sum())} of {bad.size} values differ (max |diff| "
                f"{float(np.abs(stored - fresh).max()):.3g}) from a recomputation")
    return None


def check_resampler(st: FeatureStore) -> None:
    """Audio of a store made with another resampler (before soxr) cannot be recomputed as it was: say so
    instead of reporting every sampled item as damaged."""
    stored = st.metadata.get("preprocessing", {}).get("resampler")
    if stored != RESAMPLER:
        raise StoreMismatchError(st.where, {"preprocessing.resampler": (stored or "<missing>", RESAMPLER)},
                                 hint="the store's audio was resampled otherwise, so it cannot be recomputed "
                                      "here; re-extract into a new store (or pass --overwrite)")


def check_audio(st: FeatureStore, split: str, cs: CorpusSplit, enc: Any, n: int, seed: int) -> list[str]:
    check_resampler(st)
    pre, table = st.metadata["preprocessing"], st.audio(split)
    low = _low_precision(st)
    problems = []
    for i in sample(completed_items(st, split, AUDIO), n, seed):
        clip = cs.clips[i]
        wave = load_clip_wave(clip.path, pre["sample_rate"], pre["max_samples"], pre["crop"])
        with torch.no_grad():
            feats = audio_clip_features(enc, wave, pre["max_samples"])
        for field, fresh in (("frames", feats.frames), ("windows", feats.windows)):
            why = mismatch(table.get(field, i), fresh.float().numpy(), low)
            if why:
                problems.append(f"{split}/audio item {i} ({clip.clip_id}) field {field}: {why}")
    return problems


def check_text(st: FeatureStore, split: str, cs: CorpusSplit, enc: Any, n: int, seed: int) -> list[str]:
    table, low = st.text(split), _low_precision(st)
    captions, _ = text_items([c.captions for c in cs.clips])
    problems = []
    for i in sample(completed_items(st, split, TEXT), n, seed):
        with torch.no_grad():
            tokens, mask, first = enc.encode([captions[i]])
        valid = tokens[0, : int(mask[0].sum())].float().cpu().numpy()
        for field, fresh in (("tokens", valid), ("first", first[0:1].float().cpu().numpy())):
            why = mismatch(table.get(field, i), fresh, low)
            if why:
                problems.append(f"{split}/text item {i} ({captions[i][:40]!r}) field {field}: {why}")
    return problems


def _low_precision(st: FeatureStore) -> bool:
    return st.metadata.get("preprocessing", {}).get("compute_precision", "float32") != "float32"


def deep_check(st: FeatureStore, corpus_splits: Mapping[str, CorpusSplit], passes: Sequence[str],
               audio_enc: Any, text_enc: Any, n: int, seed: int = 0) -> list[str]:
    """Problems found in a sample of ``n`` items of every table of ``corpus_splits`` (empty = fine)."""
    problems: list[str] = []
    for split, cs in corpus_splits.items():
        if split not in st.splits():
            continue
        if AUDIO in passes and st.has(split, AUDIO):
            problems += check_audio(st, split, cs, audio_enc, n, seed)
        if TEXT in passes and st.has(split, TEXT):
            problems += check_text(st, split, cs, text_enc, n, seed)
        log.info("%s: recomputed up to %d item(s) per table", split, n)
    return problems


__all__ = ["deep_check", "mismatch", "completed_items"]
