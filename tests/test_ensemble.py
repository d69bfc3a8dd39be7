"""Ensembles in evaluate/predict: several --checkpoint models, the (weighted) mean of their score
matrices, one table row per member plus the ensemble's, embeddings cached per checkpoint."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from audioret.evaluate import members as MB
from audioret.evaluate import metrics as M
from audioret.evaluate.cli import main as evaluate_main
from audioret.evaluate.config import EvaluateConfig, PredictConfig
from audioret.evaluate.ensemble import MemberSplit, check_agreement, mean_block_fn, normalized_weights
from audioret.evaluate.model import embed_all, load_store_source
from audioret.evaluate.predict import main as predict_main
from audioret.evaluate.report import evaluate_embeddings, load_ground_truth
from audioret.evaluate.submission import read_score_matrix, write_ranked_blocks, write_score_matrix_blocks
from audioret.models import HeadConfig, RetrievalHeads, save_heads
from audioret.store import create_store, open_store

META = {"audio_encoder": {"name": "tiny"}, "text_encoder": {"name": "tiny-text"}}
DA, DT = 8, 12


# --------------------------------------------------------------------------- pure functions

def test_weights_are_normalised_and_checked():
    assert normalized_weights(None, 4) == [0.25] * 4
    assert normalized_weights([1, 3], 2) == [0.25, 0.75]
    for bad, words in (([1.0], "1 value(s) for 2"), ([1, -1], "-1"), ([0, 0], "all weights are 0"),
                       ([float("nan"), 1], "nan")):
        with pytest.raises(ValueError, match="--weights") as err:
            normalized_weights(bad, 2)
        assert words in str(err.value)


def test_mean_block_fn_is_the_weighted_mean_and_one_member_is_itself():
    g = torch.Generator().manual_seed(0)
    mats = [torch.randn(7, 5, generator=g) for _ in range(3)]
    kept = [m.clone() for m in mats]
    fns = [lambda r0, r1, m=m: m[r0:r1] for m in mats]
    one = mean_block_fn(fns[:1], [1.0])
    assert one is fns[0]
    w = normalized_weights([1, 2, 5], 3)
    block = mean_block_fn(fns, w)
    want = sum(wi * m for wi, m in zip(w, mats))
    got = torch.cat([block(0, 3), block(3, 7)])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert all(torch.equal(m, k) for m, k in zip(mats, kept))  # members' blocks are not changed in place


def test_agreement_names_both_members_and_the_first_difference():
    a = MemberSplit("A.pt (store s)", ["c1", "c2"], ["x.wav", "y.wav"], ["x.wav", "y.wav"])
    check_agreement([a, MemberSplit("B.ckpt", ["c1", "c2"], ["x.wav", "y.wav"], ["x.wav", "y.wav"])])
    with pytest.raises(ValueError) as err:
        check_agreement([a, MemberSplit("B.ckpt (audio d)", ["c1", "c2"], ["x.wav", "y.wav"], ["x.wav"])])
    msg = str(err.value)
    assert "A.pt (store s)" in msg and "B.ckpt (audio d)" in msg and "'y.wav' is only in one" in msg
    with pytest.raises(ValueError, match="another order") as err:
        check_agreement([a, MemberSplit("B", ["c2", "c1"], ["y.wav", "x.wav"], ["x.wav", "y.wav"])])
    assert "captions" in str(err.value) and "'c1' vs 'c2'" in str(err.value)


def test_old_single_checkpoint_configs_still_load():
    from audioret.config import from_dict, to_dict

    old = from_dict(EvaluateConfig, {"checkpoint": "runs/heads/heads.pt", "store": "s.zarr"})
    assert [str(p) for p in old.checkpoint] == ["runs/heads/heads.pt"]
    assert from_dict(EvaluateConfig, {"checkpoint": None, "predictions": "p.csv"}).checkpoint == []
    assert to_dict(EvaluateConfig(checkpoint="a.pt"))["checkpoint"] == ["a.pt"]
    assert PredictConfig(checkpoint="a.pt").checkpoint[0].name == "a.pt"


# --------------------------------------------------------------------------- heads over a tiny store

def write_store(path, seed: int = 0, overwrite: bool = False) -> tuple[list[str], list[str]]:
    """A random store split (9 clips x 3 captions, values from ``seed``); returns (clips, captions)."""
    rng = np.random.default_rng(seed)
    clips = [f"clip {i}, &amp;.wav" for i in range(9)]
    frames = [rng.normal(size=(int(rng.integers(3, 9)), DA)) for _ in clips]
    windows = [rng.normal(size=(1 + i % 2, DA)) for i in range(len(clips))]
    captions, clip_index, tokens = [], [], []
    for i in range(len(clips)):
        for j in range(3):
            captions.append(f"sound {i} take {j}")
            clip_index.append(i)
            tokens.append(rng.normal(size=(int(rng.integers(2, 6)), DT)))
    st = create_store(path, META, overwrite=overwrite)
    st.plan_audio("eval", clips, [len(f) for f in frames], [len(w) for w in windows], dim=DA)
    st.plan_text("eval", captions, clip_index, [len(t) for t in tokens], dim=DT)
    with st.writer("eval", "audio", 0) as w:
        for i in range(len(clips)):
            w.put(i, frames=frames[i], windows=windows[i])
    with st.writer("eval", "text", 0) as w:
        for j, t in enumerate(tokens):
            w.put(j, tokens=t, first=t[0])
    return clips, captions


@pytest.fixture
def store_run(tmp_path):
    """A random store split (9 clips x 3 captions) and multi-match annotations; heads made on demand."""
    clips, captions = write_store(tmp_path / "store.zarr")
    ann = tmp_path / "ann.csv"
    with ann.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "audio_filenames"])
        w.writerow([captions[0], repr([clips[0], clips[4]])])
        w.writerow([captions[7], repr([clips[2]])])
        w.writerow([captions[13], repr([clips[4], clips[5], clips[8]])])
    return {"store": tmp_path / "store.zarr", "ann": ann, "tmp": tmp_path}


def heads(run: dict, name: str, seed: int):
    torch.manual_seed(seed)
    model = RetrievalHeads(HeadConfig(audio_dim=DA, text_dim=DT, embed_dim=6, hidden_dim=16))
    return save_heads(run["tmp"] / name / "heads.pt", model.eval(), store={"metadata": META})


def direct(ckpt, store) -> tuple[torch.Tensor, torch.Tensor, object]:
    """The model's embeddings straight from the heads (no evaluate/predict code path), in the batches of
    256 store items that one model was always embedded in (padding within a batch moves the last bits)."""
    src = load_store_source(ckpt, store, "eval")
    return (embed_all(src.embed_text, len(src.captions), 256), embed_all(src.embed_audio, len(src.audio_fnames), 256),
            src)


def metrics_of(out) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_an_ensemble_of_one_is_the_model_exactly(store_run):
    r = store_run
    a = heads(r, "a", 0)
    text, audio, src = direct(a, r["store"])
    gt = load_ground_truth([r["ann"]])
    want = evaluate_embeddings(text, audio, src.captions, src.audio_fnames, gt,
                               caption_fnames=src.caption_fnames).metrics
    ev = r["tmp"] / "ev"
    for argv in ([], ["--weights", "2.5"], []):  # the last run reads the embeddings cache
        assert evaluate_main(["--checkpoint", str(a), "--store", str(r["store"]), "--annotations", str(r["ann"]),
                              "--out", str(ev), *argv]) == 0
        assert metrics_of(ev)["metrics"] == want  # exactly, not approximately
        assert "members" not in metrics_of(ev)
    # submission files: byte for byte what the model's own score blocks give
    ref = r["tmp"] / "ref"
    block, _, _ = M.embedding_blocks(text, audio, None)
    write_score_matrix_blocks(ref / "m.csv", src.captions, src.audio_fnames, block)
    write_ranked_blocks(ref / "m_top5.csv", src.captions, src.audio_fnames, block, 5)
    pred = r["tmp"] / "pred"
    for argv in ([], ["--weights", "3"]):
        assert predict_main(["--checkpoint", str(a), "--store", str(r["store"]), "--out", str(pred),
                             "--name", "run", "--top-k", "5", *argv]) == 0
        assert (pred / "run.csv").read_bytes() == (ref / "m.csv").read_bytes()
        assert (pred / "run_top5.csv").read_bytes() == (ref / "m_top5.csv").read_bytes()
    record = json.loads((pred / "run_source.json").read_text())
    assert record["checkpoint"] == str(a.resolve()) and "checkpoints" not in record


def test_the_ensemble_matrix_is_the_mean_of_the_members(store_run, capsys):
    r = store_run
    ckpts = [heads(r, name, seed) for name, seed in (("a", 0), ("b", 1), ("c", 2))]
    members = [direct(c, r["store"]) for c in ckpts]
    src = members[0][2]
    scores = [t @ a.T for t, a, _ in members]  # [Q, A] each
    for weights in (None, [1.0, 3.0, 0.5]):
        w = normalized_weights(weights, 3)
        want = sum(wi * s for wi, s in zip(w, scores))
        out = r["tmp"] / f"pred_{weights is None}"
        argv = ["--checkpoint", *map(str, ckpts), "--store", str(r["store"]), "--out", str(out), "--top-k", "16"]
        assert predict_main(argv + (["--weights", *map(str, weights)] if weights else [])) == 0
        sub = read_score_matrix(out / "ensemble.csv")  # the default name of several checkpoints
        assert sub.captions == src.captions and sub.fnames == src.audio_fnames  # same format as one model's
        torch.testing.assert_close(sub.scores, want, rtol=0, atol=1e-6)
        ranked = list(csv.reader((out / "ensemble_top16.csv").open(newline="")))
        assert ranked[0] == ["caption", *(f"fname_{i}" for i in range(1, 10))]  # K capped at the 9 audios
        top = M.top_k_from_blocks(lambda r0, r1: want[r0:r1], *want.shape, 9)
        assert [row[1:] for row in ranked[1:]] == [[src.audio_fnames[j] for j in t] for t in top.tolist()]
        record = json.loads((out / "ensemble_source.json").read_text())
        assert record["checkpoints"] == [str(c.resolve()) for c in ckpts] and record["weights"] == pytest.approx(w)
    # evaluate: a row per member and one for the ensemble; metrics.json keeps the members' metrics
    ev = r["tmp"] / "ev"
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", *map(str, ckpts), "--store", str(r["store"]), "--annotations",
                          str(r["ann"]), "--out", str(ev)]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in ("a (store)", "b (store)", "c (store)", "ensemble (mean)"))
    lines = table.splitlines()
    assert "mAP@16" in lines[2] and lines[2].index("mAP@16") < lines[2].index("mAP@10")  # report order
    header = lines[3]
    order = [header.index(k) for k in ("multi", "mAP@10 ", "R@1 ", "R@5 ", "R@10 ")]
    assert order == sorted(order)
    got = metrics_of(ev)
    mean = sum(s for s in scores) / 3
    gt = load_ground_truth([r["ann"]])
    from audioret.evaluate.report import evaluate_blocks

    want_ev = evaluate_blocks(lambda r0, r1: mean[r0:r1], src.captions, src.audio_fnames, gt,
                              caption_fnames=src.caption_fnames).metrics
    assert got["metrics"] == pytest.approx(want_ev, abs=1e-12)
    for rec, (t, a, _) in zip(got["members"], members):
        solo = evaluate_embeddings(t, a, src.captions, src.audio_fnames, gt, caption_fnames=src.caption_fnames)
        assert rec["metrics"] == solo.metrics and rec["weight"] == pytest.approx(1 / 3)
    assert list(got["metrics"]) == ["mAP@16_multi", "mAP@10_multi", "mAP@10", "R@1", "R@5", "R@10"]


def test_adding_a_member_embeds_only_the_new_one(store_run, monkeypatch):
    r = store_run
    calls = []
    real = MB.compute_member

    def counting(plan, inputs):
        calls.append(plan.checkpoint.parent.name)
        return real(plan, inputs)

    monkeypatch.setattr(MB, "compute_member", counting)
    ckpts = [heads(r, name, seed) for name, seed in (("a", 0), ("b", 1), ("c", 2), ("d", 3))]
    ev = r["tmp"] / "ev"
    base = ["--store", str(r["store"]), "--annotations", str(r["ann"]), "--out", str(ev)]
    assert evaluate_main(["--checkpoint", *map(str, ckpts[:3]), *base]) == 0
    three = metrics_of(ev)
    assert calls == ["a", "b", "c"]
    assert evaluate_main(["--checkpoint", *map(str, ckpts), *base]) == 0
    assert calls == ["a", "b", "c", "d"]  # the fourth model only
    four = metrics_of(ev)
    assert [m["embeddings_reused"] for m in four["members"]] == [True, True, True, False]
    assert [m["metrics"] for m in four["members"][:3]] == [m["metrics"] for m in three["members"]]
    # the cache: .npy arrays and a JSON record per checkpoint, no pickle
    entries = sorted((ev / "embeddings").iterdir())
    assert len(entries) == 4
    for e in entries:
        assert sorted(p.name for p in e.iterdir()) == ["audio.npy", "embeddings.json", "text.npy"]
        meta = json.loads((e / "embeddings.json").read_text())
        assert meta["split"] == "eval" and len(meta["sha256"]) == 64 and e.name.startswith(meta["sha256"][:16])
        assert np.load(e / "text.npy", allow_pickle=False).shape == (27, 6)
    # predict into the same folder reuses them too; a retrained checkpoint (new bytes) is embedded again
    heads(r, "b", 7)
    assert predict_main(["--checkpoint", *map(str, ckpts[:2]), "--store", str(r["store"]), "--out", str(ev)]) == 0
    assert calls == ["a", "b", "c", "d", "b"]
    # --no-embedding-cache embeds everything and keeps nothing
    fresh = r["tmp"] / "fresh"
    assert evaluate_main(["--checkpoint", str(ckpts[0]), "--store", str(r["store"]), "--annotations",
                          str(r["ann"]), "--out", str(fresh), "--no-embedding-cache"]) == 0
    assert calls[-1] == "a" and not (fresh / "embeddings").exists()


def test_a_re_extracted_store_is_embedded_again(store_run, monkeypatch):
    """The same ids and encoders but other features (the store extracted again): the kept embeddings
    are stale and must not be reused (they would score the old features)."""
    r = store_run
    calls = []
    real = MB.compute_member
    monkeypatch.setattr(MB, "compute_member", lambda plan, inputs: calls.append(1) or real(plan, inputs))
    a = heads(r, "a", 0)
    ev = r["tmp"] / "ev"
    argv = ["--checkpoint", str(a), "--store", str(r["store"]), "--annotations", str(r["ann"]), "--out", str(ev)]
    assert evaluate_main(argv) == 0 and evaluate_main(argv) == 0
    assert len(calls) == 1  # unchanged store: reused
    write_store(r["store"], seed=5, overwrite=True)
    text, audio, src = direct(a, r["store"])
    want = evaluate_embeddings(text, audio, src.captions, src.audio_fnames, load_ground_truth([r["ann"]]),
                               caption_fnames=src.caption_fnames).metrics
    assert evaluate_main(argv) == 0
    assert len(calls) == 2 and metrics_of(ev)["metrics"] == want


def test_a_config_saved_before_ensembles_runs_through_config(store_run, tmp_path):
    """evaluate's config.json of an older run: one checkpoint path, no weights/embedding_cache keys."""
    r = store_run
    a = heads(r, "a", 0)
    old = {"annotations": [str(r["ann"])], "batch_size": 16, "beats_ckpt": None, "captions_csv": None,
           "checkpoint": str(a), "chunk_size": None, "corpus": "clotho", "data_path": None, "device": "cpu",
           "ks": [10, 16], "num_workers": 2, "out": str(tmp_path / "old"), "predictions": None,
           "skip_unmatched": False, "split": "eval", "store": str(r["store"]), "text_model": None}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    assert evaluate_main(["--config", str(path)]) == 0
    assert evaluate_main(["--checkpoint", str(a), "--store", str(r["store"]), "--annotations", str(r["ann"]),
                          "--out", str(tmp_path / "new")]) == 0
    assert metrics_of(tmp_path / "old")["metrics"] == metrics_of(tmp_path / "new")["metrics"]
    old.update(checkpoint=None, store=None, predictions=str(tmp_path / "x.csv"))  # a --predictions run's config
    path.write_text(json.dumps(old))
    from audioret.config import build_parser

    assert build_parser(EvaluateConfig, "evaluate").parse_args(["--config", str(path)]).checkpoint == []


def test_members_with_the_same_short_name_get_distinct_rows(store_run, capsys):
    r = store_run
    a, b = heads(r, "x/heads", 0), heads(r, "y/heads", 1)  # both read "heads (store)" by their folder
    assert evaluate_main(["--checkpoint", str(a), str(b), "--store", str(r["store"]), "--annotations",
                          str(r["ann"])]) == 0
    table = capsys.readouterr().out
    assert "heads (store) #1" in table and "heads (store) #2" in table


def test_weights_and_checkpoints_must_pair_up(store_run, capsys):
    r = store_run
    a, b = heads(r, "a", 0), heads(r, "b", 1)
    assert evaluate_main(["--checkpoint", str(a), str(b), "--weights", "1", "--store", str(r["store"]),
                          "--annotations", str(r["ann"])]) == 2
    assert "1 value(s) for 2 checkpoint(s)" in capsys.readouterr().err
    assert evaluate_main(["--checkpoint", str(a), str(r["tmp"] / "missing.pt"), "--store", str(r["store"])]) == 2
    assert "missing.pt" in capsys.readouterr().err


# --------------------------------------------------------------------------- heads + finetune over a corpus

SPLIT = "val"


@pytest.fixture(scope="module")
def corpus_run(synth_corpus, tmp_path_factory):
    """The val split in a store (tiny encoders), random heads 'trained' on it, a tiny finetune checkpoint."""
    from audioret.extract import ExtractConfig, run as extract_run
    from audioret.models.dual_encoder import build_dual_encoder

    root = tmp_path_factory.mktemp("ensemble_corpus")
    store = root / "store.zarr"
    extract_run(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=store, splits=(SPLIT,),
                              audio_encoder="tiny-beats", text_model="tiny-roberta", batch_windows=4,
                              num_workers=0, progress=False))
    st = open_store(store)
    torch.manual_seed(0)
    model = RetrievalHeads(HeadConfig(audio_dim=st.audio(SPLIT).get("frames", 0).shape[1],
                                      text_dim=st.text(SPLIT).get("tokens", 0).shape[1], embed_dim=16, hidden_dim=32,
                                      audio_pooling="mean-std", text_pooling="mean"))
    head_ckpt = save_heads(root / "heads" / "heads.pt", model.eval(),
                           store={"path": str(store), "metadata": st.metadata})
    spec = {"audio_encoder": "tiny-beats", "text_model": "tiny-roberta", "embed_dim": 16, "max_seconds": 30.0}
    torch.manual_seed(1)
    dual = build_dual_encoder(spec)
    ft = root / "ft" / "checkpoints" / "last.ckpt"
    ft.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in dual.state_dict().items()},
                "hyper_parameters": spec, "epoch": 0, "global_step": 2}, ft)
    return {"store": store, "heads": head_ckpt, "ft": ft, "corpus": synth_corpus, "root": root}


def _finetune_embeddings(ckpt, corpus):
    from audioret.audio import load_audio
    from audioret.corpora import load_corpus
    from audioret.models.dual_encoder import load_finetuned

    model = load_finetuned(ckpt)
    clips = load_corpus("clotho", corpus, SPLIT).clips
    with torch.inference_mode():
        audio = model.embed_audio([load_audio(c.path, 16000, max_samples=model.max_samples) for c in clips])
        text = model.embed_text([cap for c in clips for cap in c.captions])
    return text, audio


def test_heads_from_the_store_and_finetune_from_audio_in_one_ensemble(corpus_run, tmp_path, capsys):
    c = corpus_run
    ckpts = [str(c["heads"]), str(c["ft"])]
    inputs = ["--store", str(c["store"]), "--data-path", str(c["corpus"]), "--split", SPLIT, "--num-workers", "0"]
    ev = tmp_path / "ev"
    assert evaluate_main(["--checkpoint", *ckpts, *inputs, "--out", str(ev)]) == 0
    table = capsys.readouterr().out
    assert "heads (store)" in table and "ft_last (audio)" in table and "ensemble (mean)" in table
    got = metrics_of(ev)
    assert [m["kind"] for m in got["members"]] == ["heads", "finetune"]
    assert [m["input"]["input"] for m in got["members"]] == ["store", "audio"]
    # the same numbers from each model's own embeddings
    src = load_store_source(c["heads"], c["store"], SPLIT)
    t_h, a_h = embed_all(src.embed_text, len(src.captions), 8), embed_all(src.embed_audio, len(src.audio_fnames), 8)
    t_f, a_f = _finetune_embeddings(c["ft"], c["corpus"])
    mean = 0.5 * (t_h @ a_h.T) + 0.5 * (t_f @ a_f.T)
    targets = M.dedup_audios(src.caption_fnames).targets
    want = M.metrics_from_ranks(M.score_matrix_ranks(mean, targets))
    assert got["metrics"] == pytest.approx(want, abs=1e-9)
    solo_ft = M.retrieval_metrics(t_f, a_f, targets)
    assert got["members"][1]["metrics"] == pytest.approx(solo_ft, abs=1e-6)
    # predict over the same split in one command; evaluate --predictions finds the corpus from the record
    pred = tmp_path / "pred"
    assert predict_main(["--checkpoint", *ckpts, *inputs, "--out", str(pred)]) == 0
    sub = read_score_matrix(pred / "ensemble.csv")
    first = [src.captions.index(q) for q in sub.captions]
    torch.testing.assert_close(sub.scores, mean[first], rtol=0, atol=2e-6)
    record = json.loads((pred / "ensemble_source.json").read_text())
    assert record["split"] == SPLIT and record["store"] == str(c["store"].resolve())
    # all members from raw audio (heads rebuild their encoders): the same split, so they agree
    raw = tmp_path / "raw"
    assert evaluate_main(["--checkpoint", *ckpts, "--data-path", str(c["corpus"]), "--split", SPLIT,
                          "--num-workers", "0", "--out", str(raw)]) == 0
    assert metrics_of(raw)["metrics"] == pytest.approx(got["metrics"], abs=0.02)  # fp16-rounded store features


def test_a_member_that_ranks_other_audio_is_refused(corpus_run, tmp_path, capsys):
    c = corpus_run
    corpus = tmp_path / "corpus"
    shutil.copytree(c["corpus"], corpus)
    broken = sorted((corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "validation").glob("*.wav"))[2]
    broken.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 3)  # undecodable: the raw member leaves it out
    out = tmp_path / "ev"
    assert evaluate_main(["--checkpoint", str(c["heads"]), str(c["ft"]), "--store", str(c["store"]),
                          "--data-path", str(corpus), "--split", SPLIT, "--num-workers", "0",
                          "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "disagree" in err and str(c["heads"]) in err and str(c["ft"]) in err
    assert broken.name in err and "8 audio files" in err and "ranks 7" in err
    assert not (out / "metrics.json").exists()
    # flags a member cannot use are refused before anything is embedded
    assert evaluate_main(["--checkpoint", str(c["heads"]), "--store", str(c["store"]), "--data-path",
                          str(c["corpus"]), "--split", SPLIT]) == 2
    assert "would not be used" in capsys.readouterr().err
    assert predict_main(["--checkpoint", str(c["heads"]), str(c["ft"]), "--store", str(c["store"]),
                         "--split", SPLIT, "--out", str(tmp_path / "p")]) == 2
    assert "--data-path" in capsys.readouterr().err
