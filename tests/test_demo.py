"""The main job end to end at a reduced size: every artifact lands, and a rerun reuses every step."""

from __future__ import annotations

import csv
import json

from audioret.demo import main, run_step

SMALL = ["--n-dev", "24", "--n-val", "8", "--n-eval", "8", "--head-epochs", "2", "--finetune-epochs", "1",
         "--batch-size", "16", "--num-workers", "0"]


def test_demo_end_to_end_then_rerun_reuses_everything(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "mAP@16_multi" in printed and "chance" in printed and "not real" in printed
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
    assert main(["--out", str(out), *SMALL]) == 0  # rerun: every step is reused
    again = json.loads((out / "summary.json").read_text())
    assert all(s["reused"] for s in again["steps"].values())
    assert again["models"] == summary["models"]


def test_run_step_reruns_when_inputs_change(tmp_path):
    calls = []
    make = lambda: calls.append(1) or {"n": len(calls)}  # noqa: E731
    assert run_step(tmp_path, "s", {"a": 1}, make).result == {"n": 1}
    assert run_step(tmp_path, "s", {"a": 1}, make).reused
    assert run_step(tmp_path, "s", {"a": 2}, make).result == {"n": 2}
