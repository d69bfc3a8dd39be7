"""audioret evaluate --checkpoint --store: tiny random heads over a tiny store split."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from audioret.evaluate import metrics as M
from audioret.evaluate.cli import main
from audioret.evaluate.model import embed_all, load_store_source
from audioret.models import HeadConfig, RetrievalHeads, save_heads
from audioret.store import create_store

META = {"audio_encoder": {"name": "tiny"}, "text_encoder": {"name": "tiny-text"}}


@pytest.fixture
def store_and_ckpt(tmp_path):
    rng = np.random.default_rng(0)
    n_clips, da, dt = 9, 8, 12
    clips = [f"clip {i}, &amp;.wav" for i in range(n_clips)]
    frames = [rng.normal(size=(int(rng.integers(3, 9)), da)) for _ in clips]
    windows = [rng.normal(size=(1 + i % 2, da)) for i in range(n_clips)]
    captions, clip_index, tokens = [], [], []
    for i in range(n_clips):
        for j in range(3):
            captions.append(f"sound {i} take {j}")
            clip_index.append(i)
            tokens.append(rng.normal(size=(int(rng.integers(2, 6)), dt)))
    st = create_store(tmp_path / "store.zarr", META)
    st.plan_audio("eval", clips, [len(f) for f in frames], [len(w) for w in windows], dim=da)
    st.plan_text("eval", captions, clip_index, [len(t) for t in tokens], dim=dt)
    with st.writer("eval", "audio", 0) as w:
        for i in range(n_clips):
            w.put(i, frames=frames[i], windows=windows[i])
    with st.writer("eval", "text", 0) as w:
        for j, t in enumerate(tokens):
            w.put(j, tokens=t, first=t[0])
    torch.manual_seed(0)
    heads = RetrievalHeads(HeadConfig(audio_dim=da, text_dim=dt, embed_dim=6, hidden_dim=16))
    ckpt = save_heads(tmp_path / "heads.pt", heads.eval(), store={"metadata": META})
    ann = tmp_path / "ann.csv"
    with ann.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["query", "audio_filenames"])
        w.writerow([captions[0], repr([clips[0], clips[4]])])
        w.writerow([captions[7], repr([clips[2]])])
    return tmp_path / "store.zarr", ckpt, ann, captions, clips, clip_index


def test_model_path_matches_direct_metrics(store_and_ckpt, tmp_path):
    store, ckpt, ann, captions, clips, clip_index = store_and_ckpt
    src = load_store_source(ckpt, store, "eval")
    assert src.captions == captions and src.audio_fnames == clips
    text = embed_all(src.embed_text, len(captions), 4)
    audio = embed_all(src.embed_audio, len(clips), 4)
    assert torch.allclose(text.norm(dim=1), torch.ones(len(text)), atol=1e-5)
    want = M.retrieval_metrics(text, audio, clip_index, [[0, 4], [2]], [0, 7])
    out = tmp_path / "out"
    assert main(["--checkpoint", str(ckpt), "--store", str(store), "--annotations", str(ann),
                 "--out", str(out)]) == 0
    got = json.loads((out / "metrics.json").read_text())["metrics"]
    assert got == pytest.approx(want)
    assert set(got) == {"R@1", "R@5", "R@10", "mAP@10", "mAP@10_multi", "mAP@16_multi"}
    saved = json.loads((out / "config.json").read_text())  # the resolved config travels with the metrics
    assert saved["checkpoint"] == [str(ckpt)] and saved["split"] == "eval"  # a list since ensembles


def test_model_path_refuses_other_encoders(store_and_ckpt, tmp_path, capsys):
    store, _, ann, *_ = store_and_ckpt
    heads = RetrievalHeads(HeadConfig(audio_dim=8, text_dim=12, embed_dim=6, hidden_dim=16))
    other = save_heads(tmp_path / "other.pt", heads,
                       store={"metadata": {**META, "audio_encoder": {"name": "beats"}}})
    assert main(["--checkpoint", str(other), "--store", str(store), "--annotations", str(ann)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and f"--store {store} holds features of audio encoder 'tiny'" in err[0]
    assert "needs 'beats'" in err[0] and str(other) in err[0]


def test_predict_writes_submissions_that_score_like_the_model(store_and_ckpt, tmp_path):
    from audioret.evaluate.predict import main as predict_main
    store, ckpt, ann, captions, clips, clip_index = store_and_ckpt
    out = tmp_path / "pred"
    assert predict_main(["--checkpoint", str(ckpt), "--store", str(store), "--out", str(out),
                         "--name", "run", "--top-k", "5"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["embeddings", "run.csv", "run_source.json", "run_top5.csv"]
    direct = tmp_path / "direct"
    main(["--checkpoint", str(ckpt), "--store", str(store), "--annotations", str(ann), "--out", str(direct)])
    want = json.loads((direct / "metrics.json").read_text())["metrics"]
    scored = tmp_path / "scored"
    assert main(["--predictions", str(out / "run.csv"), "--annotations", str(ann), "--out", str(scored)]) == 0
    got = json.loads((scored / "metrics.json").read_text())["metrics"]
    multi = {k: v for k, v in want.items() if k.endswith("_multi")}
    assert got == pytest.approx(multi)  # the matrix carries no single-match ground truth by itself
    # K = 5 < 10: no multi-match metric can be computed from the ranked list, a clear error
    assert main(["--predictions", str(out / "run_top5.csv"), "--annotations", str(ann)]) == 2
