"""The main job end to end at a reduced size: every artifact lands, and a rerun reuses every step."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch

from audioret.demo import main, run_step

SMALL = ["--n-dev", "24", "--n-val", "8", "--n-eval", "8", "--head-epochs", "2", "--finetune-epochs", "1",
         "--batch-size", "16", "--num-workers", "0"]


def test_demo_end_to_end_then_rerun_reuses_everything(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--out", str(out), *SMALL]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "mAP@16_multi" in printed and "chance" in printed and "not real" in printed
    # one start and one end line per step, numbered, so a slow machine shows which step runs
    steps = [line for line in captured.err.splitlines() if re.match(r"\[\d/9\] ", line)]
    assert [line[:5] for line in steps] == [f"[{i}/9]" for i in range(1, 10) for _ in range(2)]
    assert steps[4].startswith("[3/9] train-heads:") and steps[-3].startswith("[8/9] finetune: done in ")
    assert steps[-1].startswith("[9/9] report: done in ") and f"report: {out / 'report' / 'report.html'}" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["steps"]) >= {"corpus", "extract", "heads", "evaluation", "predict", "finetune"}
    assert not any(s["reused"] for s in summary["steps"].values())
    for model in ("heads", "fine-tune", "chance"):
        assert set(summary["models"][model]) >= {"mAP@16_multi", "mAP@10", "R@1", "R@5", "R@10"}
    assert (out / "features.zarr").is_dir() and (out / "heads" / "heads.pt").is_file()
    assert (out / "evaluation" / "metrics.json").is_file()
    with (out / "predictions" / "demo_top16.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["caption", "fname_1"] and len(rows) > 1
    # the report: the printed table's numbers, curves of every training run (the fine-tune's too), evaluations
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["models"] == summary["models"]
    assert {"curves_heads.png", "curves_heads_seed_shape.png", "curves_finetune.png", "models.png",
            "eval_evaluation.png", "eval_evaluation_seed_shape.png"} <= {p.split("/")[-1] for p in report["figures"]}
    assert all((out / "report" / p).stat().st_size > 10_000 for p in report["figures"])
    # rerun (progress is presentation, not an input): every step is reused, one line each
    assert main(["--out", str(out), *SMALL, "--no-progress"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert all(s["reused"] for s in again["steps"].values())
    reused = [line for line in capsys.readouterr().err.splitlines() if re.match(r"\[\d/9\] ", line)]
    assert len(reused) == 10 and all(": reused (" in line for line in reused[1:8])  # the report is redrawn
    assert again["models"] == summary["models"]


def test_run_step_reruns_when_inputs_change(tmp_path):
    calls = []
    make = lambda: calls.append(1) or {"n": len(calls)}  # noqa: E731
    assert run_step(tmp_path, "s", {"a": 1}, make).result == {"n": 1}
    assert run_step(tmp_path, "s", {"a": 1}, make).reused
    assert run_step(tmp_path, "s", {"a": 2}, make).result == {"n": 2}
    # a record that still lists a presentation setting (older demo versions) is reused
    (tmp_path / "s.json").write_text(json.dumps({"inputs": {"a": 3, "progress": False}, "result": {"n": 9}}))
    assert run_step(tmp_path, "s", {"a": 3}, make).result == {"n": 9}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("audioret demo: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_real_data_flags_on_a_bare_machine_are_one_line_and_leave_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo-clotho"
    argv = ["--out", str(out), "--data-path", "data", "--text-model", "no-such-org/no-such-model", "--beats-ckpt",
            "X.pt"]
    assert main(argv) == 2
    assert "--text-model" in _one_line_error(capsys)
    assert main(argv[:-4]) == 2  # only --data-path: the corpus is checked before anything is written
    err = _one_line_error(capsys)
    assert "--data-path" in err and "--download" in err and "download=True" not in err
    assert main([*argv[:-4], "--beats-ckpt", "X.pt"]) == 2
    assert "X.pt" in _one_line_error(capsys)
    assert not out.exists() and not (tmp_path / "data").exists()


def test_download_is_accepted_and_needs_a_data_path(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "d"), "--download"]) == 2
    assert "--download needs --data-path" in _one_line_error(capsys)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint\n", None])
def test_bad_beats_file_is_one_line(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    if content is None:
        torch.save({"state_dict": {}}, bad)  # a torch file, but not an official BEATs checkpoint
    else:
        bad.write_bytes(content)
    assert main(["--out", str(tmp_path / "d"), "--beats-ckpt", str(bad)]) == 2
    assert str(bad) in _one_line_error(capsys)
    assert not (tmp_path / "d").exists()


def test_a_failing_step_removes_only_the_empty_folders_this_run_created(tmp_path, capsys, monkeypatch):
    import audioret.demo as demo
    from audioret.corpora import CorpusError

    def fail(cfg):
        (cfg.out / "corpus" / "sub").mkdir(parents=True)
        raise CorpusError("something the user can fix")

    monkeypatch.setattr(demo, "_run_steps", fail)
    assert main(["--out", str(tmp_path / "new")]) == 2
    _one_line_error(capsys)
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    assert main(["--out", str(mine)]) == 2  # a folder that existed before is never removed
    assert mine.is_dir()


def test_cleanup_after_a_failure_never_raises_and_keeps_files(tmp_path):
    """remove_empty_dirs runs while the real error propagates: a symlinked folder or a file must not
    turn that one-line error into a traceback of its own."""
    from audioret.demo import remove_empty_dirs

    out = tmp_path / "out"
    (out / "a" / "b").mkdir(parents=True)
    (out / "keep").mkdir()
    (out / "keep" / "f.txt").write_text("x")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (out / "link").symlink_to(target, target_is_directory=True)
    remove_empty_dirs(out)
    assert not (out / "a").exists() and (out / "keep" / "f.txt").is_file()
    assert target.is_dir() and (out / "link").is_symlink()
