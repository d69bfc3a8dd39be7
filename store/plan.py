"""What an item table is: its layout plan and its completion status (types only, no I/O).

Below ``core`` (which opens stores and hands out readers and writers), ``reader`` and ``writer``, so
those three import these types from here and not from each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

PLAN_VERSION = 1


@dataclass(frozen=True)
class FieldLayout:
    """Where one field lives: flat [rows, dim] array chunked by chunk_rows, sharded by shard_rows."""

    dim: int
    dtype: str
    rows: int
    chunk_rows: int
    shard_rows: int
    fixed: bool  # exactly one row per item


@dataclass(frozen=True)
class SplitPlan:
    """The deterministic layout of one item table (split x kind)."""

    split: str
    kind: str
    num_items: int
    parts: list[tuple[int, int]]
    fields: dict[str, FieldLayout]
    columns: dict[str, str]
    digest: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_parts(self) -> int:
        return len(self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"version": PLAN_VERSION, "split": self.split, "kind": self.kind, "num_items": self.num_items,
                "parts": [list(p) for p in self.parts], "columns": self.columns, "digest": self.digest,
                "attrs": self.attrs, "fields": {k: vars(v).copy() for k, v in self.fields.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SplitPlan:
        return cls(split=d["split"], kind=d["kind"], num_items=int(d["num_items"]),
                   parts=[(int(a), int(b)) for a, b in d["parts"]], columns=dict(d["columns"]),
                   digest=d["digest"], attrs=dict(d.get("attrs", {})),
                   fields={k: FieldLayout(**v) for k, v in d["fields"].items()})


@dataclass(frozen=True)
class PartStatus:
    part: int
    start: int
    end: int
    items_done: int             # prefix of the part durably written
    complete: bool
    failures: dict[int, str]    # global item index -> reason
    files: dict[str, Any] | None = None   # table-relative key -> {size, crc32c, ...} | None (absent)
    notes: dict[int, Any] = field(default_factory=dict)   # item -> note (e.g. source size, mtime)


@dataclass(frozen=True)
class SplitStatus:
    split: str
    kind: str
    num_items: int
    parts: list[PartStatus]

    @property
    def complete(self) -> bool:
        return all(p.complete for p in self.parts)

    @property
    def pending_parts(self) -> list[int]:
        return [p.part for p in self.parts if not p.complete]

    @property
    def items_done(self) -> int:
        return sum(p.items_done for p in self.parts)

    @property
    def failures(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for p in self.parts:
            out.update(p.failures)
        return out

    def done_mask(self) -> np.ndarray:
        """bool [N]: True where the item's rows are durably written (failed items included)."""
        mask = np.zeros(self.num_items, dtype=bool)
        for p in self.parts:
            mask[p.start:p.start + p.items_done] = True
        return mask


class TableHost(Protocol):
    """What a table's reader and writer use of the opened store (``core.FeatureStore``)."""

    group: Any   # the root zarr.Group
    where: str   # the store's path, for messages

    @property
    def zstore(self) -> Any: ...   # zarr.abc.store.Store

    def status(self, split: str, kind: str) -> SplitStatus: ...

    def records(self, split: str, kind: str) -> Any: ...   # records.TableRecords
