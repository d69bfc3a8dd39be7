"""Create/open a store, plan a split, hand out writers and readers.

Typical writer side (``extract/``)::

    st = create_store(path, metadata)                       # refuses other metadata unless overwrite
    plan = st.plan_audio("dev", clip_ids, num_frames, num_windows, dim=768, durations=d, num_parts=8)
    for part in st.status("dev", "audio").pending_parts[rank::world]:
        with st.writer("dev", "audio", part) as w:
            for i in w.pending():                           # resumes after a crash
                w.put(i, frames=f_i, windows=w_i)           # or w.fail(i, "undecodable: ...")

Reader side: ``t = open_store(path, expect={...}).items("dev", "audio")`` (see reader.py).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.errors import ContainsArrayError, ContainsGroupError

from . import _io, integrity, layout, lock, meta
from .errors import StoreError, StoreMismatchError
from .layout import FieldSpec
from .plan import FieldLayout, PartStatus, SplitPlan, SplitStatus
from .reader import ItemTable
from .records import TableRecords, table_prefix
from .writer import PartWriter

AUDIO = "audio"
TEXT = "text"
CODECS = ("none", "blosc-zstd", "blosc-lz4", "zstd")
DEFAULT_CODEC = "none"  # measured: zstd saves ~8% on feature-like fp16 but halves cold reads (FORMAT.md)
_ID_CHUNK = 1 << 16

StoreLike = str | os.PathLike | Store


def _compressors(codec: str, itemsize: int) -> Any:
    from zarr.codecs import BloscCodec, ZstdCodec

    if codec == "none":
        return None
    if codec == "blosc-zstd":
        return [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=itemsize)]
    if codec == "blosc-lz4":
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle", typesize=itemsize)]
    if codec == "zstd":
        return [ZstdCodec(level=3)]
    raise StoreError(f"unknown codec {codec!r}: expected one of {CODECS}")


def _describe(path: StoreLike) -> str:
    return str(path) if not isinstance(path, Store) else f"{type(path).__name__}({path})"


def _open_group(path: StoreLike, mode: str, storage_options: Mapping[str, Any] | None) -> zarr.Group:
    if isinstance(path, Store):
        return zarr.open_group(store=path, mode=mode)
    text = os.fspath(path)
    if "://" in text:
        return zarr.open_group(store=text, mode=mode, storage_options=dict(storage_options or {}))
    return zarr.open_group(store=zarr.storage.LocalStore(text, read_only=mode == "r"), mode=mode)


def _exists(path: StoreLike, storage_options: Mapping[str, Any] | None) -> zarr.Group | None:
    try:
        return _open_group(path, "r", storage_options)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return None
    except ValueError as e:  # e.g. a half-written or edited zarr.json (JSONDecodeError)
        raise StoreError(f"{_describe(path)}/zarr.json: unreadable store metadata ({type(e).__name__}: {e}); "
                         "restore it, or pass --overwrite (audioret extract) to start the store afresh") from None


def local_root(path: StoreLike) -> Path | None:
    """The folder of a store on a local file system (None: an object store or an in-memory one)."""
    if isinstance(path, zarr.storage.LocalStore):
        return Path(path.root)
    if isinstance(path, Store) or "://" in os.fspath(path):
        return None
    return Path(os.fspath(path))


def create_store(path: StoreLike, metadata: Mapping[str, Any], *, overwrite: bool = False,
                 ignore: Iterable[str] = (), codec: str = DEFAULT_CODEC,
                 storage_options: Mapping[str, Any] | None = None) -> FeatureStore:
    """Create a store, or reopen it for writing when it was made with the same metadata.

    Metadata keys (dotted, under ``ignore``) and ``created``/``package_versions`` are not compared.
    A store with other metadata raises StoreMismatchError (both values per key) unless
    ``overwrite=True``, which deletes it first. Safe to call from every writer process: the check
    and the write happen under the store's identity lock (lock.py), so of two writers with other
    metadata started together exactly one creates the store and the other is refused.
    """
    if codec not in CODECS:
        raise StoreError(f"unknown codec {codec!r}: expected one of {CODECS}")
    root = local_root(path)
    _refuse_file(root)
    with lock.identity_lock(root):
        return _create_locked(path, metadata, overwrite, ignore, codec, storage_options, root)


def _refuse_file(root: Path | None) -> None:
    if root is not None and root.exists() and not root.is_dir():
        raise StoreError(f"--store {root} is a file, not a folder: give a folder path (a new one, or an "
                         "existing store)")


def _create_locked(path: StoreLike, metadata: Mapping[str, Any], overwrite: bool, ignore: Iterable[str],
                   codec: str, storage_options: Mapping[str, Any] | None, root: Path | None,
                   _retry: bool = False) -> FeatureStore:
    where = _describe(path)
    old = _exists(path, storage_options)
    if old is not None and not overwrite:
        info = old.attrs.get(meta.ATTR_KEY)
        if info is None:
            if _has_members(old):
                raise StoreError(f"{where} exists and is not an audioret store; pick another path or pass "
                                 "--overwrite (audioret extract) to replace it")
        else:
            _check_version(where, info)
            d = meta.diff(info["metadata"], dict(metadata), only_expected=False, ignore=ignore)
            if d:
                raise StoreMismatchError(where, d, hint="pass --overwrite (audioret extract) to "
                                         "replace the store, or write to another path")
            return FeatureStore(_open_group(path, "r+", storage_options), where, writable=True)
    # "a", never "w", unless asked: a writer without the lock (an object store) may be creating it now
    try:
        group = _open_group(path, "w" if overwrite else "a", storage_options)
    except (ContainsArrayError, ContainsGroupError):
        if overwrite or _retry:
            raise
        # another process created the group between our check and our create: compare with it instead
        return _create_locked(path, metadata, False, ignore, codec, storage_options, root, _retry=True)
    if overwrite:
        lock.reassert(root)   # "w" emptied the folder, lock file included
    full = dict(metadata)
    full.update(format_version=meta.FORMAT_VERSION, created=meta.now_iso(),
                package_versions=meta.package_versions())
    group.attrs[meta.ATTR_KEY] = {"format_version": meta.FORMAT_VERSION, "metadata": full, "codec": codec}
    return FeatureStore(group, where, writable=True)


def open_store(path: StoreLike, *, expect: Mapping[str, Any] | None = None, mode: str = "r",
               storage_options: Mapping[str, Any] | None = None) -> FeatureStore:
    """Open an existing store (``mode`` "r" or "r+"); ``expect`` = metadata subset that must match.

    Raises StoreError when there is no store, StoreMismatchError naming every differing key with
    the store's and the expected value (e.g. another audio encoder or sample rate).
    """
    where = _describe(path)
    root = local_root(path)
    _refuse_file(root)
    if mode != "r" and root is not None and root.is_dir():
        with lock.identity_lock(root):   # a writer compares while no other one writes the identity
            return _open_checked(path, where, expect, mode, storage_options)
    return _open_checked(path, where, expect, mode, storage_options)


def _open_checked(path: StoreLike, where: str, expect: Mapping[str, Any] | None, mode: str,
                  storage_options: Mapping[str, Any] | None) -> FeatureStore:
    group = _exists(path, storage_options)
    if group is None or meta.ATTR_KEY not in group.attrs:
        raise StoreError(f"no audioret store at {where}: expected a zarr group written by "
                         "`audioret extract` (check the path)")
    _check_version(where, group.attrs[meta.ATTR_KEY])
    if mode != "r":
        group = _open_group(path, mode, storage_options)
    st = FeatureStore(group, where, writable=mode != "r")
    if expect:
        d = meta.diff(st.metadata, expect, only_expected=True)
        if d:
            raise StoreMismatchError(where, d, hint="re-extract features with the expected encoder/"
                                     "preprocessing, or open the store that matches them")
    return st


def _has_members(group: zarr.Group) -> bool:
    """Any array or group below."""
    with _no_lock_warnings():
        return any(True for _ in group.members())


@contextlib.contextmanager
def _no_lock_warnings() -> Iterator[None]:
    """zarr warns about our lock files in the root while a writer holds them (lock.py): no member."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Object at \.audioret\.(.+\.)?lock is not recognized")
        yield


def _check_version(where: str, info: Mapping[str, Any]) -> None:
    v = info.get("format_version")
    if v not in meta.READABLE_VERSIONS:
        raise StoreError(f"store {where} has format version {v}, this audioret reads versions "
                         f"{', '.join(map(str, meta.READABLE_VERSIONS))}: re-extract or use the matching "
                         "audioret release")


class FeatureStore:
    """An opened store. Splits hold item tables of kind "audio" and "text"."""

    def __init__(self, group: zarr.Group, where: str, writable: bool) -> None:
        self.group = group
        self.where = where
        self.writable = writable

    # ---- description ---------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.group.attrs[meta.ATTR_KEY]["metadata"])

    @property
    def codec(self) -> str:
        return str(self.group.attrs[meta.ATTR_KEY].get("codec", DEFAULT_CODEC))

    @property
    def format_version(self) -> int:
        """1: plan and part records as JSON files in the table groups (read and extended there);
        2: in zarr attributes (records.py)."""
        return int(self.group.attrs[meta.ATTR_KEY].get("format_version", 1))

    @property
    def zstore(self) -> Store:
        return self.group.store

    def _prefix(self, split: str, kind: str) -> str:
        return table_prefix(self.group.path, split, kind)

    def records(self, split: str, kind: str) -> TableRecords:
        """Where the table's plan and part records are kept (depends on the store's format version)."""
        legacy = self.format_version < 2
        if legacy and self._upgraded_since():
            if self.writable:   # its records would go to the old place, which the upgraded store ignores
                raise StoreError(f"store {self.where} was upgraded to format version {meta.FORMAT_VERSION} (audioret "
                                 "store upgrade) while this process had it open: rerun (it resumes where it stopped)")
            legacy = False      # a reader follows the records to their new place
        return TableRecords(self.zstore, self._prefix(split, kind), legacy=legacy)

    def _upgraded_since(self) -> bool:
        """True when ``audioret store upgrade`` switched this (version 1, as opened) store since it was opened."""
        key = f"{self.group.path}/zarr.json" if self.group.path else "zarr.json"
        doc = _io.read_json(self.zstore, key) or {}
        now = int(((doc.get("attributes") or {}).get(meta.ATTR_KEY) or {}).get("format_version", 1))
        return now != self.format_version

    def splits(self) -> list[str]:
        with _no_lock_warnings():
            return sorted(name for name, _ in self.group.groups())

    def kinds(self, split: str) -> list[str]:
        return [k for k in (AUDIO, TEXT) if self.has(split, k)] + sorted(
            k for k in self._kind_names(split) if k not in (AUDIO, TEXT) and self.has(split, k))

    def _kind_names(self, split: str) -> list[str]:
        """Folders (keys) under the split, table groups or not: a table whose zarr.json is lost still
        counts, so verify reports it and a rerun plans it again."""
        base = f"{self.group.path}/{split}" if self.group.path else split

        async def _names() -> list[str]:
            return [k async for k in self.zstore.list_dir(base)]

        return sorted(n for n in sync(_names()) if n != "zarr.json" and "." not in n)

    def has(self, split: str, kind: str) -> bool:
        return self.records(split, kind).read_plan() is not None

    def plan_of(self, split: str, kind: str) -> SplitPlan:
        d = self.records(split, kind).read_plan()
        if d is None:
            raise StoreError(f"store {self.where} has no planned {kind!r} items for split {split!r} "
                             f"(splits present: {self.splits()}); run extraction for it first")
        return SplitPlan.from_json(d)

    # ---- planning ----------------------------------------------------------------------
    def plan(self, split: str, kind: str, ids: Sequence[str], fields: Mapping[str, FieldSpec], *,
             columns: Mapping[str, Sequence[Any] | np.ndarray] | None = None, num_parts: int | None = None,
             chunk_rows: int | None = None, shard_chunks: int = layout.DEFAULT_SHARD_CHUNKS,
             codec: str | None = None, attrs: Mapping[str, Any] | None = None) -> SplitPlan:
        """Lay out ``len(ids)`` items with the given fields; idempotent and deterministic.

        If the split/kind is already planned, checks the new inputs give the same plan
        (StoreMismatchError otherwise) and returns it. ``num_parts`` (default: one per ~512 MiB)
        is the unit of work of one writer. ``chunk_rows``/``shard_chunks`` override the chunking
        (tests use tiny ones). ``attrs``: JSON-able split-level metadata (corpus split name, ...).
        """
        self._require_writable()
        return _plan(self, split, kind, ids, fields, columns or {}, num_parts, chunk_rows, shard_chunks,
                     codec or self.codec, dict(attrs or {}))

    def plan_audio(self, split: str, clip_ids: Sequence[str], num_frames: Sequence[int],
                   num_windows: Sequence[int], *, dim: int, durations: Sequence[float] | None = None,
                   window_dim: int | None = None, dtype: str = "float16",
                   extra_fields: Mapping[str, FieldSpec] | None = None, **kw: Any) -> SplitPlan:
        """Audio items: ``frames`` [T_i, dim], ``windows`` [W_i, window_dim or dim]; column ``duration``."""
        fields = {"frames": FieldSpec(num_frames, dim, dtype),
                  "windows": FieldSpec(num_windows, window_dim or dim, dtype), **(extra_fields or {})}
        cols = {} if durations is None else {"duration": np.asarray(durations, dtype=np.float32)}
        return self.plan(split, AUDIO, clip_ids, fields, columns=cols, **kw)

    def plan_text(self, split: str, captions: Sequence[str], clip_index: Sequence[int],
                  num_tokens: Sequence[int], *, dim: int, dtype: str = "float16", **kw: Any) -> SplitPlan:
        """Text items: ``tokens`` [L_j, dim], ``first`` [dim]; column ``clip_index`` (caption -> audio row)."""
        fields = {"tokens": FieldSpec(num_tokens, dim, dtype), "first": FieldSpec(None, dim, dtype)}
        cols = {"clip_index": np.asarray(clip_index, dtype=np.int32)}
        return self.plan(split, TEXT, captions, fields, columns=cols, **kw)

    # ---- writing / status / reading ---------------------------------------------------------
    def status(self, split: str, kind: str) -> SplitStatus:
        """Completion of every part (reads the part records only)."""
        plan = self.plan_of(split, kind)
        records = self.records(split, kind)
        parts = []
        for p, (a, b) in enumerate(plan.parts):
            rec = records.read_part(p)
            parts.append(PartStatus(p, a, b, int(rec.get("items_done", 0)), bool(rec.get("complete", False)),
                                    {int(k): v for k, v in rec.get("failures", {}).items()}, rec.get("files"),
                                    {int(k): v for k, v in rec.get("notes", {}).items()}))
        return SplitStatus(split, kind, plan.num_items, parts)

    def writer(self, split: str, kind: str, part: int, *, flush_bytes: int | None = None,
               background: bool = False) -> Any:
        """A PartWriter for part ``part`` (one process per part; see writer.py)."""
        self._require_writable()
        return PartWriter(self, self.plan_of(split, kind), part, flush_bytes=flush_bytes, background=background)

    def items(self, split: str, kind: str, *, cache_bytes: int = 512 << 20) -> Any:
        """An ItemTable reader (ids, columns, lengths, batches, whole-field loads; see reader.py)."""
        return ItemTable(self, self.plan_of(split, kind), cache_bytes=cache_bytes)

    def audio(self, split: str, **kw: Any) -> Any:
        return self.items(split, AUDIO, **kw)

    def text(self, split: str, **kw: Any) -> Any:
        return self.items(split, TEXT, **kw)

    # ---- integrity (see integrity.py) ----------------------------------------------------------
    def plan_files(self, split: str, kind: str) -> dict[str, Any] | None:
        """The plan's file records (None: planned before checksums existed, or no plan)."""
        d = self.records(split, kind).read_plan() or {}
        return d.get("files")

    def check_table(self, split: str, kind: str, *, quick: bool = False, on_file: Any = None) -> list[str]:
        """``<store key>: <problem>`` for each file of the plan that changed since it was written."""
        files = self.plan_files(split, kind) or {}
        prefix = self._prefix(split, kind)
        return [f"{prefix}/{p}" for p in integrity.check_files(self.zstore, prefix, files, quick=quick,
                                                               on_file=on_file)]

    def check_part(self, split: str, kind: str, part: PartStatus, *, quick: bool = False,
                   on_file: Any = None) -> list[str]:
        """``<store key>: <problem>`` for each shard file of a completed part that changed since."""
        if not part.complete or part.files is None:
            return []
        prefix = self._prefix(split, kind)
        return [f"{prefix}/{p}" for p in integrity.check_files(self.zstore, prefix, part.files, quick=quick,
                                                               on_file=on_file)]

    def part_file_keys(self, split: str, kind: str, part: int) -> list[str]:
        """Table-relative keys of the shard files part ``part`` owns (from its offsets and lengths)."""
        plan = self.plan_of(split, kind)
        g = self.group[f"{split}/{kind}"]
        a, b = plan.parts[part]
        out: list[str] = []
        for k, f in plan.fields.items():
            r0, r1 = integrity.part_rows(np.asarray(g[f"{k}/offsets"][a:b]), np.asarray(g[f"{k}/lengths"][a:b]))
            out += integrity.shard_keys(g[f"{k}/data"], k, r0, r1, f.shard_rows)
        return out

    def reset_part(self, split: str, kind: str, part: int) -> None:
        """Forget part ``part`` (record first, then its shard files) so a writer redoes it from its start."""
        self._require_writable()
        prefix = self._prefix(split, kind)
        self.records(split, kind).delete_part(part)
        for key in self.part_file_keys(split, kind, part):
            sync(self.zstore.delete(f"{prefix}/{key}"))

    def drop_table(self, split: str, kind: str) -> None:
        """Delete a whole item table (plan, arrays, part records) so it can be planned afresh."""
        self._require_writable()
        for key in integrity.list_keys(self.zstore, self._prefix(split, kind)):
            sync(self.zstore.delete(key))

    def partial_files(self, prefix: str = "") -> list[str]:
        """Store keys of leftover ``*.partial`` temp files (a killed zarr write) under ``prefix``."""
        full = f"{self.group.path}/{prefix}".strip("/") if self.group.path else prefix
        return sorted(k for k in integrity.list_keys(self.zstore, full) if integrity.is_partial(k))

    def remove(self, keys: Sequence[str]) -> None:
        """Delete store keys (e.g. stray ``*.partial`` files)."""
        self._require_writable()
        for key in keys:
            sync(self.zstore.delete(key))

    def add_metadata(self, updates: Mapping[str, Any]) -> None:
        """Merge ``updates`` into the metadata (a dict value merges into the stored dict key by key):
        for settings a later writer is the first to know, e.g. the audio settings of a store whose first
        pass was text only. Call it under the identity lock, after comparing what is stored."""
        self._require_writable()
        info = dict(self.group.attrs[meta.ATTR_KEY])
        merged = dict(info["metadata"])
        for key, value in updates.items():
            old = merged.get(key)
            merged[key] = {**old, **value} if isinstance(old, Mapping) and isinstance(value, Mapping) else value
        self.group.attrs[meta.ATTR_KEY] = {**info, "metadata": merged}

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"store {self.where} is open read-only: use create_store(...) or "
                             "open_store(..., mode='r+') to write")

    def __repr__(self) -> str:
        return f"FeatureStore({self.where!r}, splits={self.splits()})"


def _plan(st: FeatureStore, split: str, kind: str, ids: Sequence[str], fields: Mapping[str, FieldSpec],
          columns: Mapping[str, Any], num_parts: int | None, chunk_rows: int | None, shard_chunks: int,
          codec: str, attrs: dict[str, Any]) -> SplitPlan:
    ids = [str(i) for i in ids]
    n = len(ids)
    cols = {k: np.asarray(v) for k, v in columns.items()}
    for name, col in cols.items():
        if col.shape != (n,):
            raise StoreError(f"column {name!r} has shape {col.shape}, expected ({n},) = one value per item")
    lens: dict[str, np.ndarray] = {}
    for name, spec in fields.items():
        ln = np.ones(n, dtype=np.int64) if spec.lengths is None else np.asarray(spec.lengths, dtype=np.int64)
        if ln.shape != (n,) or (ln < 0).any():
            raise StoreError(f"field {name!r}: lengths must be {n} non-negative ints, got shape {ln.shape}")
        if spec.dtype not in ("float16", "float32"):
            raise StoreError(f"field {name!r}: dtype {spec.dtype!r}, expected 'float16' or 'float32'")
        lens[name] = ln
    total = sum(int(lens[k].sum()) * s.dim * np.dtype(s.dtype).itemsize for k, s in fields.items())
    parts = layout.split_parts(n, num_parts or layout.auto_num_parts(total, n))
    flayout: dict[str, FieldLayout] = {}
    offsets: dict[str, np.ndarray] = {}
    for name, spec in fields.items():
        itemsize = np.dtype(spec.dtype).itemsize
        cr = chunk_rows or layout.auto_chunk_rows(spec.dim, itemsize)
        off, rows = layout.ragged_offsets(lens[name], parts, cr * shard_chunks)
        offsets[name] = off
        flayout[name] = FieldLayout(spec.dim, spec.dtype, rows, cr, cr * shard_chunks, spec.lengths is None)
    dg = layout.digest(ids, cols, {k: (offsets[k], lens[k]) for k in fields}, parts)
    plan = SplitPlan(split, kind, n, parts, flayout, {k: str(v.dtype) for k, v in cols.items()}, dg, attrs)
    records = st.records(split, kind)
    old = records.read_plan()
    if old is not None:
        old_plan = SplitPlan.from_json(old)
        d = meta.diff(_plan_summary(old_plan), _plan_summary(plan), only_expected=False)
        if d:
            raise StoreMismatchError(st.where, d, what=f"plan of {split}/{kind}",
                                     hint="the corpus or encoder changed since this split was planned: "
                                     "extract into a new store or pass overwrite")
        return old_plan
    g = _require_group(_require_group(st.group, split), kind)
    _put_array(g, "ids", np.array(ids, dtype=object) if n else np.array([], dtype=object), str, (_ID_CHUNK,))
    for name, col in cols.items():
        _put_array(g, f"col/{name}", col, col.dtype, (_ID_CHUNK,))
    compressors_for = {k: _compressors(codec, np.dtype(v.dtype).itemsize) for k, v in flayout.items()}
    for name, fl in flayout.items():
        _put_array(g, f"{name}/offsets", offsets[name], np.int64, (_ID_CHUNK,))
        _put_array(g, f"{name}/lengths", lens[name].astype(np.int32), np.int32, (_ID_CHUNK,))
        _ensure_data(g, f"{name}/data", fl, compressors_for[name])
    records.write_plan({**plan.to_json(), **_plan_files(st, g, plan)})
    return plan


def _plan_files(st: FeatureStore, g: zarr.Group, plan: SplitPlan) -> dict[str, Any]:
    """Size + checksum of every file the planner wrote (per-item arrays, every array's zarr.json)."""
    keys = integrity.array_files(g["ids"], "ids")
    for name in plan.columns:
        keys += integrity.array_files(g[f"col/{name}"], f"col/{name}")
    for name in plan.fields:
        keys += integrity.array_files(g[f"{name}/offsets"], f"{name}/offsets")
        keys += integrity.array_files(g[f"{name}/lengths"], f"{name}/lengths")
        keys.append(f"{name}/data/zarr.json")
    return {"hash": integrity.HASH, "files": integrity.describe_all(st.zstore, st._prefix(plan.split, plan.kind),
                                                                    keys)}


def _require_group(parent: zarr.Group, name: str) -> zarr.Group:
    """``require_group`` that tolerates another process creating the same group at the same moment
    (zarr then raises ContainsGroupError, or KeyError while its zarr.json is being renamed)."""
    for _ in range(5):
        try:
            return parent.require_group(name)
        except (ContainsGroupError, KeyError, FileNotFoundError):
            time.sleep(0.05)
    return parent[name]


def _plan_summary(p: SplitPlan) -> dict[str, Any]:
    return {"num_items": p.num_items, "parts": [list(x) for x in p.parts], "digest": p.digest,
            "fields": {k: vars(v) for k, v in p.fields.items()}, "columns": p.columns}


def _put_array(g: zarr.Group, name: str, values: np.ndarray, dtype: Any, chunks: tuple[int]) -> None:
    """Create (or reuse, when another process created it) a small 1-D array and write it."""
    shape = (len(values),)
    chunks = (max(1, min(chunks[0], shape[0] or 1)),)
    try:
        arr = g.create_array(name, shape=shape, dtype=dtype, chunks=chunks, overwrite=False)
    except (ContainsArrayError, ContainsGroupError):
        arr = g[name]
    if shape[0]:
        arr[:] = values


def _ensure_data(g: zarr.Group, name: str, fl: FieldLayout, compressors: Any) -> None:
    try:
        g.create_array(name, shape=(fl.rows, fl.dim), dtype=fl.dtype, chunks=(fl.chunk_rows, fl.dim),
                       shards=(fl.shard_rows, fl.dim), compressors=compressors, fill_value=0,
                       overwrite=False)
    except (ContainsArrayError, ContainsGroupError):
        arr = g[name]
        if arr.shape != (fl.rows, fl.dim) or str(arr.dtype) != fl.dtype:
            raise StoreMismatchError(str(g.store), {name: ((arr.shape, str(arr.dtype)), ((fl.rows, fl.dim), fl.dtype))},
                                     what="data array") from None
