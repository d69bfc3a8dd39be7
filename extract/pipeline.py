"""``run(config)``: corpus -> encoders -> feature store, resumable and sharded.

Per split: plan the audio table (header probes -> rows per clip; idempotent, every shard
computes the same plan), then stream this shard's pending parts: DataLoader workers decode,
resample, crop and cut 10 s windows; the main thread runs the encoder (inference mode,
autocast on GPU) on window batches; a background thread writes. The text pass plans captions
(tokenizer counts) and encodes them in length-sorted pools. Batches are cut per part from the
part's first item, so a resumed or sharded run computes exactly the batches of a plain run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from audioret.audio import RESAMPLER
from audioret.config import atomic_write_text, to_dict
from audioret.errors import output_faults
from audioret.corpora import CorpusSplit, load_corpus, synthesize
from audioret.encoders.features import split_window_outputs
from audioret.encoders.registry import (audio_encoder_change, build_audio_encoder, build_text_encoder,
                                        identity_keys_not_compared)
from audioret.store import (AUDIO, TEXT, FeatureStore, FieldSpec, StoreError, StoreMismatchError, create_store,
                            identity_lock, local_root, open_store, writer_lock)
from audioret.store.meta import diff as meta_diff

from .config import ExtractConfig
from .data import AudioItems, DecodedBatch, audio_loader, window_batches
from .plan import AudioLayout, audio_layout, count_tokens, num_parts_for, probe_all, text_items
from .report import ExtractProgress, ModelTimer, TableStats, failures_table, summary_table
from .rerun import RerunReport, changed_sources, check_metadata, rebuild_or_refuse, repair_parts
from .space import check_free_space, check_writable
from .shard import Shard, local_device_index, parts_of_shard, resolve_shard
from .writer import BackgroundWriter, PartsSink

log = logging.getLogger(__name__)

# keys saved in the metadata but not compared when a run reopens the store
IGNORED_METADATA = ("extract_config", "corpus.data_path", "audio_encoder.checkpoint", "text_encoder.source")


@dataclass
class ExtractResult:
    store: Path
    shard: Shard
    stats: list[TableStats] = field(default_factory=list)
    reruns: dict[str, RerunReport] = field(default_factory=dict)   # "split/kind" -> what a rerun redid
    failed_in_store: dict[str, list[str]] = field(default_factory=dict)  # "split/kind" -> failed item names
    deep_problems: list[str] | None = None  # --verify-sample: items whose stored values differ

    @property
    def num_failed(self) -> int:
        """Items failed in the tables this run covered (as the store holds them now, not only this run's)."""
        return sum(len(v) for v in self.failed_in_store.values()) if self.failed_in_store else \
            sum(s.failed for s in self.stats)

    def strict_error(self) -> str | None:
        """The one line ``--strict`` fails with, or None when no item is failed."""
        if not self.num_failed:
            return None
        names = [f"{t}: {n}" for t, v in self.failed_in_store.items() for n in v][:3]
        return (f"--strict: {self.num_failed} item(s) failed in {self.store} (e.g. {'; '.join(names)}): fix or "
                "remove those files and rerun (failed items are retried on every rerun); "
                "`audioret store info` lists them with their reasons")

    def exit_code(self, strict: bool) -> int:
        """0, or 2 with one line on stderr when ``strict`` and any item of the store's tables is failed."""
        if self.deep_problems:
            return 1
        msg = self.strict_error() if strict else None
        if msg is None:
            return 0
        import sys

        print(f"audioret extract: error: {msg}", file=sys.stderr)
        return 2


# ---- small resolvers -------------------------------------------------------------------------
def resolve_device(name: str, env: Mapping[str, str]) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_device_index(env) % torch.cuda.device_count())
    return torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None = plain fp32. auto: bf16 on GPUs that support it (fp16 otherwise), fp32 on CPU."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def max_samples_of(config: ExtractConfig, sample_rate: int) -> int | None:
    if config.max_seconds is None or config.max_seconds <= 0:
        return None
    return int(round(config.max_seconds * sample_rate))


def store_metadata(config: ExtractConfig, audio_enc: Any | None, text_enc: Any | None,
                   dtype: torch.dtype | None) -> dict:
    """What the store records (and compares on reopen, minus ``ignored_metadata``). Encoders appear
    only for the passes run; each table also records its encoder in its plan attrs. The audio
    preprocessing keys (AUDIO_PREPROCESSING) come from the audio encoder: a text-only pass records none,
    the first audio pass into such a store adds them (open_for_writing)."""
    meta: dict[str, Any] = {
        "preprocessing": {
            **(audio_preprocessing(config, audio_enc) if audio_enc is not None else {}),
            "feature_dtype": config.dtype,
            "compute_precision": str(dtype).replace("torch.", "") if dtype is not None else "float32",
        },
        "corpus": {"name": config.corpus, "data_path": str(Path(config.data_path).resolve())},
        "extract_config": to_dict(config),
    }
    if audio_enc is not None:
        meta["audio_encoder"] = audio_enc.identity
    if text_enc is not None:
        meta["text_encoder"] = text_enc.identity
    return meta


def audio_preprocessing(config: ExtractConfig, audio_enc: Any) -> dict[str, Any]:
    """The preprocessing keys an audio pass sets (its encoder's rate, windows and pooling; the crop)."""
    sr, ws = audio_enc.sample_rate, audio_enc.window_samples
    return {
        "sample_rate": sr, "resampler": RESAMPLER, "window_samples": ws, "window_seconds": ws / sr,
        "max_seconds": config.max_seconds, "max_samples": max_samples_of(config, sr), "crop": config.crop,
        "padding": "last window zero-padded; each window encoded without a padding mask",
        "pooling": getattr(audio_enc, "store_pooling", None) or {
            "frames": "mean of the frequency tokens of each time patch, valid frames only",
            "windows": "mean of all tokens of each window, padding included (seed recipe)"},
    }


AUDIO_PREPROCESSING = ("sample_rate", "resampler", "window_samples", "window_seconds", "max_seconds",
                       "max_samples", "crop", "padding", "pooling")


def ignored_metadata(passes: Sequence[str], existing: Mapping[str, Any] | None,
                     audio_unset: bool = False) -> tuple[str, ...]:
    """Keys not compared on reopen: volatile ones, and the encoder of a pass not run now or not
    run when the store was made (the table's plan attrs then carry and check its encoder).
    ``audio_unset``: the store holds no audio yet, so this audio pass sets the audio preprocessing."""
    out = list(IGNORED_METADATA)
    for kind, key in ((AUDIO, "audio_encoder"), (TEXT, "text_encoder")):
        if kind not in passes or (existing is not None and key not in existing):
            out.append(key)
        elif existing is not None:  # e.g. a text model's name when its weights hash identifies it
            out += [f"{key}.{k}" for k in identity_keys_not_compared(existing[key])]
    if AUDIO not in passes or audio_unset:  # a text-only pass knows no audio encoder: no rate/window of its own
        out += [f"preprocessing.{k}" for k in AUDIO_PREPROCESSING]
    return tuple(out)


def holds_audio(st: FeatureStore) -> bool:
    """Whether a store has audio settings of its own: an audio encoder recorded, or an audio table
    (a store whose audio pass followed a text-only one before audio settings were filled in)."""
    return "audio_encoder" in st.metadata or any(st.has(split, AUDIO) for split in st.splits())


def stored_audio_encoder(st: FeatureStore) -> Mapping[str, Any] | None:
    """The identity of the encoder of the store's audio: the metadata's, else an audio table's."""
    if "audio_encoder" in st.metadata:
        return st.metadata["audio_encoder"]
    for split in st.splits():
        if st.has(split, AUDIO) and st.plan_of(split, AUDIO).attrs.get("encoder"):
            return st.plan_of(split, AUDIO).attrs["encoder"]
    return None


class AudioEncoderChangeError(StoreMismatchError):
    """An audio pass into a store of another audio encoder: one sentence naming both (the key-by-key
    ``differences`` are kept for callers)."""

    def __init__(self, where: str, differences: dict[str, tuple[Any, Any]], sentence: str) -> None:
        super().__init__(where, differences)
        self.args = (sentence,)


def check_table_encoder(st: FeatureStore, split: str, kind: str, identity: Mapping[str, Any]) -> None:
    """A planned table must have been written by the same encoder (StoreMismatchError naming both)."""
    stored = st.plan_of(split, kind).attrs.get("encoder")
    if stored is None:
        return
    strip = set(identity_keys_not_compared(stored))  # locations may move; hashes and configs may not
    d = meta_diff({k: v for k, v in stored.items() if k not in strip},
                  {k: v for k, v in identity.items() if k not in strip})
    if d:
        raise StoreMismatchError(st.where, d, what=f"{split}/{kind} encoder",
                                 hint="extract into a new store, or pass --overwrite to replace it")


def load_split(config: ExtractConfig, split: str) -> CorpusSplit:
    """The corpus split (``synthetic``: a Clotho-layout corpus, written on first use)."""
    name, kw = config.corpus, {}
    if name == "synthetic":
        if not (Path(config.data_path) / "CLOTHO_v2.1").is_dir():
            synthesize(config.data_path)
        name = "clotho"
    if name == "folder":
        kw["captions_csv"] = config.captions_csv
    if name == "clotho":  # a missing file becomes a failed item with its reason, not a crashed job
        kw["keep_missing"] = True
    return load_corpus(name, config.data_path, split, download=config.download, **kw)


# ---- audio pass ------------------------------------------------------------------------------
def plan_audio(st: FeatureStore, config: ExtractConfig, cs: CorpusSplit, enc: Any) -> AudioLayout:
    """Plan (or reload the plan of) the audio table of a split."""
    ids = [c.clip_id for c in cs.clips]
    if st.has(cs.split, AUDIO):
        check_table_encoder(st, cs.split, AUDIO, enc.identity)
        plan = st.plan_of(cs.split, AUDIO)
        table = st.items(cs.split, AUDIO)
        if table.ids != ids:
            raise StoreError(f"store {st.where}: {cs.split}/audio was planned for other clips than corpus "
                             f"{config.corpus!r} now lists ({plan.num_items} vs {len(ids)} clips); extract "
                             "into a new store or pass --overwrite")
        return AudioLayout(np.asarray(table.column("num_samples"), np.int64), table.lengths("frames"),
                           table.lengths("windows"), np.asarray(table.column("source_duration")),
                           {int(k): v for k, v in plan.attrs.get("probe_failures", {}).items()})
    probes = probe_all([c.path for c in cs.clips], enc.sample_rate, max_samples_of(config, enc.sample_rate),
                       config.num_workers)
    lay = audio_layout(probes, enc.window_samples, _frames_counter(enc))
    fields = {"frames": FieldSpec(lay.num_frames, enc.dim, config.dtype),
              "windows": FieldSpec(lay.num_windows, enc.dim, config.dtype)}
    cols = {"duration": (lay.num_samples / enc.sample_rate).astype(np.float32),
            "num_samples": lay.num_samples, "source_duration": lay.source_duration}
    st.plan(cs.split, AUDIO, ids, fields, columns=cols, num_parts=num_parts_for(len(ids), config.items_per_part),
            attrs={"corpus": config.corpus, "split": cs.split, "encoder": enc.identity,
                   "probe_failures": {str(k): v for k, v in lay.failures.items()}})
    return lay


def _frames_counter(enc: Any) -> Any:
    return lru_cache(maxsize=None)(enc.num_valid_frames)


def audio_batches(pending: Sequence[tuple[int, int, int, int]], windows: np.ndarray, budget: int) -> list[list[int]]:
    """Window batches cut per part from the part's start (same batches as an uninterrupted
    run); only batches that hold a pending item are kept."""
    out = []
    for _, start, first, end in pending:
        out += [b for b in window_batches(range(start, end), windows, budget) if b[-1] >= first]
    return out


def write_audio_batch(sink: PartsSink, batch: DecodedBatch, frames: torch.Tensor, means: torch.Tensor,
                      ready: Any, window: int, frames_of: Any) -> None:
    """Writer-thread job: split a batch's window outputs back into clips and store them."""
    if ready is not None:
        ready.synchronize()
    pos = 0
    sources = batch.sources or [None] * len(batch.indices)
    for i, w, n, src in zip(batch.indices, batch.num_windows, batch.num_samples, sources):
        if i in batch.errors:
            sink.fail(i, batch.errors[i], note=src)
            continue
        clip = split_window_outputs(frames[pos:pos + w], means[pos:pos + w], [n], window, frames_of)[0]
        sink.put(i, {"frames": clip.frames.numpy(), "windows": clip.windows.numpy()}, note=src)
        pos += w


def to_host(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], Any]:
    """Non-blocking device->host copies into pinned memory (+ an event to wait on) on GPU."""
    if tensors[0].device.type != "cuda":
        return [t.cpu() for t in tensors], None
    out = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for o, t in zip(out, tensors):
        o.copy_(t, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return out, event


def shard_work(st: FeatureStore, split: str, kind: str, shard: Shard, rerun: RerunReport | None = None, *,
               changed: set[int] | frozenset[int] = frozenset(), final_failures: Mapping[int, str] | None = None,
               ) -> tuple[Any, list, TableStats, np.ndarray]:
    """This shard's parts still to write (after resetting damaged and stale ones, see rerun.py):
    (sink, pending parts, stats, items-to-do mask)."""
    plan = st.plan_of(split, kind)
    mine = parts_of_shard(plan.num_parts, shard)
    repair_parts(st, split, kind, mine, changed=changed, final_failures=final_failures, report=rerun)
    sink = PartsSink(st, split, kind, mine)
    pending = sink.pending_parts()
    todo = sum(end - first for _, _, first, end in pending)
    stats = TableStats(split, kind, items=plan.num_items, skipped=plan.num_items - todo)
    return sink, pending, stats, todo_mask(plan.num_items, pending)


def prepare_audio(st: FeatureStore, config: ExtractConfig, cs: CorpusSplit, enc: Any, shard: Shard,
                  rerun: RerunReport) -> set[int]:
    """Before (re)planning: drop a table that needs a new plan (damaged metadata, clips readable now
    that were not at planning, sources of another length); returns items whose source changed."""
    rerun.replanned = check_metadata(st, cs.split, AUDIO, shard)
    if rerun.replanned or not st.has(cs.split, AUDIO):
        return set()
    plan, paths = st.plan_of(cs.split, AUDIO), [c.path for c in cs.clips]
    if plan.num_items != len(paths):
        return set()  # plan_audio refuses with its message
    max_samples = max_samples_of(config, enc.sample_rate)

    def now(i: int) -> Any:
        return probe_all([paths[i]], enc.sample_rate, max_samples, 0)[0]

    fixed = [i for i in sorted(int(k) for k in plan.attrs.get("probe_failures", {})) if now(i).error is None]
    if fixed:
        rerun.replanned = rebuild_or_refuse(st, cs.split, AUDIO, shard, f"has {len(fixed)} clip(s) readable now "
                                            f"that were not when it was planned (e.g. {paths[fixed[0]]})")
        return set()
    changed = changed_sources(st, cs.split, paths)
    planned = np.asarray(st.items(cs.split, AUDIO).column("num_samples"))
    moved = [i for i in sorted(changed) if now(i).samples != int(planned[i])]
    if moved:
        rerun.replanned = rebuild_or_refuse(st, cs.split, AUDIO, shard, f"has {len(moved)} clip(s) whose source "
                                            f"changed length since it was read (e.g. {paths[moved[0]]})")
        return set()
    return changed


def extract_audio(st: FeatureStore, config: ExtractConfig, cs: CorpusSplit, enc: Any, shard: Shard,
                  progress: ExtractProgress, rerun: RerunReport | None = None) -> TableStats:
    rerun = rerun if rerun is not None else RerunReport()
    changed = prepare_audio(st, config, cs, enc, shard, rerun)
    lay = plan_audio(st, config, cs, enc)
    sink, pending, stats, todo_items = shard_work(st, cs.split, AUDIO, shard, rerun, changed=changed,
                                                  final_failures=lay.failures)
    if not pending:
        return stats
    check_free_space(st, config.store, cs.split, AUDIO)
    dataset = AudioItems([c.path for c in cs.clips], lay.num_samples, lay.failures, target_sr=enc.sample_rate,
                         max_samples=max_samples_of(config, enc.sample_rate), crop_mode=config.crop)
    batches = audio_batches(pending, lay.num_windows, config.batch_windows)
    loader = audio_loader(dataset, batches, enc.window_samples, num_workers=config.num_workers,
                          prefetch_factor=config.prefetch_factor, pin_memory=enc.device.type == "cuda")
    out_dtype = torch.float16 if config.dtype == "float16" else torch.float32
    frames_of = _frames_counter(enc)
    writer, timer = BackgroundWriter(config.write_queue), ModelTimer(enc.device)
    task = progress.task(f"{cs.split} audio", stats.items - stats.skipped)
    started = time.perf_counter()
    try:
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            stats.wait_data += time.perf_counter() - t0
            if batch is None:
                break
            with torch.inference_mode(), timer:
                x = batch.windows.to(enc.device, non_blocking=True)
                frames, means = enc.encode_windows(x) if len(x) else (x.new_zeros(0, 1, enc.dim), x.new_zeros(0, enc.dim))
                (frames, means), ready = to_host(frames.to(out_dtype), means.to(out_dtype))
            writer.submit(write_audio_batch, sink, batch, frames, means, ready, enc.window_samples, frames_of)
            _count_batch(stats, batch, todo_items, enc.sample_rate)
            stats.decode += batch.decode_seconds
            progress.update(task, stats, started)
        writer.submit(sink.close)
        writer.close()
    except BaseException:
        _abort(writer, sink)
        raise
    return _finish(stats, started, timer, writer, sink)


def _finish(stats: TableStats, started: float, timer: Any, writer: Any, sink: Any) -> TableStats:
    """Fill a table pass's timings and failures once its writer has drained."""
    stats.wall = time.perf_counter() - started
    stats.model, stats.write, stats.write_blocked = timer.total(), writer.busy_seconds, writer.blocked_seconds
    stats.failures = dict(sink.failures)
    stats.failed = len(stats.failures)
    return stats


def todo_mask(num_items: int, pending: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """bool [N]: items this run still has to write (the resumed prefix of a part is recomputed
    for identical batches but not counted)."""
    mask = np.zeros(num_items, dtype=bool)
    for _, _, first, end in pending:
        mask[first:end] = True
    return mask


def _count_batch(stats: TableStats, batch: DecodedBatch, todo: np.ndarray, sample_rate: int) -> None:
    new = [k for k, i in enumerate(batch.indices) if todo[i]]
    stats.processed += len(new)
    stats.failed += sum(1 for k in new if batch.indices[k] in batch.errors)
    stats.audio_seconds += sum(batch.num_samples[k] for k in new
                               if batch.indices[k] not in batch.errors) / sample_rate


def _abort(writer: BackgroundWriter, sink: PartsSink) -> None:
    try:
        writer.submit(sink.abort)
        writer.close()
    except Exception as err:  # the original error matters more
        log.warning("while stopping the writer: %s", err)


# ---- text pass -------------------------------------------------------------------------------
def plan_text(st: FeatureStore, config: ExtractConfig, cs: CorpusSplit, enc: Any) -> tuple[list[str], np.ndarray]:
    captions, clip_index = text_items([c.captions for c in cs.clips])
    if st.has(cs.split, TEXT):
        check_table_encoder(st, cs.split, TEXT, enc.identity)
        table = st.items(cs.split, TEXT)
        if table.ids != captions:
            raise StoreError(f"store {st.where}: {cs.split}/text was planned for other captions than the "
                             "corpus now lists; extract into a new store or pass --overwrite")
        return captions, table.lengths("tokens")
    lengths = count_tokens(captions, enc.num_tokens)
    st.plan_text(cs.split, captions, clip_index, lengths, dim=enc.dim, dtype=config.dtype,
                 num_parts=num_parts_for(len(captions), config.text_items_per_part),
                 attrs={"corpus": config.corpus, "split": cs.split, "encoder": enc.identity})
    return captions, lengths


def text_pools(pending: Sequence[tuple[int, int, int, int]], batch: int, pool_batches: int = 8) -> list[list[int]]:
    """Pools of consecutive captions (cut per part from its start), each pool encoded as
    length-sorted batches and written back in order."""
    size = batch * pool_batches
    out = []
    for _, start, first, end in pending:
        out += [list(range(a, min(a + size, end))) for a in range(start, end, size) if min(a + size, end) > first]
    return out


def sorted_batches(items: Sequence[int], lengths: np.ndarray, batch: int) -> list[list[int]]:
    """Length-bucketed batches: items sorted by token count (stable), cut into ``batch``."""
    order = sorted(items, key=lambda i: (int(lengths[i]), i))
    return [order[k:k + batch] for k in range(0, len(order), batch)]


def write_text_pool(sink: PartsSink, pool: list[int], results: dict[int, tuple[Any, Any, int]], ready: Any,
                    lengths: np.ndarray) -> None:
    if ready is not None:
        ready.synchronize()
    for i in pool:
        tokens, first, n = results[i]
        if n != int(lengths[i]):
            sink.fail(i, f"encoder gave {n} tokens, the plan expects {int(lengths[i])}")
            continue
        sink.put(i, {"tokens": tokens[:n].numpy(), "first": first.numpy()})


def extract_text(st: FeatureStore, config: ExtractConfig, cs: CorpusSplit, enc: Any, shard: Shard,
                 progress: ExtractProgress, rerun: RerunReport | None = None) -> TableStats:
    rerun = rerun if rerun is not None else RerunReport()
    rerun.replanned = check_metadata(st, cs.split, TEXT, shard)
    captions, lengths = plan_text(st, config, cs, enc)
    sink, pending, stats, todo_items = shard_work(st, cs.split, TEXT, shard, rerun)
    if not pending:
        return stats
    check_free_space(st, config.store, cs.split, TEXT)
    out_dtype = torch.float16 if config.dtype == "float16" else torch.float32
    writer, timer = BackgroundWriter(config.write_queue), ModelTimer(enc.device)
    task = progress.task(f"{cs.split} text", stats.items - stats.skipped)
    started = time.perf_counter()
    try:
        for pool in text_pools(pending, config.text_batch_size):
            results, ready = _encode_pool(enc, captions, pool, lengths, config.text_batch_size, out_dtype, timer)
            writer.submit(write_text_pool, sink, pool, results, ready, lengths)
            stats.processed += int(todo_items[pool].sum())
            progress.update(task, stats, started)
        writer.submit(sink.close)
        writer.close()
    except BaseException:
        _abort(writer, sink)
        raise
    return _finish(stats, started, timer, writer, sink)


def _encode_pool(enc: Any, captions: list[str], pool: list[int], lengths: np.ndarray, batch: int,
                 out_dtype: torch.dtype, timer: ModelTimer) -> tuple[dict[int, tuple[Any, Any, int]], Any]:
    results: dict[int, tuple[Any, Any, int]] = {}
    ready = None
    for b in sorted_batches(pool, lengths, batch):
        with torch.inference_mode(), timer:
            tokens, mask, first = enc.encode([captions[i] for i in b])
            (tokens, first, n), ready = to_host(tokens.to(out_dtype), first.to(out_dtype), mask.sum(1))
        for k, i in enumerate(b):
            results[i] = (tokens[k], first[k], int(n[k]) if ready is None else n[k])
    if ready is not None:  # GPU: counts become Python ints once the copies landed
        ready.synchronize()
        results = {i: (t, f, int(n)) for i, (t, f, n) in results.items()}
        ready = None
    return results, ready


# ---- the job ---------------------------------------------------------------------------------
def run(config: ExtractConfig, *, env: Mapping[str, str] | None = None) -> ExtractResult:
    """Extract every requested split and pass into ``config.store``; returns the per-table stats."""
    env = os.environ if env is None else env
    shard = resolve_shard(config.num_shards, config.shard_index, env)
    if config.overwrite and shard.count > 1:
        raise ValueError("--overwrite with several shards would let one shard delete the others' work: "
                         "delete the store (or run once with --overwrite and one shard) before launching shards")
    _check_config(config)
    # the corpus first: a wrong --data-path fails in seconds, before any model loads or store is created
    corpus_splits = {split: load_split(config, split) for split in config.splits}
    if config.verify_sample == 0:  # writes: a read-only mount fails in seconds, before the models load
        check_writable(config.store)
    device = resolve_device(config.device, env)
    dtype = autocast_dtype(config.precision, device)
    audio_enc = (build_audio_encoder(config.audio_encoder, config.beats_ckpt, device, dtype=dtype,
                                     batch_size=config.batch_windows) if AUDIO in config.passes else None)
    if config.compile and audio_enc is not None:  # before any store work: a broken toolchain fails here
        log.info("--compile: compiling the audio encoder for batches of %d windows", config.batch_windows)
        if device.type == "cpu":
            log.warning("--compile on CPU: compiled BEATs ran slower than eager here (0.81-0.94x); it is meant "
                        "for GPU nodes")
        log.info("--compile: compiled in %.1f s", audio_enc.compile_windows())
    text_enc = build_text_encoder(config.text_model, device, dtype=dtype) if TEXT in config.passes else None
    metadata = store_metadata(config, audio_enc, text_enc, dtype)
    if config.verify_sample > 0:
        return verify_sample(config, shard, corpus_splits, audio_enc, text_enc)
    st = open_for_writing(config, metadata)
    log.info("shard %d/%d (%s) on %s, autocast %s", shard.index, shard.count, shard.source, device, dtype)
    result = ExtractResult(Path(config.store), shard)
    ids: dict[tuple[str, str], list[str]] = {}
    # One process per shard: a duplicate (a SLURM task run twice, the command started again while the
    # first still runs) would reset parts the first one is writing (rerun.repair_parts).
    with writer_lock(local_root(config.store), f"shard-{shard.index}-of-{shard.count}",
                     f"shard {shard.index}/{shard.count}"), ExtractProgress(config.progress) as progress:
        for split, cs in corpus_splits.items():
            if "audio" in config.passes:
                rerun = result.reruns.setdefault(f"{split}/{AUDIO}", RerunReport())
                result.stats.append(extract_audio(st, config, cs, audio_enc, shard, progress, rerun))
                ids[(split, AUDIO)] = [c.clip_id for c in cs.clips]
            if "text" in config.passes:
                rerun = result.reruns.setdefault(f"{split}/{TEXT}", RerunReport())
                result.stats.append(extract_text(st, config, cs, text_enc, shard, progress, rerun))
                ids[(split, TEXT)] = text_items([c.captions for c in cs.clips])[0]
    result.failed_in_store = failed_in_store(st, ids)
    console = Console(stderr=True, width=max(progress.console.width, 150))
    console.print(summary_table(result.stats))
    for line in rerun_lines(result):
        console.print(line, markup=False, highlight=False)
    if result.num_failed:
        console.print(failures_table(result.stats, ids))
    if config.summary_json is not None:
        with output_faults(config.summary_json, "--summary-json"):
            atomic_write_text(config.summary_json, json.dumps(
                {"shard": vars(shard), "stats": [s.to_json() for s in result.stats]}, indent=2) + "\n")
    return result


def failed_in_store(st: FeatureStore, ids: Mapping[tuple[str, str], list[str]]) -> dict[str, list[str]]:
    """Failed items of every table this run covered, by name, as the store holds them now."""
    out = {}
    for (split, kind), names in ids.items():
        failed = st.status(split, kind).failures
        if failed:
            out[f"{split}/{kind}"] = [names[i] if i < len(names) else str(i) for i in sorted(failed)]
    return out


def rerun_lines(result: ExtractResult) -> list[str]:
    """One line per table that a rerun had to repair or retry."""
    out = []
    for table, r in result.reruns.items():
        did = []
        if r.replanned:
            did.append(f"planned afresh: it {r.replanned}")
        if r.damaged_parts:
            did.append(f"rewrote {len(r.damaged_parts)} damaged part(s) {r.damaged_parts}")
        if r.retried_items:
            still = len(result.failed_in_store.get(table, []))
            did.append(f"retried {r.retried_items} failed item(s), {still} still failed")
        if r.changed_items:
            did.append(f"re-extracted the parts of {r.changed_items} item(s) whose source file changed")
        if r.partials_removed:
            did.append(f"removed {r.partials_removed} stray .partial file(s)")
        if did:
            out.append(f"{table}: " + "; ".join(did))
    return out


def verify_sample(config: ExtractConfig, shard: Shard, corpus_splits: Mapping[str, CorpusSplit], audio_enc: Any,
                  text_enc: Any) -> ExtractResult:
    """--verify-sample N: nothing is written; each table must have been made by these encoders."""
    from .deep import deep_check

    st = open_store(config.store)
    for split in corpus_splits:
        for kind, enc in ((AUDIO, audio_enc), (TEXT, text_enc)):
            if enc is not None and kind in config.passes and split in st.splits() and st.has(split, kind):
                check_table_encoder(st, split, kind, enc.identity)
    problems = deep_check(st, corpus_splits, config.passes, audio_enc, text_enc, config.verify_sample)
    for line in problems:
        log.error("PROBLEM %s", line)
    log.info("verify --deep: %s", f"{len(problems)} problem(s): rerun extract with --overwrite, or into a new store"
             if problems else f"every sampled item (up to {config.verify_sample} per table) equals a recomputation")
    return ExtractResult(Path(config.store), shard, deep_problems=problems)


def open_for_writing(config: ExtractConfig, metadata: Mapping[str, Any]) -> FeatureStore:
    """Create or reopen the store under its identity lock (reading what it holds and comparing in one
    step, so two extracts with other settings started together cannot both write it). The first audio
    pass into a store without audio records its encoder and audio preprocessing there."""
    with identity_lock(local_root(config.store)):
        old = None if config.overwrite else _existing(config.store)
        existing = old.metadata if old is not None else None
        audio_unset = AUDIO in config.passes and old is not None and not holds_audio(old)
        try:
            st = create_store(config.store, metadata, overwrite=config.overwrite, codec=config.codec,
                              ignore=ignored_metadata(config.passes, existing, audio_unset))
        except StoreMismatchError as err:
            raise _named_encoder_change(err, config, old, metadata) from None
        if audio_unset:
            st.add_metadata({"audio_encoder": metadata["audio_encoder"],
                             "preprocessing": {k: metadata["preprocessing"][k] for k in AUDIO_PREPROCESSING}})
    if st.codec != config.codec:
        log.warning("store %s was made with --codec %s; --codec %s is ignored for it (a codec applies to new "
                    "stores only; pass --overwrite to re-extract with %s)", config.store, st.codec, config.codec,
                    config.codec)
    return st


def _named_encoder_change(err: StoreMismatchError, config: ExtractConfig, old: FeatureStore | None,
                          metadata: Mapping[str, Any]) -> StoreMismatchError:
    """A refused audio pass whose store holds another encoder's audio, in one sentence naming both
    (else ``err`` as it is: the key-by-key differences)."""
    if AUDIO not in config.passes or old is None:
        return err
    change = audio_encoder_change(stored_audio_encoder(old), metadata.get("audio_encoder"))
    if change is None:
        return err
    return AudioEncoderChangeError(err.path, err.differences, (
        f"store {err.path} holds {change}: extract --audio-encoder {config.audio_encoder} into another "
        "--store, or pass --overwrite to replace this one"))


def _existing(path: Path) -> FeatureStore | None:
    try:
        return open_store(path)
    except StoreError:
        return None


def _check_config(config: ExtractConfig) -> None:
    if not config.passes:
        raise ValueError("--passes is empty: choose audio, text or both")
    for name in ("batch_windows", "text_batch_size", "items_per_part", "text_items_per_part", "write_queue"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {config.num_workers}")
