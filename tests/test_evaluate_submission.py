"""audioret.evaluate: submission writers/readers, scoring files without a model, the CLI."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from audioret.evaluate import metrics as M
from audioret.evaluate import report, submission as S
from audioret.evaluate.cli import main, run
from audioret.evaluate.config import EvaluateConfig


@pytest.fixture
def corpus(tmp_path):
    """A tiny eval split: 12 audios x 5 captions, awkward names, embeddings, and both GT files."""
    g = torch.Generator().manual_seed(0)
    A, D = 20, 6
    fnames = [f"clip {i}, take &amp; 'two'.wav" if i % 3 == 0 else f"clip_{i}.wav" for i in range(A)]
    audio = torch.nn.functional.normalize(torch.randn(A, D, generator=g), dim=1)
    captions, cap_fnames, text = [], [], []
    for i, f in enumerate(fnames):
        for j in range(5):
            captions.append(f'caption {i}-{j}, "quoted" ' if j else f"first caption {i} ")
            cap_fnames.append(f)
            text.append(audio[i] + 0.9 * torch.randn(D, generator=g))
    text = torch.nn.functional.normalize(torch.stack(text), dim=1)
    cap_csv = tmp_path / "captions.csv"
    with cap_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", *(f"caption_{j}" for j in range(1, 6))])
        for i, f in enumerate(fnames):
            w.writerow([f, *captions[5 * i:5 * i + 5]])
    ann = [(captions[5 * q], [fnames[(q + d) % A] for d in range(1 + q % 4)]) for q in range(0, A, 2)]
    ann_csv = tmp_path / "ann.csv"
    with ann_csv.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "audio_filenames"])
        for q, fs in ann:
            w.writerow([q, repr(fs)])
    return dict(fnames=fnames, audio=audio, captions=captions, cap_fnames=cap_fnames, text=text,
                cap_csv=cap_csv, ann_csv=ann_csv, ann=ann)


def expected_metrics(c):
    d = M.dedup_audios(c["cap_fnames"])
    mm = M.match_annotations(c["ann"], c["captions"], c["fnames"])
    return M.retrieval_metrics(c["text"], c["audio"], d.targets, mm.relevant, mm.query_index)


def test_score_matrix_round_trip(corpus, tmp_path):
    scores = corpus["text"] @ corpus["audio"].T
    p = S.write_score_matrix(tmp_path / "sub.csv", corpus["captions"], corpus["fnames"], scores)
    assert S.submission_kind(p) == "matrix"
    back = S.read_score_matrix(p)
    assert back.captions == corpus["captions"] and back.fnames == corpus["fnames"]
    assert torch.equal(back.scores, scores)  # %.9g round-trips fp32 exactly
    assert not list(tmp_path.glob(".sub.csv.*"))  # no temp file left behind


def test_score_matrix_collapses_duplicate_captions(tmp_path):
    scores = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    S.write_score_matrix(tmp_path / "s.csv", ["a", "b", "a"], ["x.wav", "y.wav"], scores)
    back = S.read_score_matrix(tmp_path / "s.csv")
    assert back.captions == ["a", "b"] and back.scores.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "sub.csv"
    S.write_ranked(p, ["a"], ["x.wav", "y.wav"], torch.tensor([[1, 0]]))
    before = p.read_text()

    def broken(r0, r1):
        raise RuntimeError("model crashed")
    with pytest.raises(RuntimeError):
        S.write_score_matrix_blocks(p, ["a"], ["x.wav", "y.wav"], broken)
    assert p.read_text() == before
    assert [f.name for f in tmp_path.iterdir()] == ["sub.csv"]


def test_ranked_round_trip_and_tie_order(tmp_path):
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    audio = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    p = S.write_ranked_blocks(tmp_path / "r.csv", ["q one", "q, two"], ["a", "b", "c", "d"],
                              lambda r0, r1: text[r0:r1] @ audio.T, 3)
    back = S.read_ranked(p)
    assert back.k == 3 and back.captions == ["q one", "q, two"]
    assert back.ranked == [["b", "a", "c"], ["d", "a", "c"]]  # ties: lower index first


def test_evaluate_matrix_file_equals_embedding_metrics(corpus, tmp_path):
    scores = corpus["text"] @ corpus["audio"].T
    p = S.write_score_matrix(tmp_path / "sub.csv", corpus["captions"], corpus["fnames"], scores)
    gt = report.load_ground_truth([corpus["cap_csv"], corpus["ann_csv"]])
    ev = report.evaluate_predictions(p, gt)
    want = expected_metrics(corpus)
    assert ev.metrics.keys() == want.keys()
    for k in want:
        assert ev.metrics[k] == pytest.approx(want[k], abs=1e-12), k
    got = report.score_and_report(corpus["text"], corpus["audio"], corpus["captions"], corpus["fnames"],
                                  [corpus["ann_csv"]], tmp_path / "m", caption_fnames=corpus["cap_fnames"],
                                  show=False)
    assert got == want


@pytest.mark.parametrize("K", [16, 5])
def test_evaluate_ranked_file(corpus, tmp_path, K):
    top = M.top_k(corpus["text"], corpus["audio"], K)
    p = S.write_ranked(tmp_path / "r.csv", corpus["captions"], corpus["fnames"], top)
    gt = report.load_ground_truth([corpus["cap_csv"], corpus["ann_csv"]])
    ev = report.evaluate_predictions(p, gt)
    want = expected_metrics(corpus)
    computable = {k for k in want if int(k.split("@")[1].split("_")[0]) <= K}
    assert set(ev.metrics) == computable
    for k in computable:
        assert ev.metrics[k] == pytest.approx(want[k], abs=1e-12), k
    assert bool(ev.notes) == (K < 16)


def test_cli_scores_file_and_writes_report(corpus, tmp_path, capsys):
    scores = corpus["text"] @ corpus["audio"].T
    p = S.write_score_matrix(tmp_path / "sub.csv", corpus["captions"], corpus["fnames"], scores)
    out = tmp_path / "report"
    rc = main(["--predictions", str(p), "--annotations", str(corpus["ann_csv"]), str(corpus["cap_csv"]),
               "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "metrics.json").read_text())
    want = expected_metrics(corpus)
    assert data["metrics"] == pytest.approx(want)
    assert "mAP@16_multi" in capsys.readouterr().out
    with (out / "ranks_single.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(corpus["captions"]) and rows[0]["file_name"] == corpus["fnames"][0]
    with (out / "ranks_multi.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == sum(len(set(f)) for _, f in corpus["ann"])


def test_unmatched_rows_error_or_skip(corpus, tmp_path, capsys):
    scores = corpus["text"] @ corpus["audio"].T
    keep = list(range(5, len(corpus["captions"])))  # drop the first audio's captions
    p = S.write_score_matrix(tmp_path / "sub.csv", [corpus["captions"][i] for i in keep],
                             corpus["fnames"], scores[keep])
    rc = main(["--predictions", str(p), "--annotations", str(corpus["ann_csv"])])
    assert rc == 2 and "--skip-unmatched" in capsys.readouterr().err
    m = run(EvaluateConfig(predictions=p, annotations=[corpus["ann_csv"]], skip_unmatched=True,
                           out=tmp_path / "o"), show=False)
    assert set(m) == {"mAP@10_multi", "mAP@16_multi"}
    assert len(json.loads((tmp_path / "o" / "metrics.json").read_text())["skipped"]) == 1


def test_bad_files_have_clear_errors(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("foo,bar\n1,2\n")
    with pytest.raises(ValueError, match="unknown predictions format"):
        S.submission_kind(p)
    p.write_text("index,a.wav,b.wav\nq,1.0\n")
    with pytest.raises(ValueError, match=r"x.csv:2: 2 cells, expected 3"):
        S.read_score_matrix(p)
    p.write_text("caption,fname_1,fname_2\nq,a.wav,a.wav\n")
    with pytest.raises(ValueError, match="listed twice"):
        S.read_ranked(p)
    with pytest.raises(ValueError, match="not a multi-match annotation CSV"):
        report.load_ground_truth([tmp_path / "x.csv"])
