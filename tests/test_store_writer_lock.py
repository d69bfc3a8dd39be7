"""One writer per role: a second extract of the same shard is refused before it can reset the parts
the first one is writing; stale locks (dead pid of this host, left empty long ago) are taken over,
and taking one over never deletes a live lock."""

from __future__ import annotations

import os
import socket
import time

import pytest

from audioret.cli import main as audioret_main
from audioret.store import StoreError, writer_lock
from audioret.store import lock as L


def _dead_pid() -> int:
    pid = 2 ** 22 - 7
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid -= 1


def test_a_second_writer_of_the_same_role_is_refused_and_others_are_not(tmp_path):
    with writer_lock(tmp_path, "shard-0-of-2", "shard 0/2"):
        with pytest.raises(StoreError, match=r"shard 0/2 is being written by .* \(lock file .*shard-0-of-2"):
            with writer_lock(tmp_path, "shard-0-of-2", "shard 0/2"):
                pass
        with writer_lock(tmp_path, "shard-1-of-2", "shard 1/2"):  # another shard writes at the same time
            pass
    with writer_lock(tmp_path, "shard-0-of-2", "shard 0/2"):  # released
        pass
    assert not list(tmp_path.glob(".audioret.*"))


def test_stale_locks_are_taken_over(tmp_path):
    path = tmp_path / ".audioret.shard-0-of-1.lock"
    path.write_text(f"{socket.gethostname()} {_dead_pid()}\n")
    with writer_lock(tmp_path, "shard-0-of-1", "shard 0/1"):
        assert path.read_text().split() == [socket.gethostname(), str(os.getpid())]
    path.write_text("")  # a holder killed between creating and writing the file
    with pytest.raises(StoreError):
        with writer_lock(tmp_path, "shard-0-of-1", "shard 0/1"):
            pass
    old = time.time() - L.EMPTY_LOCK_AGE_S - 5
    os.utime(path, (old, old))
    with writer_lock(tmp_path, "shard-0-of-1", "shard 0/1"):
        pass


def test_taking_over_a_stale_lock_never_deletes_a_live_one(tmp_path):
    """Two processes saw the same stale holder; the first already replaced it with its own lock."""
    path = tmp_path / ".audioret.x.lock"
    path.write_text("otherhost 123\n")
    L._remove_if_same(path, "thishost 999")  # the stale holder this process read earlier
    assert path.read_text() == "otherhost 123\n"
    assert not list(tmp_path.glob("*.stale.*"))
    L._remove_if_same(path, "otherhost 123")
    assert not path.exists()


def test_extract_refuses_a_duplicate_shard_in_one_line(synth_corpus, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    store.mkdir()
    lock = store / ".audioret.shard-0-of-1.lock"
    lock.write_text(f"{socket.gethostname()} {os.getppid()}\n")  # a live process holds shard 0/1
    argv = ["extract", "--corpus", "clotho", "--data-path", str(synth_corpus), "--store", str(store),
            "--splits", "val", "--audio-encoder", "tiny-beats", "--text-model", "tiny-roberta",
            "--num-workers", "0", "--no-progress"]
    assert audioret_main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "shard 0/1 is being written by" in err[0] and str(lock) in err[0], err
    lock.unlink()
    assert audioret_main(argv) == 0
    assert not lock.exists()
