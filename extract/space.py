"""Checks before long work: the store folder is writable, and its disk has room for what is planned.

Hours of encoding should not end in a full disk or a read-only mount. Both checks are cheap
(a probe file, ``shutil.disk_usage``) and run before the models load (writable) or right after a
table is planned (free space), when its size is known: rows x dim x bytes of the parts still to
write (all shards': they share the disk). An uncompressed store is refused when it does not fit;
a compressed one only warned about, since its size depends on the values (zstd saved ~8 % on
features, FORMAT.md) and a refusal would be a guess.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from audioret.store import FeatureStore, StoreError

log = logging.getLogger(__name__)

MARGIN = 1.02   # part records, plan files and the metadata beside the features


def nearest_folder(path: Path) -> Path:
    """``path`` or its closest existing ancestor (where the store folder will be made)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(store: Path) -> None:
    """Write and remove a probe file where the store goes (root ignores permission bits, so only
    trying tells a read-only mount); OSError (EROFS, EACCES, ...) passes up as the disk fault."""
    folder = nearest_folder(store)
    if not folder.is_dir():
        where = f"--store {store}" if folder == Path(store).absolute() else f"--store {store}: {folder}"
        raise StoreError(f"{where} is a file, not a folder: give a folder path (a new one, or an existing store)")
    probe = folder / f".audioret-write-probe.{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644))
    except OSError as err:  # name the folder, not the probe
        raise OSError(err.errno, err.strerror, str(folder)) from None
    probe.unlink()


def pending_bytes(st: FeatureStore, split: str, kind: str) -> int:
    """Bytes of feature rows in the parts of a table not yet complete (every shard's)."""
    plan, status = st.plan_of(split, kind), st.status(split, kind)
    total = 0
    for name, fl in plan.fields.items():
        lengths = np.asarray(st.items(split, kind).lengths(name), dtype=np.int64)
        rows = sum(int(lengths[p.start + p.items_done:p.end].sum()) for p in status.parts if not p.complete)
        total += rows * fl.dim * np.dtype(fl.dtype).itemsize
    return total


def check_free_space(st: FeatureStore, store: Path, split: str, kind: str) -> None:
    """Refuse (uncompressed) or warn (compressed) when the table's remaining rows exceed free space."""
    need = int(pending_bytes(st, split, kind) * MARGIN)
    free = shutil.disk_usage(nearest_folder(store)).free
    if need <= free:
        return
    text = (f"{split}/{kind} needs about {_size(need)} more but {_size(free)} are free on the disk of {store}")
    if st.codec == "none":
        raise StoreError(f"{text}: free space there or point --store at another disk, then rerun the same "
                         "command (completed parts are kept)")
    log.warning("%s (before --codec %s compression, which depends on the values): it may not fit", text, st.codec)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
