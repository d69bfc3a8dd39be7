"""Small JSON records next to the zarr arrays, through zarr's own store (local, memory, fsspec).

Local writes are atomic (zarr's LocalStore writes a temp file and renames it); an object store
PUT is atomic per object; MemoryStore is trivially so. Records are therefore either the old or
the new version after a crash, never half written.
"""

from __future__ import annotations

import json
from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync


def write_json(store: Store, key: str, obj: Any) -> None:
    data = json.dumps(obj, indent=1, sort_keys=True).encode()
    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(data)))


def read_json(store: Store, key: str) -> Any | None:
    buf = sync(store.get(key, default_buffer_prototype()))
    return None if buf is None else json.loads(buf.to_bytes())
