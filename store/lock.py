"""The identity lock: one lock file in a store's root serializes checking and writing its metadata.

Two extracts with other settings started together could each find no store, create it, and
write their own metadata (the last one wins; the other then writes features of other
preprocessing into it). The lock file is created with ``O_CREAT | O_EXCL`` (atomic on local
file systems and on NFSv3+), holds ``host pid``, and is held only while the identity is read,
compared and written, so shards of one extract (torchrun ranks, SLURM array tasks) with the same
settings still write their parts at the same time. A lock left by a dead process of this host
is removed; one of another host is waited for, then reported with what to do.
Reentrant within a process (extract takes it around reading and creating the store).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError

LOCK_NAME = ".audioret.lock"
WAIT_SECONDS = 60.0
_held: dict[str, int] = {}   # lock path -> nesting depth in this process


def lock_path(root: str | os.PathLike) -> Path:
    return Path(root) / LOCK_NAME


@contextmanager
def identity_lock(root: str | os.PathLike | None, wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the store's lock file (no-op for ``None``: an object store or an in-memory store)."""
    if root is None:
        yield
        return
    path = lock_path(root)
    key = os.path.abspath(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    _acquire(path, wait)
    _held[key] = 1
    try:
        yield
    finally:
        _held.pop(key, None)
        _release(path)


def reassert(root: str | os.PathLike | None) -> None:
    """Write the lock file again after the holder emptied the store folder (``--overwrite``)."""
    if root is not None and _held.get(os.path.abspath(lock_path(root))):
        _create(lock_path(root))


def _me() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, (_me() + "\n").encode())
    finally:
        os.close(fd)
    return True


@contextmanager
def writer_lock(root: str | os.PathLike | None, name: str, what: str) -> Iterator[None]:
    """Exclusive, without waiting: the lock of one writer role (``name``, e.g. one shard of an extract),
    so a second process in the same role is refused before it resets or rewrites what the first one is
    writing (a duplicated SLURM task, a command started again while the first still runs)."""
    if root is None:
        yield
        return
    path = Path(root) / f".audioret.{name}.lock"
    _make_folder(path)
    with identity_lock(root):   # never while `audioret store upgrade` (which holds it) runs
        _create_writer_lock(path, what)
    try:
        yield
    finally:
        _release(path)


def _create_writer_lock(path: Path, what: str) -> None:
    while not _create(path):
        holder = _read(path)
        if holder is not None and _is_stale(holder, path):
            _remove_if_same(path, holder)
            continue
        raise StoreError(f"store {path.parent}: {what} is being written by {holder or 'another process'} "
                         f"(lock file {path}); a second writer would undo its work: wait for it to finish, or "
                         f"stop it and rerun (if none runs any more, delete {path})")


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"--store {path.parent} is a file, not a folder: give a folder path "
                         "(a new one, or an existing store)") from None


def _acquire(path: Path, wait: float) -> None:
    _make_folder(path)
    deadline = time.monotonic() + wait
    while not _create(path):
        holder = _read(path)
        if holder is not None and _is_stale(holder, path):
            _remove_if_same(path, holder)
            continue
        if time.monotonic() > deadline:
            raise StoreError(f"store {path.parent} is locked by {holder or 'another process'} (lock file {path}) "
                             f"for more than {wait:.0f} s: if no extract runs there any more, delete {path} "
                             "and rerun")
        time.sleep(0.05)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


EMPTY_LOCK_AGE_S = 10.0  # a holder killed between creating the file and writing its name leaves it empty


def _is_stale(holder: str, path: Path) -> bool:
    """True for a lock of a process of this host that no longer runs, or one left empty long ago."""
    if not holder:
        try:
            return time.time() - path.stat().st_mtime > EMPTY_LOCK_AGE_S
        except FileNotFoundError:
            return False
    host, _, pid = holder.rpartition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def is_stale_file(path: Path) -> bool:
    """True for a lock file left by a process of this host that no longer runs (or one left empty)."""
    holder = _read(path)
    return holder is not None and _is_stale(holder, path)


def _remove_if_same(path: Path, holder: str) -> None:
    """Take a stale lock away without ever deleting a live one: move it aside first (atomic), then
    look at what was moved; a lock another process created meanwhile is put back."""
    aside = path.with_name(f"{path.name}.stale.{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    try:
        if _read(aside) != holder:
            try:
                os.link(aside, path)  # back in place, unless yet another lock exists by now
            except FileExistsError:
                pass
    finally:
        aside.unlink(missing_ok=True)


def _release(path: Path) -> None:
    if _read(path) == _me():
        try:
            path.unlink()
        except FileNotFoundError:
            pass
