"""Fault injection on the writer side: concurrent writers with other settings, Ctrl-C, a store path
that is a file, a codec that differs from the store's, read-only and full output folders."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audioret.store import StoreMismatchError, create_store, open_store, verify_store
from audioret.store.lock import LOCK_NAME, identity_lock

SPLIT = "val"


def _argv(corpus: Path, store: Path, *extra: str) -> list[str]:
    return ["--data-path", str(corpus), "--store", str(store), "--corpus", "clotho", "--splits", SPLIT,
            "--audio-encoder", "tiny-beats", "--text-model", "tiny-roberta", "--items-per-part", "2",
            "--text-items-per-part", "8", "--batch-windows", "4", "--text-batch-size", "8",
            "--num-workers", "0", "--no-progress", *extra]


def _extract(corpus: Path, store: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "audioret", "extract", *_argv(corpus, store, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---- one writer identity per store -------------------------------------------------------------
def _create(path: str, seconds: float, barrier: mp.Barrier, out: mp.Queue) -> None:
    barrier.wait()
    try:
        create_store(path, {"preprocessing": {"max_seconds": seconds}})
        out.put((seconds, "ok"))
    except StoreMismatchError as err:
        out.put((seconds, str(err)))


def test_two_writers_with_other_metadata_started_together_one_is_refused(tmp_path):
    ctx = mp.get_context("fork")
    for attempt in range(6):
        path = str(tmp_path / f"s{attempt}.zarr")
        barrier, out = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_create, args=(path, s, barrier, out)) for s in (30.0, 5.0)]
        for p in procs:
            p.start()
        results = dict(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(60)
        winners = [s for s, r in results.items() if r == "ok"]
        assert len(winners) == 1, results
        loser = results[35.0 - winners[0]]
        assert "preprocessing.max_seconds" in loser
        assert open_store(path).metadata["preprocessing"]["max_seconds"] == winners[0]
        assert not (Path(path) / LOCK_NAME).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = tmp_path / "s.zarr"
    root.mkdir()
    (root / LOCK_NAME).write_text(f"{socket.gethostname()} {dead.pid}\n")
    with identity_lock(root, wait=2):
        assert (root / LOCK_NAME).read_text().split() == [socket.gethostname(), str(os.getpid())]
    assert not (root / LOCK_NAME).exists()


def test_a_live_lock_of_another_host_is_reported_with_the_fix(tmp_path):
    from audioret.store import StoreError

    root = tmp_path / "s.zarr"
    root.mkdir()
    (root / LOCK_NAME).write_text("some-other-host 1\n")
    with pytest.raises(StoreError, match=f"delete {root / LOCK_NAME}"):
        with identity_lock(root, wait=0.2):
            pass


def test_extracts_with_other_max_seconds_started_together(synth_corpus, tmp_path):
    """Both exited 0 and left a store of mixed preprocessing (2 of 5 tries) before the lock."""
    for attempt in range(2):
        store = tmp_path / f"s{attempt}.zarr"
        procs = {s: _extract(synth_corpus, store, "--passes", "audio", "--max-seconds", s) for s in ("30", "5")}
        done = {s: (p.wait(300), p.stderr.read()) for s, p in procs.items()}
        codes = sorted(rc for rc, _ in done.values())
        assert codes == [0, 2], done
        loser = next(err for rc, err in done.values() if rc == 2)
        winner = next(s for s, (rc, _) in done.items() if rc == 0)
        assert "preprocessing.max_seconds" in loser and "Traceback" not in loser
        assert len(loser.strip().splitlines()) == 1, loser
        assert open_store(store).metadata["preprocessing"]["max_seconds"] == float(winner)
        assert verify_store(store) == []


# ---- --store pointing at a file; --codec on an existing store -----------------------------------
def test_store_that_is_a_file_is_one_line(synth_corpus, tmp_path, capsys):
    from audioret.extract.cli import main

    target = tmp_path / "features.zarr"
    target.write_text("not a store\n")
    assert main(_argv(synth_corpus, target, "--passes", "text")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"audioret extract: error: --store {target} is a file, not a folder: give a folder path "
                   "(a new one, or an existing store)")
    with pytest.raises(Exception, match="is a file, not a folder"):
        open_store(target)


def test_codec_differing_from_the_stores_is_warned(synth_corpus, tmp_path, caplog):
    from audioret.extract import ExtractConfig, run

    store = tmp_path / "s.zarr"
    kw = dict(data_path=synth_corpus, store=store, corpus="clotho", splits=(SPLIT,), passes=("text",),
              text_model="tiny-roberta", text_items_per_part=8, text_batch_size=8, num_workers=0,
              progress=False)
    run(ExtractConfig(codec="zstd", **kw))
    caplog.clear()
    run(ExtractConfig(codec="none", **kw))
    lines = [r.getMessage() for r in caplog.records if "--codec" in r.getMessage()]
    assert lines == [f"store {store} was made with --codec zstd; --codec none is ignored for it (a codec "
                     "applies to new stores only; pass --overwrite to re-extract with none)"]
    assert open_store(store).codec == "zstd"


# ---- Ctrl-C ---------------------------------------------------------------------------------------
def test_ctrl_c_during_extract_is_one_line_exit_130_and_a_rerun_completes(synth_corpus, tmp_path):
    store = tmp_path / "s.zarr"
    extra = ("--splits", "dev", "--passes", "audio", "--items-per-part", "1", "--batch-windows", "1")
    proc = _extract(synth_corpus, store, *extra)
    deadline = time.monotonic() + 240
    while proc.poll() is None and not list(store.glob("dev/audio/parts/*/zarr.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.skip(f"the extract finished (rc {proc.returncode}) before a part was written: nothing to interrupt")
    proc.send_signal(signal.SIGINT)
    rc, err = proc.wait(120), proc.stderr.read()
    assert rc == 130, err
    assert err.strip().splitlines()[-1] == ("audioret extract: stopped by Ctrl-C; completed parts are kept: "
                                            "rerun the same command to resume")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    status = open_store(store).status("dev", "audio")
    assert not status.complete  # stopped midway
    rerun = _extract(synth_corpus, store, *extra)
    assert rerun.wait(300) == 0, rerun.stderr.read()
    assert verify_store(store) == []
    assert not list(store.rglob("*.partial"))


# ---- read-only and full output folders ------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, size, ro)`` -> a fresh small tmpfs (tests run as root, who ignores permission
    bits: only a read-only mount or a full disk makes a write fail); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (read-only / full output folders)")
    mounted: list[Path] = []

    def mount(name: str, size: str, ro: bool = False) -> Path:
        where = tmp_path / name
        where.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"mount -t tmpfs not permitted here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".partial", ".tmp")) or "write-probe" in p.name
            or (p.is_file() and p.stat().st_size == 0)]


def test_extract_into_a_read_only_folder_is_one_line_before_any_model_loads(synth_corpus, tmpfs, capsys):
    from audioret.extract.cli import main

    ro = tmpfs("ro", "1m", ro=True)
    assert main(_argv(synth_corpus, ro / "s.zarr", "--passes", "text")) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"audioret extract: error: cannot write {ro} (read-only file system): point --store at a "
                   "writable folder")


def test_extract_refuses_a_disk_too_small_for_the_plan(synth_corpus, tmpfs, capsys):
    from audioret.extract.cli import main

    small = tmpfs("small", "300k")
    assert main(_argv(synth_corpus, small / "s.zarr", "--splits", "dev", "--passes", "audio")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("audioret extract: error: dev/audio needs about ") and "free space there" in err
    assert _leftovers(small) == []


def test_disk_full_while_writing_is_one_line_and_resumes(synth_corpus, tmpfs, tmp_path):
    """A compressed store is only warned about up front; the disk then fills while writing."""
    small = tmpfs("full", "400k")
    store = small / "s.zarr"
    extra = ("--splits", "dev", "--passes", "audio", "--codec", "zstd")
    proc = _extract(synth_corpus, store, *extra)
    rc, err = proc.wait(300), proc.stderr.read()
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("audioret extract: error: cannot write ") and \
        "(no space left on the device): free space on that disk or point --store at another one" in err
    assert _leftovers(small) == []
    subprocess.run(["mount", "-o", "remount,size=8m", str(small)], check=True)
    rerun = _extract(synth_corpus, store, *extra)
    assert rerun.wait(300) == 0, rerun.stderr.read()
    assert verify_store(store) == []


@pytest.fixture
def heads_store(tmp_path):
    import torch

    from audioret.train_heads.store_reader import write_feature_split
    from audioret.train_heads.synthetic import synthetic_split

    torch.set_num_threads(1)
    path = tmp_path / "synth.zarr"
    for name, n, seed in (("dev", 64, 1), ("val", 32, 2), ("eval", 32, 3)):
        write_feature_split(path, synthetic_split(name, n, seed=seed))
    return path


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_train_heads_into_a_read_only_or_full_out_is_one_line(heads_store, tmpfs, capsys, fault):
    from audioret.train_heads.cli import main

    disk = tmpfs(fault, "1m" if fault == "read-only" else "24k", ro=fault == "read-only")
    out = disk / "heads"
    rc = main(["--store", str(heads_store), "--out", str(out), "--max-epochs", "2", "--rampdown-epochs", "1",
               "--floor", "none", "--embed-dim", "64", "--hidden-dim", "128", "--batch-size", "32",
               "--no-progress", "--logger", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    why = "read-only file system" if fault == "read-only" else "no space left on the device"
    assert err[-1].startswith("audioret train-heads: error: cannot write ") and f"({why})" in err[-1], err
    assert "--out" in err[-1]
    assert _leftovers(disk) == [], _leftovers(disk)


def test_atomic_write_text_leaves_no_temp_file_on_a_full_disk(tmpfs):
    from audioret.config import atomic_write_text

    disk = tmpfs("full", "8k")
    with pytest.raises(OSError):
        atomic_write_text(disk / "summary.json", "x" * 200_000)
    assert list(disk.iterdir()) == []


def test_shards_of_one_extract_started_together_still_cooperate(synth_corpus, tmp_path):
    """The lock serializes only the identity check: both shards write their parts and the store completes."""
    store = tmp_path / "s.zarr"
    procs = [_extract(synth_corpus, store, "--passes", "audio", "--num-shards", "2", "--shard-index", str(i))
             for i in range(2)]
    done = [(p.wait(300), p.stderr.read()) for p in procs]
    assert [rc for rc, _ in done] == [0, 0], done
    assert open_store(store).status(SPLIT, "audio").complete
    assert verify_store(store) == []
    assert not (store / LOCK_NAME).exists()


def test_finetune_into_a_full_out_is_one_line_and_leaves_no_partial_checkpoint(synth_corpus, tmpfs):
    from audioret.errors import OutputError
    from audioret.finetune.config import FinetuneConfig
    from audioret.finetune.run import run as finetune

    disk = tmpfs("full", "64k")
    out = disk / "run"
    cfg = FinetuneConfig(data_path=synth_corpus, out=out, max_epochs=1, audio_encoder="tiny-beats",
                         text_model="tiny-roberta", n_workers=0, precision="32-true", batch_size=2,
                         batch_size_eval=4, limit_train_batches=1, limit_val_batches=1, test=False, seed=3)
    with pytest.raises(OutputError) as caught:
        finetune(cfg)
    msg = str(caught.value)
    assert msg.startswith("cannot write ") and "(no space left on the device)" in msg and "--out" in msg, msg
    assert _leftovers(disk) == []
    assert not list(disk.rglob("*.ckpt")), list(disk.rglob("*"))


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_corpus_synth_into_a_read_only_or_full_out_is_one_line(tmpfs, capsys, fault):
    from audioret.corpora.cli import main

    disk = tmpfs(fault, "1m" if fault == "read-only" else "64k", ro=fault == "read-only")
    rc = main(["synth", "--out", str(disk / "corpus"), "--n-dev", "8", "--n-val", "2", "--n-eval", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    why = "read-only file system" if fault == "read-only" else "no space left on the device"
    assert rc == 2 and err[-1].startswith("audioret corpus synth: error: cannot write ") and f"({why})" in err[-1], err
    assert "--out" in err[-1] and "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("command,fault", [("evaluate", "read-only"), ("predict", "read-only"), ("predict", "full")])
def test_evaluate_and_predict_into_a_read_only_or_full_out_are_one_line(heads_store, tmpfs, tmp_path, capsys,
                                                                         command, fault):
    from audioret.cli import main

    heads = tmp_path / "heads"
    assert main(["train-heads", "--store", str(heads_store), "--out", str(heads), "--max-epochs", "1",
                 "--floor", "none", "--embed-dim", "16", "--hidden-dim", "32", "--no-progress",
                 "--logger", "none"]) == 0
    capsys.readouterr()
    disk = tmpfs(fault, "1m" if fault == "read-only" else "8k", ro=fault == "read-only")
    rc = main([command, "--checkpoint", str(heads / "heads.pt"), "--store", str(heads_store), "--split", "val",
               "--out", str(disk / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    why = "read-only file system" if fault == "read-only" else "no space left on the device"
    assert rc == 2 and err[-1].startswith(f"audioret {command}: error: cannot write ") and f"({why})" in err[-1], err
    assert "--out" in err[-1]
    assert _leftovers(disk) == [], _leftovers(disk)
