"""audioret report: from tiny runs, every figure exists and is a real picture, the numbers equal the runs'
metrics.json, and runs without validation or with one epoch still give a report. Pure parts (log
parsing, best epoch, groups, curves over k) are checked on hand-made inputs."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path

import pytest
import torch

from audioret.report import data as D
from audioret.report.build import Report, run as build_report
from audioret.report.cli import main
from audioret.report.config import ReportConfig
from audioret.train_heads.config import TrainHeadsConfig
from audioret.train_heads.run import Splits, run as run_heads
from audioret.train_heads.synthetic import synthetic_split


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- PNG checks (no decoder needed)

def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """(width, height, raw scanlines) of an 8-bit RGB(A) PNG, decoded with zlib only."""
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(blob):
        n, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    return width, height, zlib.decompress(idat)


def assert_real_picture(path: Path) -> None:
    w, h, raw = png_pixels(path)
    assert w >= 400 and h >= 300, (path, w, h)
    assert path.stat().st_size > 15_000, path  # a blank or near-blank canvas compresses to a few kB
    assert len(set(raw[::7])) > 20, path  # many distinct byte values: lines, text, colours


# --------------------------------------------------------------------------- tiny runs

@pytest.fixture(scope="module")
def splits():
    return Splits(synthetic_split("dev", 96, seed=1), {"val": synthetic_split("val", 32, seed=2),
                                                         "test": synthetic_split("eval", 32, seed=3)},
                  {"path": "memory"})


def heads_cfg(out: Path, **kw) -> TrainHeadsConfig:
    base = dict(out=out, max_epochs=3, warmup_epochs=1, rampdown_epochs=2, embed_dim=32, hidden_dim=64,
                batch_size=32, progress=False, floor="none")
    return TrainHeadsConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, splits):
    """Two seeds x two learning rates: the comparison pools seeds."""
    out = tmp_path_factory.mktemp("sweep")
    run_heads(heads_cfg(out, seeds=[1, 2], lrs=[1e-3, 3e-3]), splits)
    return out


def test_report_of_a_sweep_has_every_figure_and_the_runs_numbers(sweep, tmp_path):
    page = build_report(ReportConfig(runs=[sweep], out=tmp_path / "rep"))
    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    runs = numbers["runs"]
    assert len(runs) == 4
    for label, info in runs.items():
        metrics = json.loads((sweep / label / "metrics.json").read_text())
        assert info["metrics"] == metrics  # the report's numbers are the run's own
        assert info["best_val_mAP10"] == metrics["val/mAP@10"]  # best epoch of the log = selected epoch
        assert info["epochs_validated"] == 3 and info["steps_logged"] == 3 * 15
        assert f"curves_{label}.png" in " ".join(numbers["figures"])
    groups = numbers["comparison"]["test/mAP@10"]
    assert [g["group"] for g in groups] == ["max_lr=0.001", "max_lr=0.003"]
    for g in groups:
        values = [json.loads((sweep / r / "metrics.json").read_text())["test/mAP@10"] for r in g["runs"]]
        assert g["values"] == values and len(values) == 2
        assert g["mean"] == pytest.approx(sum(values) / 2, abs=1e-12)
        assert g["std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5, abs=1e-12)
    for rel in numbers["figures"]:
        assert_real_picture(tmp_path / "rep" / rel)
    text = page.read_text()
    assert text.count("data:image/png;base64,") == len(numbers["figures"]) == 5  # 4 curves + comparison
    md = (tmp_path / "rep" / "report.md").read_text()
    for rel in numbers["figures"]:
        assert f"]({rel})" in md


def test_runs_without_validation_or_with_one_epoch_still_report(splits, tmp_path, capsys):
    no_val = Splits(splits.train, {"test": splits.evals["test"]}, splits.store)
    run_heads(heads_cfg(tmp_path / "runs" / "noval", val=None), no_val)
    run_heads(heads_cfg(tmp_path / "runs" / "one", max_epochs=1, rampdown_epochs=1), splits)
    rc = main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep")])
    assert rc == 0 and "report.html" in capsys.readouterr().out
    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert numbers["runs"]["noval"]["best_epoch"] is None and numbers["runs"]["noval"]["epochs_validated"] == 0
    assert numbers["runs"]["one"]["best_epoch"] == 0 and numbers["runs"]["one"]["epochs_validated"] == 1
    for rel in numbers["figures"]:
        assert_real_picture(tmp_path / "rep" / rel)
    assert "no validation logged" not in (tmp_path / "rep" / "report.md").read_text()  # drawn in the PNG only


def test_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "rep")]) == 2
    assert "no run found" in capsys.readouterr().err


# --------------------------------------------------------------------------- evaluation analysis

def write_evaluation(folder: Path, single: list[tuple[str, str, int]], multi: list[tuple[str, str, int]],
                     metrics: dict[str, float]) -> None:
    folder.mkdir(parents=True)
    with open(folder / "ranks_single.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["caption", "file_name", "rank"])
        w.writerows(single)
    with open(folder / "ranks_multi.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "file_name", "rank", "AP@10", "AP@16"])
        w.writerows([(*r, 0, 0) for r in multi])
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics, "counts": {"audios": 40}}))


def test_evaluation_curves_equal_the_metrics_and_best_worst_are_ordered(tmp_path):
    from audioret.evaluate import metrics as M

    g = torch.Generator().manual_seed(0)
    single = [(f"caption {i}", f"a{i % 40}.wav", int(r)) for i, r in enumerate(torch.randint(1, 41, (60,), generator=g))]
    by_q = {f"caption {q}": sorted(torch.randperm(40, generator=g)[:1 + q % 3].add(1).tolist()) for q in range(12)}
    multi = [(q, f"a{j}.wav", r) for q, rs in by_q.items() for j, r in enumerate(rs)]
    ranks = torch.tensor([r for *_, r in single])
    metrics = {"R@10": M.recall_at_k(ranks, 10), "mAP@10": M.map_single_at_k(ranks, 10),
               "mAP@16_multi": M.map_multi_at_k(list(by_q.values()), 16),
               "mAP@10_multi": M.map_multi_at_k(list(by_q.values()), 10)}
    write_evaluation(tmp_path / "ev", single, multi, metrics)
    ev = D.read_evaluation(tmp_path / "ev")
    assert ev.ks == list(range(1, 41))
    assert ev.curves["R@k"][9] == metrics["R@10"] and ev.curves["mAP@k"][9] == metrics["mAP@10"]
    assert ev.curves["mAP@k_multi"][15] == metrics["mAP@16_multi"]
    assert ev.curves["R@k"][-1] == 1.0 and all(a <= b for a, b in zip(ev.curves["R@k"], ev.curves["R@k"][1:]))
    best, worst = D.best_and_worst(ev.queries, 10)
    assert len(best) == 10 and [q.score for q in best] == sorted((q.score for q in ev.multi), reverse=True)[:10]
    assert worst[0].score == min(q.score for q in ev.multi)
    assert sorted(ev.first_ranks) == sorted(min(r) for r in by_q.values())
    page = build_report(ReportConfig(runs=[tmp_path / "ev"], out=tmp_path / "rep"))
    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    info = numbers["evaluations"]["ev"]
    assert info["metrics"] == metrics and "no scores" in info["scores_from"]
    assert_real_picture(tmp_path / "rep" / "figures" / "eval_ev.png")
    assert "10 worst queries" in page.read_text()


def test_top_results_come_from_a_score_matrix(tmp_path):
    from audioret.evaluate.submission import write_score_matrix

    captions = ["a dog barks", "rain falls"]
    fnames = ["dog.wav", "rain.wav", "car.wav"]
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, 0.1]])
    write_score_matrix(tmp_path / "m.csv", captions, fnames, scores)
    write_evaluation(tmp_path / "ev", [("a dog barks", "dog.wav", 1), ("rain falls", "rain.wav", 2)], [],
                     {"R@1": 0.5})
    build_report(ReportConfig(runs=[tmp_path / "ev"], out=tmp_path / "rep", predictions=tmp_path / "m.csv",
                              results=2))
    info = json.loads((tmp_path / "rep" / "report.json").read_text())["evaluations"]["ev"]
    assert info["best"][0]["query"] == "a dog barks"
    assert info["best"][0]["top"] == [["dog.wav", pytest.approx(0.9)], ["car.wav", pytest.approx(0.5)]]
    assert info["worst"][0]["top"] == [["dog.wav", pytest.approx(0.2)], ["rain.wav", pytest.approx(0.2)]]  # tie: index


# --------------------------------------------------------------------------- pure helpers

def test_log_parsing_and_best_epoch():
    rows = [{"epoch": "0", "step": "4", "train/loss": "2.0", "train/lr": "1e-3", "val/mAP@10": ""},
            {"epoch": "0", "step": "9", "train/loss": "", "train/lr": "", "val/mAP@10": "0.30"},
            {"epoch": "1", "step": "19", "train/loss": "", "train/lr": "", "val/mAP@10": "0.50"},
            {"epoch": "2", "step": "29", "train/loss": "nan", "train/lr": "", "val/mAP@10": "0.50"}]
    c = D.parse_log(rows)
    assert c.steps["train/loss"].x == [4] and c.steps["train/lr"].y == [1e-3]
    assert (c.best_epoch, c.best_value) == (1, 0.5)  # the first of equal scores, as ModelCheckpoint keeps it


def test_groups_pool_seeds_only():
    assert D.group_of("seed=1_max_lr=0.001") == "max_lr=0.001"
    assert D.group_of("stage2/seed=21208") == "stage2"
    assert D.group_of("seed=3") == "runs"
    assert D.group_of("heads_seed_shape") == "heads_seed_shape"
    assert D.labels_for([Path("/x/d/stage1/seed=1"), Path("/x/d/control/seed=1")]) == ["stage1/seed=1", "control/seed=1"]


def test_rank_histogram_counts_beyond():
    assert D.rank_histogram([1, 1, 3, 12], 5) == ([1, 2, 3, 4, 5], [2, 0, 1, 0, 0], 1)
    assert D.curve_ks(100, 16) == list(range(1, 17)) and D.curve_ks(7, None) == list(range(1, 8))


def test_store_flag_scores_heads_runs_as_evaluate_does(splits, tmp_path):
    from audioret.evaluate.cli import run as evaluate
    from audioret.evaluate.config import EvaluateConfig
    from audioret.train_heads.store_reader import write_feature_split

    store = tmp_path / "synth.zarr"
    for name, seed, n in (("dev", 1, 96), ("val", 2, 32), ("eval", 3, 32)):
        write_feature_split(store, synthetic_split(name, n, seed=seed))
    run_heads(heads_cfg(tmp_path / "runs" / "h", store=store), None)
    build_report(ReportConfig(runs=[tmp_path / "runs" / "h"], out=tmp_path / "rep", store=store, split="eval"))
    info = json.loads((tmp_path / "rep" / "report.json").read_text())["evaluations"]["h"]
    expected = evaluate(EvaluateConfig(checkpoint=[tmp_path / "runs" / "h" / "heads.pt"], store=store, split="eval",
                                       skip_unmatched=True),
                        show=False)
    assert info["metrics"] == expected
    trained = json.loads((tmp_path / "runs" / "h" / "metrics.json").read_text())
    assert info["metrics"]["mAP@10"] == pytest.approx(trained["test/mAP@10"], abs=1e-6)
    assert len(info["best"]) == 10 and all(len(q["top"]) == 5 for q in info["best"] + info["worst"])
    assert info["best"][0]["first_rank"] == 1 and info["best"][0]["top"][0][1] >= info["best"][0]["top"][1][1]
    assert_real_picture(tmp_path / "rep" / "figures" / "eval_h.png")


def test_distill_stages_pool_over_seeds():
    runs = [D.Run(f"{stage}/seed={s}", Path("."), "heads", {"test/mAP@10": v})
            for stage, s, v in (("stage1", 1, 0.2), ("stage1", 2, 0.4), ("stage2", 1, 0.5), ("stage2", 2, 0.7),
                                ("control", 1, 0.3))]
    groups = D.compare_groups(runs, "test/mAP@10")
    assert [(g.name, g.values) for g in groups] == [("stage1", [0.2, 0.4]), ("stage2", [0.5, 0.7]), ("control", [0.3])]
    assert groups[1].mean == pytest.approx(0.6) and groups[1].std == pytest.approx(0.2 / 2 ** 0.5)
    assert groups[2].std == 0.0 and D.compare_keys(runs) == ["test/mAP@10"]


def test_a_distill_run_compares_its_tables_multi_match_metrics(tmp_path):
    """A distill folder's stages: test/mAP@16_multi (evaluate with --multi-match) is only in the distill
    table compare.json; the report's comparison shows it, with the same numbers as that table."""
    rows = []
    for stage, seed, m10, m16 in (("stage1", 1, 0.20, 0.11), ("stage1", 2, 0.24, 0.13), ("stage2", 1, 0.30, 0.17),
                                  ("stage2", 2, 0.32, 0.19)):
        run = tmp_path / "d" / stage / f"seed={seed}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"test/mAP@10": m10, "val/mAP@10": m10 + 0.01}))
        rows.append({"stage": stage, "seed": seed, "mAP@16_multi": m16, "mAP@10": m10, "val/mAP@10": m10 + 0.01,
                     "checkpoint": f"elsewhere/{stage}/seed={seed}/heads.pt"})
    rows.append({"stage": "stage1", "seed": "mean", "mAP@16_multi": 0.12, "mAP@10": 0.22})
    (tmp_path / "d" / "compare.json").write_text(json.dumps(rows))
    build_report(ReportConfig(runs=[tmp_path / "d"], out=tmp_path / "rep"))
    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    groups = numbers["comparison"]["test/mAP@16_multi"]
    assert [(g["group"], g["values"]) for g in groups] == [("stage1", [0.11, 0.13]), ("stage2", [0.17, 0.19])]
    assert numbers["runs"]["stage2/seed=1"]["metrics"]["test/mAP@10"] == 0.30  # metrics.json's own value kept


def test_top_results_of_an_evaluation_whose_checkpoint_changed_since_are_left_out(splits, tmp_path):
    """Top results are recomputed from the evaluation's checkpoint: only while it still ranks as recorded
    (a run retrained into the same folder would list other clips than the ranks shown beside them)."""
    from audioret.evaluate.cli import run as evaluate
    from audioret.evaluate.config import EvaluateConfig
    from audioret.train_heads.store_reader import write_feature_split

    store = tmp_path / "synth.zarr"
    for name, seed, n in (("dev", 1, 96), ("eval", 3, 32)):
        write_feature_split(store, synthetic_split(name, n, seed=seed))
    heads = tmp_path / "runs" / "h"
    run_heads(heads_cfg(heads, store=store, val=None, max_epochs=1, rampdown_epochs=1), None)
    evaluate(EvaluateConfig(checkpoint=[heads / "heads.pt"], store=store, split="eval", out=tmp_path / "ev",
                            skip_unmatched=True), show=False)

    def listed() -> dict:
        build_report(ReportConfig(runs=[tmp_path / "ev"], out=tmp_path / "rep"))
        return json.loads((tmp_path / "rep" / "report.json").read_text())["evaluations"]["ev"]

    info = listed()
    assert info["scores_from"].startswith("recomputed") and all(q["top"] for q in info["best"] + info["worst"])
    run_heads(heads_cfg(heads, store=store, val=None, max_epochs=1, rampdown_epochs=1, seed=7, max_lr=3e-2), None)
    info = listed()
    assert "no scores" in info["scores_from"] and not any(q["top"] for q in info["best"] + info["worst"])


def test_an_evaluation_written_inside_its_run_folder_is_reported_too(tmp_path):
    """audioret evaluate --checkpoint runs/h/heads.pt --out runs/h/eval: the run and its evaluation."""
    run = tmp_path / "runs" / "h"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"test/mAP@10": 0.25, "val/mAP@10": 0.3}))
    write_evaluation(run / "eval", [("a dog barks", "dog.wav", 1), ("rain falls", "rain.wav", 3)], [],
                     {"R@1": 0.5})
    build_report(ReportConfig(runs=[tmp_path / "runs"], out=tmp_path / "rep"))
    numbers = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(numbers["runs"]) == {"h"} and set(numbers["evaluations"]) == {"h/eval"}
    assert numbers["evaluations"]["h/eval"]["metrics"] == {"R@1": 0.5}


def test_figure_names_never_overwrite_each_other(tmp_path):
    """Labels that slug alike ("a/b", "a_b", "a b") and a run drawn twice (an evaluation inside a
    run folder that is also scored with --store) each keep their own figure file."""
    rep = Report("t")
    names = []
    for label in ("a/b", "a_b", "a b", "a/b"):
        path = rep.figure_path(tmp_path, "eval", label)
        rep.figures.append(path)
        names.append(path.name)
    assert len(set(names)) == 4 and names[0] == "eval_a_b.png"
    assert rep.figure_path(tmp_path, "curves", "a/b").name == "curves_a_b.png"  # prefixes are apart
