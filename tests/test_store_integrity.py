"""The store knows what it holds: part and plan records list every file with size and crc32c,
``verify`` checks them (deleted / truncated / overwritten shards, stray ``.partial`` files,
a missing plan, unreadable metadata), and a part can be reset and rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from audioret.store import create_store, open_store, verify_store
from audioret.store.cli import main

D = 8
N = 30


def _write(root: Path, fail: tuple[int, ...] = (4,), parts: tuple[int, ...] = (0, 1)) -> Path:
    rng = np.random.default_rng(0)
    T, W = rng.integers(1, 40, N), rng.integers(1, 4, N)
    st = create_store(root, {"audio_encoder": {"name": "tiny-beats"}})
    st.plan_audio("dev", [f"c{i}.wav" for i in range(N)], T, W, dim=D, num_parts=2, chunk_rows=8, shard_chunks=2)
    values = {i: (rng.standard_normal((T[i], D)), rng.standard_normal((W[i], D))) for i in range(N)}
    for p in parts:
        with st.writer("dev", "audio", p) as w:
            for i in w.pending():
                if i in fail:
                    w.fail(i, "undecodable")
                else:
                    w.put(i, frames=values[i][0], windows=values[i][1])
    return root


@pytest.fixture()
def store(tmp_path):
    return _write(tmp_path / "s.zarr")


def _records(store: Path) -> list[dict]:
    """The part records, read from the files (format 2: zarr attributes of the groups parts/<p>)."""
    docs = [json.loads(p.read_text()) for p in sorted((store / "dev/audio/parts").glob("*/zarr.json"))]
    return [d["attributes"]["audioret_part"] for d in docs]


def _plan(store: Path) -> dict:
    return json.loads((store / "dev/audio/zarr.json").read_text())["attributes"]["audioret_plan"]


def _shards(store: Path) -> list[Path]:
    return sorted(p for p in (store / "dev/audio").glob("*/data/c/*/*") if p.is_file())


def test_parts_record_every_shard_file_they_wrote(store):
    recorded = {k: v for r in _records(store) for k, v in r["files"].items()}
    on_disk = {str(p.relative_to(store / "dev/audio")) for p in _shards(store)}
    assert {k for k, v in recorded.items() if v is not None} == on_disk
    for key in on_disk:
        data = (store / "dev/audio" / key).read_bytes()
        assert recorded[key]["size"] == len(data)
        import google_crc32c

        assert recorded[key]["crc32c"] == f"{google_crc32c.value(data):08x}"
    plan = _plan(store)
    assert "ids/zarr.json" in plan["files"] and "frames/data/zarr.json" in plan["files"]
    assert plan["files"]["frames/offsets/c/0"]["size"] > 0


def test_a_shard_of_only_fill_values_is_recorded_absent(tmp_path):
    """Every item of part 1 failed: its rows are zeros, zarr writes no file, the record says None."""
    store = _write(tmp_path / "s.zarr", fail=tuple(range(15, 30)))
    rec = _records(store)[1]
    assert rec["files"] and all(v is None for v in rec["files"].values())
    assert verify_store(store) == []


def test_records_without_checksums_still_read_and_verify(store, capsys):
    """A store written before checksums existed: records without "files" read and verify as before."""
    records = open_store(store, mode="r+").records("dev", "audio")
    for p, rec in enumerate(_records(store)):
        rec.pop("files"), rec.pop("hash")
        records.write_part(p, rec)
    d = records.read_plan()
    d.pop("files"), d.pop("hash")
    records.write_plan(d)
    table = open_store(store).audio("dev")
    table.require_complete()
    assert table.get("frames", 0).shape[1] == D
    assert verify_store(store) == []
    assert main(["verify", str(store)]) == 0
    assert "no checksums" in capsys.readouterr().out


def _verify_lines(store: Path, capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["verify", str(store), *args])
    return code, capsys.readouterr().out.strip().splitlines()


def _damage(store: Path, how: str) -> str:
    shard = _shards(store)[0]
    key = str(shard.relative_to(store))
    if how == "deleted":
        shard.unlink()
    elif how == "truncated":
        shard.write_bytes(shard.read_bytes()[:-10])
    elif how == "overwritten":  # same size, other finite values: decodes fine, reads as wrong numbers
        data = bytearray(shard.read_bytes())
        data[:64] = np.full(32, 0.5, np.float16).tobytes()
        shard.write_bytes(bytes(data))
    return key


@pytest.mark.parametrize("how", ["deleted", "truncated", "overwritten"])
def test_verify_names_a_damaged_shard(store, capsys, how):
    key = _damage(store, how)
    code, lines = _verify_lines(store, capsys)
    assert code == 1
    assert any(line.startswith(f"PROBLEM {key}:") for line in lines), lines
    assert "rerun the same `audioret extract` command" in lines[-1]
    if how != "truncated":  # size and mtime: the quick check sees these too
        assert main(["verify", "--quick", str(store)]) == 1


def test_verify_reports_stray_partial_missing_plan_and_bad_metadata(store, capsys):
    stray = store / "dev/audio/frames/data/c/0/0.0123abcd.partial"
    stray.write_bytes(b"half a shard")
    code, lines = _verify_lines(store, capsys)
    assert code == 1 and any("0.0123abcd.partial: stray temp file" in line for line in lines)
    stray.unlink()
    (store / "dev/audio/frames/offsets/zarr.json").unlink()
    code, lines = _verify_lines(store, capsys)
    assert code == 1 and any(line.startswith("PROBLEM dev/audio/frames/offsets/zarr.json: missing") for line in lines)
    (store / "dev/audio/zarr.json").unlink()   # the table group's metadata, which holds its plan
    code, lines = _verify_lines(store, capsys)
    assert code == 1 and "PROBLEM dev/audio/zarr.json: no 'audioret_plan' attribute (the table's layout is gone)" \
        in lines
    (store / "zarr.json").write_text("{ not json")
    code, lines = _verify_lines(store, capsys)
    assert code == 1 and lines[0].startswith(f"PROBLEM {store}/zarr.json: unreadable") and len(lines) == 2


def test_verify_reports_a_file_no_part_wrote(tmp_path, capsys):
    store = _write(tmp_path / "s.zarr", fail=tuple(range(15, 30)))
    absent = next(k for k, v in _records(store)[1]["files"].items() if v is None)
    (store / "dev/audio" / absent).parent.mkdir(parents=True, exist_ok=True)
    (store / "dev/audio" / absent).write_bytes(b"x" * 100)
    code, lines = _verify_lines(store, capsys)
    assert code == 1 and any(f"dev/audio/{absent}: exists, but the part wrote no such file" in x for x in lines)
