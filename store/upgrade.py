"""``audioret store upgrade PATH``: a format version 1 store becomes version 2 in place, without
re-extracting: each table's ``plan.json`` and ``parts/<p>.json`` move into zarr attributes
(records.py), after which ``zarr.open_group`` walks the store without a warning.

Crash-safe and repeatable: every new record is written first, then the root's format version is
switched (one atomic ``zarr.json`` write), then the old files are removed; a rerun finishes whichever
step was interrupted. Refused while a writer holds one of the store's lock files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zarr.core.sync import sync

from . import lock, meta
from .core import FeatureStore, StoreLike, local_root, open_store
from .errors import StoreError
from .records import TableRecords


def _tables(st: FeatureStore) -> list[tuple[str, str]]:
    return [(split, kind) for split in st.splits() for kind in st._kind_names(split)]


def _refuse_writers(st: FeatureStore, root: Any) -> None:
    """One line naming a writer's lock file; locks of dead processes of this host (a killed extract) do
    not count (a new writer cannot take one meanwhile: it needs the identity lock the upgrade holds)."""
    found = sorted(root.glob(".audioret.*.lock")) if root is not None and root.is_dir() else []
    held = [p for p in found if not lock.is_stale_file(p)]
    if held:
        raise StoreError(f"store {st.where} is being written ({held[0]} exists): upgrade it when no "
                         f"`audioret extract` runs there (if none runs any more, delete {held[0]})")


def _copy_records(st: FeatureStore, split: str, kind: str) -> bool:
    """Write the version 2 records of one version 1 table (the old files stay); False: no plan."""
    prefix = st._prefix(split, kind)
    old, new = TableRecords(st.zstore, prefix, legacy=True), TableRecords(st.zstore, prefix)
    plan = old.read_plan()
    if plan is None:
        return False
    for p in range(len(plan["parts"])):
        rec = old.read_part(p)
        if rec:
            new.write_part(p, rec)
        elif new.read_part(p):   # left by an interrupted upgrade, since reset by an extract of the old store
            new.delete_part(p)
    new.write_plan(plan)
    return True


def _remove_old_files(st: FeatureStore, split: str, kind: str) -> None:
    """Remove ``plan.json`` / ``parts/<p>.json`` whose content is in the attributes now."""
    prefix = st._prefix(split, kind)
    old, new = TableRecords(st.zstore, prefix, legacy=True), TableRecords(st.zstore, prefix)
    plan = new.read_plan()
    if plan is None:
        return
    for p in range(len(plan["parts"])):
        if new.read_part(p) or not old.read_part(p):
            sync(st.zstore.delete(old.part_key(p)))
    sync(st.zstore.delete(old.plan_key))


def upgrade_store(path: StoreLike, *, storage_options: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """Upgrade the store at ``path`` to the current format; returns (version before, tables moved)."""
    root = local_root(path)
    open_store(path, storage_options=storage_options)   # no store there: one line, before the lock makes its folder
    with lock.identity_lock(root):
        st = open_store(path, mode="r+", storage_options=storage_options)
        before = st.format_version
        _refuse_writers(st, root)
        moved = 0
        if before < 2:
            moved = sum(_copy_records(st, split, kind) for split, kind in _tables(st))
            info = dict(st.group.attrs[meta.ATTR_KEY])
            info["format_version"] = meta.FORMAT_VERSION
            info["metadata"] = {**info["metadata"], "format_version": meta.FORMAT_VERSION}
            st.group.attrs[meta.ATTR_KEY] = info
            st = open_store(path, mode="r+", storage_options=storage_options)
        for split, kind in _tables(st):
            _remove_old_files(st, split, kind)
    return before, moved


__all__ = ["upgrade_store"]
