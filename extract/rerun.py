"""A rerun keeps nothing stale: damaged parts, failed items and changed sources are redone.

Before a table is extracted again, this shard's completed parts are checked quickly (size and
mtime of each shard file against the part record; a checksum only when the mtime moved but the
size did not), stray ``*.partial`` files older than a minute are removed, and a part is reset (record,
then shard files) and rewritten from its first item when

* one of its files differs from its record (deleted, truncated, overwritten),
* it holds a failed item (retried on every rerun; an item whose header still cannot be read at
  planning time is not, its result would be the same),
* an audio item's source file has another size or mtime than when it was read,
* it was never started (``items_done == 0``: leftovers of a lost record are cleared first).

Whole parts are redone, never single items, so values stay identical to an uninterrupted run.
Damage to a table's own metadata (plan files, an array's ``zarr.json``), clips that are readable
now but were not when the table was planned, and sources whose length changed need a new plan:
a single-shard run drops and re-plans the table; a sharded run refuses with one line (one shard
must not delete the others' work).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audioret.store import FeatureStore, StoreError
from audioret.store.integrity import local_path

from .data import source_stat
from .shard import Shard

log = logging.getLogger(__name__)
PARTIAL_AGE_S = 60.0


@dataclass
class RerunReport:
    """What a rerun found and redid in one table (for the summary and the log)."""

    damaged_parts: list[int] = field(default_factory=list)
    retried_items: int = 0          # failed items whose part is redone
    changed_items: int = 0          # items whose source changed since they were read
    partials_removed: int = 0
    replanned: str | None = None    # why the table was planned afresh


def table_exists(st: FeatureStore, split: str, kind: str) -> bool:
    return kind in st._kind_names(split)


def rebuild_or_refuse(st: FeatureStore, split: str, kind: str, shard: Shard, why: str) -> str:
    """Drop the table so it is planned afresh (one shard), or refuse with one line (several)."""
    if shard.count > 1:
        raise StoreError(f"store {st.where}: {split}/{kind} {why}; rerun `audioret extract` as one shard "
                         "(without --num-shards, torchrun or a SLURM array) to plan that table afresh")
    log.warning("%s/%s %s: planning the table afresh (all its items are extracted again)", split, kind, why)
    st.drop_table(split, kind)
    return why


def check_metadata(st: FeatureStore, split: str, kind: str, shard: Shard) -> str | None:
    """Re-plan a table whose plan files or array metadata are damaged; returns why, or None."""
    if not table_exists(st, split, kind) or not st.has(split, kind):
        return None  # nothing yet, or its plan gone: planning writes it again and keeps matching parts
    problems = st.check_table(split, kind, quick=True)
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return rebuild_or_refuse(st, split, kind, shard, f"has damaged metadata: {problems[0]}{more}")


def changed_sources(st: FeatureStore, split: str, paths: Sequence[Path]) -> set[int]:
    """Audio items whose source file has another size or mtime than when it was read (a file that is
    gone is not counted: its stored features stay valid and users may delete sources after extracting)."""
    out, gone = set(), 0
    for p in st.status(split, "audio").parts:
        for i, then in p.notes.items():
            now = source_stat(paths[i])
            if now is None:
                gone += 1
            elif then is not None and list(now) != list(then):
                out.add(i)
    if gone:
        log.info("%s/audio: %d source file(s) are gone; their stored features are kept", split, gone)
    return out


def repair_parts(st: FeatureStore, split: str, kind: str, parts: Sequence[int], *,
                 changed: Collection[int] = (), final_failures: Mapping[int, str] | None = None,
                 report: RerunReport | None = None) -> RerunReport:
    """Reset every part of ``parts`` that must be redone (see the module docstring); fills ``report``.

    ``final_failures``: failed items that need no retry (their header still cannot be read)."""
    report = report if report is not None else RerunReport()
    report.partials_removed = _remove_partials(st, split, kind)
    status = st.status(split, kind)
    keep = dict(final_failures or {})
    rerun = any(p.complete or p.items_done for p in status.parts)  # a first run has nothing to clear
    for p in parts:
        ps = status.parts[p]
        damage = st.check_part(split, kind, ps, quick=True)
        retry = [i for i in ps.failures if i not in keep]
        stale = [i for i in changed if ps.start <= i < ps.start + ps.items_done]
        fresh = rerun and not ps.complete and ps.items_done == 0
        if not (damage or retry or stale or fresh):
            continue
        if damage:
            more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
            log.warning("%s/%s part %d: %s%s: rewriting the part", split, kind, p, damage[0], more)
            report.damaged_parts.append(p)
        report.retried_items += len(retry)
        report.changed_items += len(stale)
        st.reset_part(split, kind, p)
    if report.retried_items or report.changed_items:
        log.info("%s/%s: retrying %d failed item(s), re-extracting %d item(s) whose source changed",
                 split, kind, report.retried_items, report.changed_items)
    return report


def _remove_partials(st: FeatureStore, split: str, kind: str) -> int:
    """Remove the table's stray ``*.partial`` files (a killed zarr write) older than ``PARTIAL_AGE_S``:
    a live write of one shard takes well under a second, so an older one is dead, whichever process
    (or shard) left it, and a younger one may be another writer's file in flight."""
    now = time.time()
    found = []
    for key in st.partial_files(f"{split}/{kind}"):
        path = local_path(st.zstore, key)
        try:
            if path is None or now - path.stat().st_mtime > PARTIAL_AGE_S:
                found.append(key)
        except FileNotFoundError:  # renamed or removed meanwhile
            continue
    st.remove(found)
    if found:
        log.info("%s/%s: removed %d stray .partial file(s) of interrupted writes", split, kind, len(found))
    return len(found)
