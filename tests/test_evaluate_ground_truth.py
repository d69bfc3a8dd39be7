"""evaluate / predict: which ground truth scores a run (the ranked corpus's own annotations by
default), one-line errors that name the flag to pass, metric order, file modes, predict's names."""

from __future__ import annotations

import csv
import json
import logging
import os
import stat

import numpy as np
import pytest
import torch

from audioret.evaluate import metrics as M
from audioret.evaluate.cli import main, run
from audioret.evaluate.config import EvaluateConfig
from audioret.evaluate.predict import default_name, main as predict_main
from audioret.evaluate.submission import atomic_writer, write_ranked
from audioret.models import HeadConfig, RetrievalHeads, save_heads
from audioret.store import create_store

ORDER = ["mAP@16_multi", "mAP@10_multi", "mAP@10", "R@1", "R@5", "R@10"]


@pytest.fixture
def run_dir(tmp_path):
    """A synthetic-like corpus folder with its own metadata_eval.csv, a store extracted from it
    (its metadata records the corpus) with one caption repeated across clips, and heads."""
    rng = np.random.default_rng(0)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    meta = {"audio_encoder": {"name": "tiny"}, "text_encoder": {"name": "tiny-text"},
            "corpus": {"name": "clotho", "data_path": str(corpus.resolve())}}
    clips = [f"clip {i}, &amp;.wav" for i in range(12)]
    captions, clip_index = [], []
    for i in range(len(clips)):
        for j in range(3):
            captions.append("a dog barks" if (i, j) in {(0, 2), (5, 1)} else f"sound {i} take {j}")
            clip_index.append(i)
    da, dt = 8, 12
    frames = [rng.normal(size=(int(rng.integers(3, 9)), da)) for _ in clips]
    tokens = [rng.normal(size=(int(rng.integers(2, 6)), dt)) for _ in captions]
    st = create_store(tmp_path / "store.zarr", meta)
    st.plan_audio("eval", clips, [len(f) for f in frames], [1] * len(clips), dim=da)
    st.plan_text("eval", captions, clip_index, [len(t) for t in tokens], dim=dt)
    with st.writer("eval", "audio", 0) as w:
        for i, f in enumerate(frames):
            w.put(i, frames=f, windows=f[:1])
    with st.writer("eval", "text", 0) as w:
        for j, t in enumerate(tokens):
            w.put(j, tokens=t, first=t[0])
    torch.manual_seed(0)
    heads = RetrievalHeads(HeadConfig(audio_dim=da, text_dim=dt, embed_dim=6, hidden_dim=16)).eval()
    (tmp_path / "heads").mkdir()
    ckpt = save_heads(tmp_path / "heads" / "heads.pt", heads, store={"metadata": meta})
    ann = corpus / "metadata_eval.csv"  # where synthetic corpora write their annotations
    with ann.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "audio_filenames"])
        w.writerow([captions[0], repr([clips[0], clips[4]])])
        w.writerow([captions[7], repr([clips[2]])])
        w.writerow([captions[30], repr([clips[10], clips[1], clips[7]])])
    return {"root": tmp_path, "corpus": corpus, "store": tmp_path / "store.zarr", "ckpt": ckpt, "ann": ann,
            "captions": captions, "clips": clips}


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())["metrics"]


def _error(cfg: EvaluateConfig) -> str:
    with pytest.raises(ValueError) as info:
        run(cfg, show=False)
    msg = str(info.value)
    assert "\n" not in msg  # one line
    return msg


# ---- the corpus's own annotations by default -------------------------------------------------------------

def test_store_run_defaults_to_the_corpus_annotations(run_dir):
    r = run_dir
    explicit, default = r["root"] / "explicit", r["root"] / "default"
    assert main(["--checkpoint", str(r["ckpt"]), "--store", str(r["store"]), "--annotations", str(r["ann"]),
                 "--out", str(explicit)]) == 0
    # before: the shipped Clotho-eval annotations, "3 of 3 rows do not match", exit 2
    assert main(["--checkpoint", str(r["ckpt"]), "--store", str(r["store"]), "--out", str(default)]) == 0
    assert _metrics(default) == _metrics(explicit) and "mAP@16_multi" in _metrics(default)


def test_predictions_default_to_the_corpus_predict_recorded(run_dir):
    r = run_dir
    preds = r["root"] / "predictions"
    assert predict_main(["--checkpoint", str(r["ckpt"]), "--store", str(r["store"]), "--out", str(preds),
                         "--top-k", "10"]) == 0
    record = json.loads((preds / "heads_source.json").read_text())
    assert record["corpus"] == {"name": "clotho", "data_path": str(r["corpus"].resolve())}
    assert record["split"] == "eval" and record["files"] == ["heads.csv", "heads_top10.csv"]
    for name in ("heads.csv", "heads_top10.csv"):
        want, got = r["root"] / f"want_{name}", r["root"] / f"got_{name}"
        assert main(["--predictions", str(preds / name), "--annotations", str(r["ann"]), "--out", str(want)]) == 0
        assert main(["--predictions", str(preds / name), "--out", str(got)]) == 0  # before: exit 2
        assert _metrics(got) == _metrics(want) and "mAP@10_multi" in _metrics(got)


def test_predictions_take_the_corpus_from_data_path_or_store(run_dir, tmp_path):
    r = run_dir
    preds = tmp_path / "p"
    assert predict_main(["--checkpoint", str(r["ckpt"]), "--store", str(r["store"]), "--out", str(preds),
                         "--name", "x", "--top-k", "0"]) == 0
    (preds / "x_source.json").unlink(missing_ok=True)  # a submission file alone
    for flags in (["--data-path", str(r["corpus"])], ["--store", str(r["store"])]):
        assert "mAP@16_multi" in run(EvaluateConfig(predictions=preds / "x.csv", **{
            "data_path" if flags[0] == "--data-path" else "store": flags[1]}), show=False)
        assert main(["--predictions", str(preds / "x.csv"), *flags]) == 0


def test_foreign_predictions_error_names_the_corpus_file_and_flags(run_dir, tmp_path):
    r = run_dir
    preds = tmp_path / "p"
    assert predict_main(["--checkpoint", str(r["ckpt"]), "--store", str(r["store"]), "--out", str(preds),
                         "--name", "x"]) == 0
    (preds / "x_source.json").unlink(missing_ok=True)
    for skip in (False, True):  # the shipped Clotho annotations match none of these rows
        msg = _error(EvaluateConfig(predictions=preds / "x.csv", skip_unmatched=skip))
        assert "shipped Clotho-eval" in msg and "metadata_eval.csv" in msg and "--annotations" in msg
        assert "--data-path" in msg and "skip_unmatched=" not in msg
        assert "no metric could be computed" not in msg and "nothing to rank" not in msg
        assert ("left nothing to score" in msg) == skip
    assert main(["--predictions", str(preds / "x.csv")]) == 2


def test_partly_matching_rows_offer_skip_unmatched_as_a_flag(run_dir, tmp_path):
    r = run_dir
    ann = tmp_path / "ann.csv"
    ann.write_text(r["ann"].read_text() + '"not a caption here","[\'clip 1, &amp;.wav\']"\n')
    msg = _error(EvaluateConfig(checkpoint=r["ckpt"], store=r["store"], annotations=[ann]))
    assert msg.startswith("1 of 4 annotation rows do not match") and "not a caption here" in msg
    assert "--skip-unmatched scores only the 3 matching rows" in msg and "skip_unmatched=" not in msg
    m = run(EvaluateConfig(checkpoint=r["ckpt"], store=r["store"], annotations=[ann], skip_unmatched=True),
            show=False)
    assert list(m) == ORDER


def test_ranked_list_with_no_matching_file_name_is_an_error(run_dir, tmp_path):
    """The matrix format errors on the same mistake; a ranked list used to score 0.00, exit 0."""
    r = run_dir
    captions = list(dict.fromkeys(r["captions"]))
    names = [f"audio/{c}" for c in r["clips"]]  # a folder prefix: no name matches the annotations
    top = torch.arange(10).repeat(len(captions), 1)
    path = write_ranked(tmp_path / "x_top10.csv", captions, names, top)
    for skip in (False, True):
        msg = _error(EvaluateConfig(predictions=path, annotations=[r["ann"]], skip_unmatched=skip))
        assert "none of the" in msg and "audio file names" in msg and repr(names[0]) in msg
    assert main(["--predictions", str(path), "--annotations", str(r["ann"])]) == 2
    # the same list with the right names scores
    ok = write_ranked(tmp_path / "y_top10.csv", captions, r["clips"], top)
    assert set(run(EvaluateConfig(predictions=ok, annotations=[r["ann"]]), show=False)) == {"mAP@10_multi"}


def test_short_ranked_list_says_why_nothing_is_computed(run_dir, tmp_path):
    r = run_dir
    captions = list(dict.fromkeys(r["captions"]))
    path = write_ranked(tmp_path / "x_top5.csv", captions, r["clips"], torch.arange(5).repeat(len(captions), 1))
    msg = _error(EvaluateConfig(predictions=path, annotations=[r["ann"]]))
    assert "K=5" in msg and "score matrix" in msg


# ---- presentation and files -------------------------------------------------------------------------------

def test_metrics_are_ordered_ranking_metric_first(run_dir, capsys):
    r = run_dir
    out = r["root"] / "o"
    assert main(["--checkpoint", str(r["ckpt"]), "--store", str(r["store"]), "--out", str(out)]) == 0
    assert list(json.loads((out / "metrics.json").read_text())["metrics"]) == ORDER
    printed = capsys.readouterr().out
    assert [printed.index(f" {k} ") for k in ORDER] == sorted(printed.index(f" {k} ") for k in ORDER)
    assert list(M.ordered_metrics({k: 0.0 for k in reversed(ORDER)})) == ORDER
    assert list(M.chance_metrics(20, [1, 2])) == ORDER


def test_submission_files_follow_the_umask(tmp_path):
    from audioret.config import atomic_write_text

    old = os.umask(0o022)
    try:
        with atomic_writer(tmp_path / "a.csv") as w:
            w.writerow(["caption", "fname_1"])
        atomic_write_text(tmp_path / "b.json", "{}")
        assert stat.S_IMODE((tmp_path / "a.csv").stat().st_mode) == 0o644  # was 0o600 (mkstemp)
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o644
        os.umask(0o077)
        with atomic_writer(tmp_path / "c.csv") as w:
            w.writerow(["x"])
        assert stat.S_IMODE((tmp_path / "c.csv").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_predict_default_names(tmp_path):
    assert default_name(tmp_path / "runs" / "heads" / "heads.pt") == "heads"
    assert default_name(tmp_path / "runs" / "ft" / "checkpoints" / "last.ckpt") == "ft_last"  # was "checkpoints"
    assert default_name(tmp_path / "runs" / "ft" / "checkpoints" / "epoch=3.ckpt") == "ft_epoch=3"
    assert default_name(tmp_path / "runs" / "x" / "model.pt") == "x_model"


def test_predict_logs_the_rows_it_writes(run_dir, caplog):
    r = run_dir
    out = r["root"] / "p"
    with caplog.at_level(logging.INFO, logger="audioret.evaluate.predict"):
        assert predict_main(["--checkpoint", str(r["ckpt"]), "--store", str(r["store"]), "--out", str(out)]) == 0
    # 36 captions, one string twice: 35 rows in each file, and the log says so (it said 36)
    assert "35 caption rows x 12 audio files (36 captions: 1 repeat an earlier caption and share its row)" \
        in caplog.text
    with (out / "heads.csv").open(newline="") as fh:
        assert len(list(csv.reader(fh))) == 1 + 35
    counts = json.loads((out / "heads_source.json").read_text())["counts"]
    assert counts == {"rows": 35, "captions": 36, "audios": 12, "skipped_audios": 0}

