"""audioret.store: the Zarr v3 feature store between ``extract/`` and everything downstream.

Format: see ``FORMAT.md`` next to this file (versioned; ``FORMAT_VERSION``). Imports nothing
else from audioret. Public API:

- ``create_store(path, metadata, *, overwrite=False, ignore=(), codec="none", storage_options=None)``
- ``open_store(path, *, expect=None, mode="r", storage_options=None) -> FeatureStore``
- ``FeatureStore.plan_audio / plan_text / plan / status / writer / items / audio / text / splits``;
  ``format_version`` (2; a version 1 store is read and extended in its own layout) and
  ``records(split, kind)`` (where the table's plan and part records live: zarr attributes, records.py)
- ``PartWriter.pending / put / fail / note / flush / close`` (context manager; a completed part
  records size + crc32c of every shard file it owns)
- integrity: ``FeatureStore.check_table / check_part`` (quick: size + mtime; full: checksums),
  ``reset_part`` (a damaged part is redone from its start), ``drop_table``, ``partial_files``
- ``ItemTable.ids / captions / column / lengths / offsets / failed / failures / done / valid /
  require_complete / get / batch / vectors / load / pooled``; ``Batch(values, lengths, mask)``
  (batches read local uncompressed stores by pread from the shard files, others through zarr;
  ``ItemTable.fast_reads = False`` forces zarr; see FORMAT.md "Read paths")
- ``upgrade_store(path)`` in ``audioret.store.upgrade`` (``audioret store upgrade``: format 1 -> 2 in place)
- ``verify_store(path) -> list[str]`` (problems, one line each naming the file), ``summarize(path) -> dict``
- ``FeatureDataset`` / ``collate`` (torch, in ``audioret.store.dataset``)
- errors: ``StoreError``, ``StoreMismatchError`` (``.differences``), ``StoreIncompleteError``
"""

from __future__ import annotations

from .core import (AUDIO, CODECS, DEFAULT_CODEC, TEXT, FeatureStore, FieldLayout, PartStatus, SplitPlan,
                   SplitStatus, create_store, local_root, open_store)
from .errors import StoreError, StoreIncompleteError, StoreMismatchError
from .layout import FieldSpec
from .lock import identity_lock, writer_lock
from .meta import FORMAT_VERSION
from .reader import Batch, ItemTable, masked_mean
from .writer import PartWriter

__all__ = ["AUDIO", "TEXT", "CODECS", "DEFAULT_CODEC", "FORMAT_VERSION", "Batch", "FeatureStore", "FieldLayout",
           "FieldSpec", "ItemTable", "PartStatus", "PartWriter", "SplitPlan", "SplitStatus", "StoreError",
           "StoreIncompleteError", "StoreMismatchError", "create_store", "identity_lock", "local_root", "masked_mean",
           "open_store", "writer_lock",
           "verify_store", "summarize"]


def verify_store(path, **kw):  # noqa: ANN001, ANN201 - thin lazy wrapper
    """Check a store; returns a list of problems (empty = fine). See verify.py."""
    from .verify import verify_store as _v

    return _v(path, **kw)


def summarize(path, **kw):  # noqa: ANN001, ANN201
    """Dict summary of a store (splits, counts, sizes, encoder, completeness, failures)."""
    from .verify import summarize as _s

    return _s(path, **kw)
