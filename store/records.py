"""Where a table's bookkeeping lives: its plan and one completion record per part.

Format version 2 keeps both in zarr attributes, so a store is a plain Zarr hierarchy that
``zarr.open_group`` (xarray, ...) walks without a warning::

    <split>/<kind>/zarr.json                  group; attributes["audioret_plan"] = the plan (+ "files")
    <split>/<kind>/parts/zarr.json            group, no attributes
    <split>/<kind>/parts/<p:05d>/zarr.json    group; attributes["audioret_part"] = part p's record

One document per part, replaced whole by the part's one writer (atomic, as every ``zarr.json``:
temp file + rename on local disks, one PUT on object stores), so writers of different parts never
write the same file. Version 1 stores keep ``plan.json`` and ``parts/<p:05d>.json`` next to the arrays
(zarr warns about both when walking): they are read, and extended, in that old place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from zarr.abc.store import Store
from zarr.core.sync import sync

from . import _io
from .integrity import local_path

PLAN_ATTR = "audioret_plan"
PART_ATTR = "audioret_part"
PARTS = "parts"
LEGACY_PLAN = "plan.json"   # format version 1


def table_prefix(root_path: str, split: str, kind: str) -> str:
    """Store key prefix of one item table (``root_path``: the root group's path, usually "")."""
    return f"{root_path}/{split}/{kind}" if root_path else f"{split}/{kind}"


def _group_doc(attributes: dict[str, Any]) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


@dataclass(frozen=True)
class TableRecords:
    """The plan and part records of the table at ``prefix``; ``legacy``: a format version 1 store."""

    zstore: Store
    prefix: str
    legacy: bool = False

    @property
    def plan_key(self) -> str:
        return f"{self.prefix}/{LEGACY_PLAN}" if self.legacy else f"{self.prefix}/zarr.json"

    def read_plan(self) -> dict[str, Any] | None:
        doc = _io.read_json(self.zstore, self.plan_key)
        if self.legacy or doc is None:
            return doc
        return (doc.get("attributes") or {}).get(PLAN_ATTR)

    def write_plan(self, plan: dict[str, Any]) -> None:
        """Last step of planning: the table group (and its ``parts`` group) exist before, so the plan
        never names arrays that are not there."""
        if self.legacy:
            _io.write_json(self.zstore, self.plan_key, plan)
            return
        _io.write_json(self.zstore, f"{self.prefix}/{PARTS}/zarr.json", _group_doc({}))
        doc = _io.read_json(self.zstore, self.plan_key) or _group_doc({})
        doc["attributes"] = {**(doc.get("attributes") or {}), PLAN_ATTR: plan}
        _io.write_json(self.zstore, self.plan_key, doc)

    def part_key(self, part: int) -> str:
        return f"{self.prefix}/{PARTS}/{part:05d}" + (".json" if self.legacy else "/zarr.json")

    def read_part(self, part: int) -> dict[str, Any]:
        """Part ``part``'s record, {} when it has none (never started, or reset)."""
        doc = _io.read_json(self.zstore, self.part_key(part)) or {}
        return doc if self.legacy else dict((doc.get("attributes") or {}).get(PART_ATTR) or {})

    def write_part(self, part: int, record: dict[str, Any]) -> None:
        _io.write_json(self.zstore, self.part_key(part), record if self.legacy else _group_doc({PART_ATTR: record}))

    def delete_part(self, part: int) -> None:
        """Remove the record (and, on a local disk, the part's then empty folder, which zarr would
        otherwise report as an object it does not recognise)."""
        key = self.part_key(part)
        sync(self.zstore.delete(key))
        folder = None if self.legacy else local_path(self.zstore, key.rsplit("/", 1)[0])
        if folder is not None:
            try:
                os.rmdir(folder)
            except OSError:   # absent, or holding something else: leave it
                pass


__all__ = ["PLAN_ATTR", "PART_ATTR", "PARTS", "LEGACY_PLAN", "TableRecords", "table_prefix"]
