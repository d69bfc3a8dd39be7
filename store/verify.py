"""``info`` and ``verify``: what a store holds, and whether it is intact."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from zarr.core.sync import sync

from . import integrity, layout
from .core import FeatureStore, StoreLike, open_store
from .errors import StoreError
from .records import LEGACY_PLAN, PLAN_ATTR


def _open(path: StoreLike | FeatureStore, storage_options: Mapping[str, Any] | None) -> FeatureStore:
    return path if isinstance(path, FeatureStore) else open_store(path, storage_options=storage_options)


def disk_bytes(st: FeatureStore, prefix: str = "") -> int:
    """Stored bytes under ``prefix`` (whole store when empty)."""
    full = f"{st.group.path}/{prefix}".strip("/") if st.group.path else prefix
    return int(sync(st.zstore.getsize_prefix(full)))


def summarize(path: StoreLike | FeatureStore, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """JSON-able summary: metadata, and per split/kind counts, completeness, failures, sizes."""
    st = _open(path, storage_options)
    md = st.metadata
    out: dict[str, Any] = {"path": st.where, "format_version": md.get("format_version"), "codec": st.codec,
                           "created": md.get("created"), "metadata": md, "splits": {}}
    for split in st.splits():
        for kind in st.kinds(split):
            plan, status = st.plan_of(split, kind), st.status(split, kind)
            fields = {}
            for name, fl in plan.fields.items():
                kept = int(np.asarray(st.group[f"{split}/{kind}/{name}/lengths"][:]).sum()) if plan.num_items else 0
                fields[name] = {"dim": fl.dim, "dtype": fl.dtype, "rows": kept,
                                "kept_bytes": kept * fl.dim * np.dtype(fl.dtype).itemsize,
                                "disk_bytes": disk_bytes(st, f"{split}/{kind}/{name}/data")}
            out["splits"].setdefault(split, {})[kind] = {
                "items": plan.num_items, "items_done": status.items_done, "parts": plan.num_parts,
                "parts_complete": plan.num_parts - len(status.pending_parts), "complete": status.complete,
                "failed": len(status.failures), "failures": {str(k): v for k, v in sorted(status.failures.items())},
                "fields": fields, "attrs": plan.attrs}
    out["disk_bytes"] = disk_bytes(st)
    return out


FIX = ("rerun the same `audioret extract` command: it checks every completed part, rewrites the damaged "
       "ones and removes stray .partial files (or pass --overwrite to start the store afresh)")


def verify_store(path: StoreLike | FeatureStore, *, check_values: bool = True, require_complete: bool = True,
                 quick: bool = False, progress: bool = False, notes: list[str] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """All problems found (empty list = intact), one line each naming the file: unreadable
    metadata, tables without a plan, files that differ from their recorded size/checksum
    (deleted, truncated, overwritten shards), stray ``*.partial`` files, plan digest,
    offsets/lengths, part alignment, completeness, decodable and finite data. ``quick``: sizes
    and modification times instead of checksums. ``notes`` collects remarks that are no problem
    (tables without checksums). Never raises for a damaged store."""
    try:
        st = _open(path, storage_options)
    except StoreError as e:
        return [str(e)]
    except Exception as e:  # a broken root zarr.json: name it, never a traceback
        return [f"zarr.json: unreadable store metadata ({type(e).__name__}: {e})"]
    problems: list[str] = []
    splits = st.splits()
    if not splits:
        problems.append(f"{st.where}: no splits planned")
    with _Bar(progress, _total_bytes(st, splits)) as bar:
        for split in splits:
            for kind in st._kind_names(split):
                if not st.has(split, kind):
                    problems.append(_missing_plan(st, split, kind))
                    continue
                try:
                    problems += _verify_table(st, split, kind, check_values, require_complete, quick, bar, notes)
                except Exception as e:  # a damaged store can fail anywhere: report, never crash
                    problems.append(f"{split}/{kind}: cannot be read ({type(e).__name__}: {e})")
            if not st._kind_names(split):
                problems.append(f"{split}: group present but no planned item table in it")
    problems += [f"{k}: stray temp file of an interrupted write" for k in st.partial_files()]
    return problems


def _missing_plan(st: FeatureStore, split: str, kind: str) -> str:
    records = st.records(split, kind)
    if records.legacy:
        return f"{split}/{kind}/{LEGACY_PLAN}: missing (the table's layout is gone)"
    return f"{split}/{kind}/zarr.json: no {PLAN_ATTR!r} attribute (the table's layout is gone)"


def _total_bytes(st: FeatureStore, splits: list[str]) -> int:
    total = 0
    for split in splits:
        for kind in st.kinds(split):
            try:
                files = [st.plan_files(split, kind) or {}] + [p.files or {} for p in st.status(split, kind).parts]
            except Exception:
                continue
            total += sum(v["size"] for f in files for v in f.values() if v)
    return total


class _Bar:
    """A rich progress bar over the bytes checked, on a terminal only (``on_file`` advances it)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._progress = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            console = Console(stderr=True)
            if console.is_terminal:
                self._progress = Progress(TextColumn("verify"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                          TimeRemainingColumn(), console=console, transient=True)
                self._task = self._progress.add_task("verify", total=total)

    def __enter__(self) -> _Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *_: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def on_file(self, nbytes: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, nbytes)


def _verify_files(st: FeatureStore, split: str, kind: str, status: Any, quick: bool, bar: _Bar,
                  notes: list[str] | None) -> list[str]:
    """Recorded files of the plan and of every completed part, and files no record knows."""
    out = st.check_table(split, kind, quick=quick, on_file=bar.on_file)
    unchecked = [p.part for p in status.parts if p.complete and p.files is None]
    if st.plan_files(split, kind) is None or unchecked:
        if notes is not None:
            notes.append(f"{split}/{kind}: no checksums recorded for "
                         f"{'its plan' if st.plan_files(split, kind) is None else ''}"
                         f"{' and ' if st.plan_files(split, kind) is None and unchecked else ''}"
                         f"{f'{len(unchecked)} part(s)' if unchecked else ''} (written by an older audioret): "
                         "checked by structure and values only")
    for p in status.parts:
        out += st.check_part(split, kind, p, quick=quick, on_file=bar.on_file)
    if not unchecked and status.complete:
        known = {k for p in status.parts for k in (p.files or {})}
        prefix = st._prefix(split, kind)
        for name in st.plan_of(split, kind).fields:
            for key in integrity.list_keys(st.zstore, f"{prefix}/{name}/data/c"):
                rel = key[len(prefix) + 1:]
                if rel not in known and not integrity.is_partial(key):
                    out.append(f"{key}: unexpected file (no part wrote it)")
    return out


def _verify_table(st: FeatureStore, split: str, kind: str, check_values: bool, require_complete: bool,
                  quick: bool = False, bar: _Bar | None = None, notes: list[str] | None = None) -> list[str]:
    status = st.status(split, kind)
    out = _verify_files(st, split, kind, status, quick, bar or _Bar(False, 0), notes)
    if any(p.endswith("zarr.json: missing (deleted?)") or "/zarr.json: size" in p for p in out):
        return out  # an array's metadata is gone: reading it would only repeat that
    return out + [f"{split}/{kind}: {p}" for p in _verify_structure(st, split, kind, status, check_values,
                                                                     require_complete)]


def _verify_structure(st: FeatureStore, split: str, kind: str, status: Any, check_values: bool,
                      require_complete: bool) -> list[str]:
    plan = st.plan_of(split, kind)
    g = st.group[f"{split}/{kind}"]
    n = plan.num_items
    out: list[str] = []
    ids = [str(x) for x in np.asarray(g["ids"][:])] if n else []
    cols = {c: np.asarray(g[f"col/{c}"][:]) for c in plan.columns} if n else {}
    offs = {k: np.asarray(g[f"{k}/offsets"][:]) if n else np.zeros(0, np.int64) for k in plan.fields}
    lens = {k: np.asarray(g[f"{k}/lengths"][:]).astype(np.int64) if n else np.zeros(0, np.int64)
            for k in plan.fields}
    if len(ids) != n:
        out.append(f"ids has {len(ids)} entries, plan says {n}")
    if layout.digest(ids, cols, {k: (offs[k], lens[k]) for k in plan.fields}, plan.parts) != plan.digest:
        out.append("ids/columns/offsets/lengths do not match the plan digest (arrays modified or damaged)")
    for name, fl in plan.fields.items():
        arr = g[f"{name}/data"]
        if arr.shape != (fl.rows, fl.dim):
            out.append(f"{name}: data shape {arr.shape}, plan says {(fl.rows, fl.dim)}")
            continue
        o, ln = offs[name], lens[name]
        if (ln < 0).any() or (o < 0).any() or ((o + ln) > fl.rows).any():
            out.append(f"{name}: offsets/lengths point outside the data array ({fl.rows} rows)")
        if fl.fixed and (ln != 1).any():
            out.append(f"{name}: one-row field has lengths != 1")
        for a, b in plan.parts:
            if b > a and o[a] % fl.shard_rows:
                out.append(f"{name}: part starting at item {a} is not shard-aligned (row {o[a]})")
            if b - a > 1 and (o[a + 1:b] != (o[a:b - 1] + ln[a:b - 1])).any():
                out.append(f"{name}: rows of items {a}..{b - 1} are not contiguous")
        if check_values:
            out += _check_values(name, arr, fl, o, ln, status.done_mask())
    for p in status.parts:
        if not p.complete:
            msg = f"part {p.part} (items {p.start}..{p.end - 1}) incomplete: {p.items_done}/{p.end - p.start} written"
            if require_complete:
                out.append(msg)
        bad = [i for i in p.failures if not p.start <= i < p.end]
        if bad:
            out.append(f"part {p.part}: failures recorded for items outside it: {bad[:5]}")
    return out


def _check_values(name: str, arr: Any, fl: Any, offs: np.ndarray, lens: np.ndarray, done: np.ndarray) -> list[str]:
    """Decode every written shard once; report undecodable shards and non-finite rows of written items."""
    out: list[str] = []
    spans = [(int(o), int(o + n)) for o, n, d in zip(offs, lens, done) if d and n]
    if not spans:
        return out
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    step = fl.shard_rows
    first, last = int(starts.min()) // step, (int(ends.max()) - 1) // step
    for s in range(first, last + 1):
        a, b = s * step, min(fl.rows, (s + 1) * step)
        touched = (starts < b) & (ends > a)
        if not touched.any():
            continue
        try:
            block = np.asarray(arr[a:b])
        except Exception as e:
            key = arr.metadata.encode_chunk_key((s, 0))
            out.append(f"{name}/data/{key}: shard {s} (rows {a}..{b - 1}) cannot be decoded ({type(e).__name__}: {e})")
            continue
        bad_rows = ~np.isfinite(block).all(axis=1)
        if bad_rows.any():
            for i in np.flatnonzero(touched):
                lo, hi = max(starts[i], a) - a, min(ends[i], b) - a
                if bad_rows[lo:hi].any():
                    out.append(f"{name}: item rows {starts[i]}..{ends[i] - 1} hold non-finite values")
                    break
    return out
