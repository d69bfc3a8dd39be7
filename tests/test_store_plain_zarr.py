"""A store is a plain Zarr hierarchy: ``zarr.open_group`` and a walk over every group and array raise no
warning (format 2 keeps the plan and part records in zarr attributes), also after a rerun reset a part.
Format 1 stores (``plan.json`` and ``parts/<p>.json`` beside the arrays) still read, verify and extend."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from audioret.extract import ExtractConfig, run
from audioret.store import StoreError, create_store, open_store, verify_store
from audioret.store.meta import ATTR_KEY

D = 8


def _walk(path: Path) -> list[str]:
    """Open with plain zarr and touch every node (attributes, and the first row of every array), with
    every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        root = zarr.open_group(zarr.storage.LocalStore(path, read_only=True), mode="r")
        names = []
        for name, node in root.members(max_depth=None):
            dict(node.attrs)
            if isinstance(node, zarr.Array) and node.shape[0]:
                node[:1]
            names.append(name)
    return sorted(names)


@pytest.fixture(scope="module")
def extracted(synth_corpus, tmp_path_factory):
    store = tmp_path_factory.mktemp("plain_zarr") / "s.zarr"
    run(ExtractConfig(data_path=synth_corpus, store=store, corpus="clotho", splits=("val",),
                      audio_encoder="tiny-beats", text_model="tiny-roberta", items_per_part=2, text_items_per_part=8,
                      batch_windows=4, text_batch_size=8, num_workers=0, progress=False))
    return store


def test_an_extracted_store_walks_without_a_warning(extracted):
    names = _walk(extracted)
    assert {"val/audio/frames/data", "val/audio/windows/data", "val/text/tokens/data", "val/audio/parts/00000"} \
        <= set(names)
    assert not list(extracted.rglob("plan.json")) and not list(extracted.rglob("parts/0*.json"))
    assert verify_store(extracted) == []


def test_a_rerun_that_resets_a_part_leaves_a_clean_hierarchy(extracted, synth_corpus, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(extracted, store)
    shard = next(p for p in sorted((store / "val/audio/frames/data/c").rglob("*")) if p.is_file())
    shard.write_bytes(shard.read_bytes()[:-10])   # damaged: the rerun resets and rewrites its part
    result = run(ExtractConfig(data_path=synth_corpus, store=store, corpus="clotho", splits=("val",),
                               passes=("audio",), audio_encoder="tiny-beats", text_model="tiny-roberta",
                               items_per_part=2, text_items_per_part=8, batch_windows=4, text_batch_size=8,
                               num_workers=0, progress=False))
    assert result.reruns["val/audio"].damaged_parts
    assert _walk(store) == _walk(extracted)
    assert verify_store(store) == []


def test_a_reset_part_leaves_no_folder_zarr_cannot_read(tmp_path):
    st = _small(tmp_path / "s.zarr")
    st.reset_part("dev", "audio", 1)
    assert not (tmp_path / "s.zarr/dev/audio/parts/00001").exists()
    _walk(tmp_path / "s.zarr")
    assert st.status("dev", "audio").pending_parts == [1]


def _small(path: Path, version: int | None = None):
    """A two-part audio table, written with the given store format version (None: the current one)."""
    rng = np.random.default_rng(0)
    T, W = rng.integers(1, 20, 12), rng.integers(1, 3, 12)
    st = create_store(path, {"audio_encoder": {"name": "tiny-beats"}})
    if version is not None:  # what an older audioret wrote: same arrays, the records in its place
        st.group.attrs[ATTR_KEY] = {**st.group.attrs[ATTR_KEY], "format_version": version}
        st = open_store(path, mode="r+")
    st.plan_audio("dev", [f"c{i}.wav" for i in range(12)], T, W, dim=D, num_parts=2, chunk_rows=4, shard_chunks=2)
    for p in range(2):
        with st.writer("dev", "audio", p) as w:
            for i in w.pending():
                w.put(i, frames=np.full((T[i], D), i, np.float32), windows=np.full((W[i], D), -i, np.float32))
    return st


def test_a_format_1_store_reads_verifies_and_extends_in_its_own_layout(tmp_path):
    path = tmp_path / "old.zarr"
    _small(path, version=1)
    assert json.loads((path / "dev/audio/plan.json").read_text())["num_items"] == 12
    assert json.loads((path / "dev/audio/parts/00001.json").read_text())["complete"] is True
    assert "audioret_plan" not in json.loads((path / "dev/audio/zarr.json").read_text())["attributes"]
    st = open_store(path, mode="r+")
    assert st.format_version == 1 and st.audio("dev").get("frames", 5)[0, 0] == 5
    assert verify_store(path) == []
    st.reset_part("dev", "audio", 0)            # a rerun's repair, in the old place
    assert not (path / "dev/audio/parts/00000.json").exists()
    with st.writer("dev", "audio", 0) as w:
        T = st.audio("dev").lengths("frames")
        W = st.audio("dev").lengths("windows")
        for i in w.pending():
            w.put(i, frames=np.full((T[i], D), i, np.float32), windows=np.full((W[i], D), -i, np.float32))
    assert (path / "dev/audio/parts/00000.json").exists() and not (path / "dev/audio/parts/00000").exists()
    assert verify_store(path) == []


def test_a_store_of_a_newer_format_is_one_line(tmp_path):
    st = _small(tmp_path / "s.zarr")
    st.group.attrs[ATTR_KEY] = {**st.group.attrs[ATTR_KEY], "format_version": 99}
    with pytest.raises(StoreError, match="format version 99, this audioret reads versions 1, 2: re-extract"):
        open_store(tmp_path / "s.zarr")


def test_upgrade_moves_a_format_1_store_into_attributes_in_place(tmp_path, capsys):
    from audioret.store.cli import main

    path = tmp_path / "old.zarr"
    _small(path, version=1)
    frames = open_store(path).audio("dev").load("frames")[0].copy()
    with pytest.raises(UserWarning, match="is not recognized as a component"):   # what issue 20 saw
        _walk(path)
    assert main(["upgrade", str(path)]) == 0
    assert "format version 1 -> 2 (1 tables)" in capsys.readouterr().out
    assert not list(path.rglob("plan.json")) and not list(path.rglob("parts/0*.json"))
    _walk(path)
    st = open_store(path)
    assert st.format_version == 2 and st.metadata["format_version"] == 2
    assert np.array_equal(st.audio("dev").load("frames")[0], frames) and st.status("dev", "audio").complete
    assert verify_store(path) == []
    assert main(["upgrade", str(path)]) == 0 and "already format version 2" in capsys.readouterr().out


def test_upgrade_is_refused_while_an_extract_writes(tmp_path, capsys):
    from audioret.store.cli import main

    path = tmp_path / "old.zarr"
    _small(path, version=1)
    (path / ".audioret.shard-0-of-1.lock").write_text("somehost 1\n")
    assert main(["upgrade", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is being written" in err[0] and ".audioret.shard-0-of-1.lock" in err[0]
    assert open_store(path).format_version == 1


def test_a_rerun_of_an_interrupted_upgrade_drops_records_an_extract_reset_since(tmp_path):
    """Upgrade killed after copying the records (store still version 1); an extract then resets part 0 in
    the old place; the rerun must not revive the copied record (a 'complete' part whose shards are gone)."""
    from audioret.store.cli import main
    from audioret.store.upgrade import _copy_records

    path = tmp_path / "old.zarr"
    st = _small(path, version=1)
    assert _copy_records(st, "dev", "audio")          # the interrupted upgrade's first step
    st.reset_part("dev", "audio", 0)                   # a rerun of extract on the (still) version 1 store
    assert main(["upgrade", str(path)]) == 0
    st = open_store(path)
    assert st.format_version == 2
    part0 = st.status("dev", "audio").parts[0]
    assert not part0.complete and part0.items_done == 0
    _walk(path)


def test_a_writer_that_opened_a_format_1_store_stops_after_an_upgrade(tmp_path):
    from audioret.store.upgrade import upgrade_store

    path = tmp_path / "old.zarr"
    st = _small(path, version=1)
    st.reset_part("dev", "audio", 1)
    opened = open_store(path, mode="r+")               # an extract opened it (version 1) ...
    upgrade_store(path)                                # ... then the upgrade ran before it wrote
    with pytest.raises(StoreError, match="upgraded to format version 2 .* while this process had it open"):
        opened.writer("dev", "audio", 1)
    assert not list(path.rglob("parts/0*.json"))
    _walk(path)


def test_a_writer_lock_is_not_taken_while_an_upgrade_holds_the_store(tmp_path):
    """Upgrade checks for writer locks under the identity lock; a writer lock taken meanwhile (after the
    check) would let an extract write old-format records into the upgraded store."""
    import socket
    import subprocess
    import threading

    from audioret.store import lock

    path = tmp_path / "old.zarr"
    _small(path, version=1)
    other = subprocess.Popen(["sleep", "60"])          # a live process of this host "runs the upgrade"
    try:
        lock.lock_path(path).write_text(f"{socket.gethostname()} {other.pid}\n")
        entered = threading.Event()

        def writer() -> None:
            with lock.writer_lock(path, "shard-0-of-1", "shard 0/1"):
                entered.set()

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        assert not entered.wait(1.0), "the writer lock was taken while the identity lock was held"
        lock.lock_path(path).unlink()                  # the upgrade finished
        assert entered.wait(30.0)
        t.join(30.0)
    finally:
        other.kill()
        other.wait()


def test_a_writer_lock_of_a_dead_process_does_not_block_the_upgrade(tmp_path, capsys):
    import socket
    import subprocess

    from audioret.store.cli import main

    path = tmp_path / "old.zarr"
    _small(path, version=1)
    dead = subprocess.Popen(["true"])
    dead.wait()   # an extract of this host that was killed: its lock file stays behind
    (path / ".audioret.shard-0-of-1.lock").write_text(f"{socket.gethostname()} {dead.pid}\n")
    assert main(["upgrade", str(path)]) == 0, capsys.readouterr().err
    assert open_store(path).format_version == 2


def test_a_reader_that_opened_a_format_1_store_follows_an_upgrade(tmp_path):
    from audioret.store.upgrade import upgrade_store

    path = tmp_path / "old.zarr"
    _small(path, version=1)
    reader = open_store(path)                          # e.g. a training run's store, opened before
    upgrade_store(path)
    assert reader.status("dev", "audio").complete      # the plan and part records: read in their new place
    assert reader.audio("dev").get("frames", 5)[0, 0] == 5


def test_upgrade_of_a_wrong_path_is_one_line_and_creates_nothing(tmp_path, capsys):
    from audioret.store.cli import main

    assert main(["upgrade", str(tmp_path / "typo" / "s.zarr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no audioret store" in err[0]
    assert not (tmp_path / "typo").exists()
