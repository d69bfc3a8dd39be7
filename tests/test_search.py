"""audioret index / search / serve over a tiny store split and audio folders (tiny encoders, random
heads): exact results, appends, refusals naming both sides, clear errors, no path outside the index."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("faiss", reason="the search extra (faiss-cpu) is not installed")

from audioret.evaluate.model import load_store_source  # noqa: E402
from audioret.models import HeadConfig, RetrievalHeads, save_heads  # noqa: E402
from audioret.search import ann  # noqa: E402
from audioret.search import folder as F  # noqa: E402
from audioret.search.config import IndexConfig, SearchConfig  # noqa: E402
from audioret.search.index import check_same_model, main as index_main, run as index_run  # noqa: E402
from audioret.search.query import QueryError, Searcher, main as search_main, run as search_run  # noqa: E402
from audioret.store import open_store  # noqa: E402

SPLIT = "eval"


@pytest.fixture(scope="module")
def store(synth_corpus, tmp_path_factory):
    from audioret.extract import ExtractConfig, run as extract_run

    path = tmp_path_factory.mktemp("search_store") / "store.zarr"
    extract_run(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=path, splits=(SPLIT,),
                              audio_encoder="tiny-beats", text_model="tiny-roberta", batch_windows=4,
                              num_workers=0, progress=False))
    return path


def _heads(store_path, out, seed):
    st = open_store(store_path)
    audio, text = st.audio(SPLIT), st.text(SPLIT)
    torch.manual_seed(seed)
    heads = RetrievalHeads(HeadConfig(audio_dim=audio.get("frames", 0).shape[1],
                                      text_dim=text.get("tokens", 0).shape[1], embed_dim=16, hidden_dim=32))
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_heads(out, heads.eval(), store={"path": str(store_path), "metadata": st.metadata})


@pytest.fixture(scope="module")
def ckpts(store, tmp_path_factory):
    root = tmp_path_factory.mktemp("search_ckpts")
    return [_heads(store, root / f"run{s}" / "heads.pt", s) for s in (0, 1)]


@pytest.fixture(scope="module")
def built(store, ckpts, tmp_path_factory):
    out = tmp_path_factory.mktemp("search_idx") / "idx"
    index_run(IndexConfig(checkpoint=ckpts[0], out=out, store=store, split=SPLIT, num_workers=0))
    return out


@pytest.fixture(scope="module")
def searcher(built):
    return Searcher(built)


def _audio_dir(synth_corpus):
    return synth_corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "evaluation"


# ---- exact results -----------------------------------------------------------------------------
def test_exact_index_equals_brute_force_matrix_product(built, searcher, store, ckpts):
    m = json.loads((built / F.MANIFEST).read_text())
    assert (built / F.MARKER).is_file() and m["kind"] == ann.FLAT and m["recall"]["recall"] == 1.0
    src = load_store_source(ckpts[0], store, SPLIT)
    with torch.inference_mode():
        audio = src.embed_audio(list(range(len(src.audio_fnames)))).float().numpy()  # [N, E], independent of the index
    assert [r.id for r in searcher.rows] == src.audio_fnames
    captions = src.captions[:6]
    q = searcher.embed(captions)
    scores = q @ audio.T  # [Q, N]
    k = 5
    hits = searcher.search(captions, k)
    for i, row in enumerate(hits):
        want = np.argsort(-scores[i], kind="stable")[:k]
        assert [h.clip for h in row] == want.tolist()
        np.testing.assert_allclose([h.score for h in row], scores[i, want], atol=1e-5)
        assert [h.rank for h in row] == list(range(1, k + 1))
    # rows carry the corpus file and its duration
    r0 = searcher.rows[0]
    assert r0.path and r0.path.endswith(r0.id) and r0.duration and r0.duration > 0


def test_search_cli_json_and_table(built, capsys, tmp_path):
    qfile = tmp_path / "queries.txt"
    qfile.write_text("a dog barks\n\n  rain on a roof  \n")
    assert search_main([str(built), "birds sing", "--queries", str(qfile), "--top-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [q["query"] for q in out["queries"]] == ["birds sing", "a dog barks", "rain on a roof"]
    assert all(len(q["results"]) == 3 for q in out["queries"])
    assert search_main([str(built), "birds sing", "--top-k", "2"]) == 0
    table = capsys.readouterr().out
    assert "rank" in table and "score" in table and "duration" in table
    # top-k above the collection size gives the whole collection, ranked
    res = search_run(SearchConfig(index=built, queries=["x"], top_k=1000))
    assert len(res["queries"][0]["results"]) == res["count"]


# ---- append ------------------------------------------------------------------------------------
def _link_folder(dst, files):
    dst.mkdir(parents=True)
    for f in files:
        (dst / f.name).symlink_to(f)
    return dst


def test_append_equals_one_shot_and_rerun_skips(synth_corpus, ckpts, tmp_path):
    files = sorted(_audio_dir(synth_corpus).iterdir())
    a = _link_folder(tmp_path / "a", files[:5])
    b = _link_folder(tmp_path / "b", files[5:])
    both = _link_folder(tmp_path / "both", files)
    cfg = dict(checkpoint=ckpts[0], num_workers=0, clips_per_part=4)
    one = index_run(IndexConfig(out=tmp_path / "one", audio_dir=both, **cfg))
    index_run(IndexConfig(out=tmp_path / "two", audio_dir=a, **cfg))
    two = index_run(IndexConfig(out=tmp_path / "two", audio_dir=b, **cfg))
    assert one["count"] == two["count"] == len(files) and len(two["sources"]) == 2
    again = index_run(IndexConfig(out=tmp_path / "two", audio_dir=b, **cfg))  # rerun: nothing new
    assert again["count"] == len(files) and len(again["parts"]) == len(two["parts"])
    s1, s2 = Searcher(tmp_path / "one"), Searcher(tmp_path / "two", model=None)
    v1 = {r.key: s1.vectors(np.array([i]))[0] for i, r in enumerate(s1.rows)}
    v2 = {r.key: s2.vectors(np.array([i]))[0] for i, r in enumerate(s2.rows)}
    assert v1.keys() == v2.keys()
    for key in v1:
        np.testing.assert_allclose(v1[key], v2[key], atol=1e-5)
    for h1, h2 in zip(s1.search(["a dog barks", "waves"], 6), s2.search(["a dog barks", "waves"], 6)):
        assert [s1.rows[h.clip].key for h in h1] == [s2.rows[h.clip].key for h in h2]
        np.testing.assert_allclose([h.score for h in h1], [h.score for h in h2], atol=1e-5)


def test_interrupted_build_is_incomplete_and_a_rerun_finishes_it(store, ckpts, tmp_path, capsys):
    out = tmp_path / "idx"
    index_run(IndexConfig(checkpoint=ckpts[0], out=out, store=store, split=SPLIT, clips_per_part=5))
    (out / F.MARKER).unlink()
    (out / F.INDEX_FILE).unlink()
    assert search_main([str(out), "a dog"]) == 2
    assert "incomplete" in capsys.readouterr().err
    m = index_run(IndexConfig(checkpoint=ckpts[0], out=out, store=store, split=SPLIT, clips_per_part=5))
    assert m["count"] == len(open_store(store).audio(SPLIT).ids) and (out / F.MARKER).is_file()
    assert Searcher(out).index.ntotal == m["count"]


# ---- refusals ----------------------------------------------------------------------------------
def test_another_checkpoint_is_refused_naming_both(built, store, ckpts, capsys, tmp_path):
    old = json.loads((built / F.MANIFEST).read_text())
    assert index_main(["--checkpoint", str(ckpts[1]), "--store", str(store), "--split", SPLIT,
                       "--out", str(built)]) == 2
    err = capsys.readouterr().err
    assert str(ckpts[0].resolve()) in err and str(ckpts[1].resolve()) in err
    assert old["checkpoint"]["sha256"][:12] in err
    assert json.loads((built / F.MANIFEST).read_text()) == old and (built / F.MARKER).is_file()
    # the checkpoint file changed in place (retrained): search refuses rather than mixing models
    copy = tmp_path / "idx"
    shutil.copytree(built, copy)
    moved = tmp_path / "heads.pt"
    shutil.copy(ckpts[1], moved)
    assert search_main([str(copy), "a dog", "--checkpoint", str(moved)]) == 2
    err = capsys.readouterr().err
    assert old["checkpoint"]["sha256"][:12] in err and str(moved.resolve()) in err


def test_another_encoder_is_refused_naming_both(built):
    m = json.loads((built / F.MANIFEST).read_text())
    other = json.loads(json.dumps(m["encoders"]))
    other["text"]["max_length"] = 16
    with pytest.raises(F.IndexFolderError) as err:
        check_same_model(built, m, m["checkpoint"], other)
    text = str(err.value)
    assert "text encoder" in text and "max_length" in text and str(built) in text
    assert m["encoders"]["text"]["weights_sha256"][:12] in text  # the index's side, and this command's
    other = json.loads(json.dumps(m["encoders"]))
    other["audio"]["checkpoint_sha256"] = "f" * 64
    with pytest.raises(F.IndexFolderError, match=f"{m['encoders']['audio']['checkpoint_sha256'][:12]}.*ffffffffffff"):
        check_same_model(built, m, m["checkpoint"], other)


# ---- clear errors ------------------------------------------------------------------------------
def test_bad_queries_and_folders_are_one_line_errors(built, searcher, tmp_path, capsys):
    for args, words in (([str(built), "   "], "empty"),
                        ([str(built), "x" * 501], "501 characters"),
                        ([str(tmp_path / "nope"), "a dog"], "no such index folder"),
                        ([str(tmp_path), "a dog"], "not an audioret index"),
                        ([str(built), "a", "--top-k", "0"], "at least 1"),
                        ([str(built)], "no query")):
        assert search_main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    with pytest.raises(QueryError):
        searcher.search([""], 3)
    # an existing folder that is not an index is never written into
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert index_main(["--checkpoint", "x.pt", "--audio-dir", str(tmp_path), "--out", str(tmp_path / "mine")]) == 2
    assert index_main(["--checkpoint", str(built / "nothing.pt"), "--audio-dir", str(tmp_path),
                       "--out", str(tmp_path / "new")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_undecodable_audio_is_left_out_and_listed(synth_corpus, ckpts, tmp_path):
    files = sorted(_audio_dir(synth_corpus).iterdir())[:3]
    folder = _link_folder(tmp_path / "a", files)
    (folder / "broken.wav").write_bytes(b"RIFF0000WAVEnot audio")
    m = index_run(IndexConfig(checkpoint=ckpts[0], out=tmp_path / "idx", audio_dir=folder, num_workers=0))
    assert m["count"] == 3 and list(m["skipped"]) == [str(folder / "broken.wav")]


def test_ivfpq_needs_enough_clips(store, ckpts, tmp_path, capsys):
    assert index_main(["--checkpoint", str(ckpts[0]), "--store", str(store), "--split", SPLIT, "--kind", "ivfpq",
                       "--out", str(tmp_path / "i")]) == 2
    assert "--kind flat" in capsys.readouterr().err


# ---- serve -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(built, searcher):
    from fastapi.testclient import TestClient

    from audioret.search.serve import create_app

    return TestClient(create_app(searcher, max_top_k=20, max_query_chars=50))


def test_api_mirrors_search_and_serves_listed_audio(client, built, searcher):
    r = client.get("/api/search", params={"q": "a dog barks", "k": 4})
    assert r.status_code == 200
    got = r.json()["queries"][0]["results"]
    want = search_run(SearchConfig(index=built, queries=["a dog barks"], top_k=4), searcher)["queries"][0]["results"]
    assert [(h["clip"], h["rank"], h["id"]) for h in got] == [(h["clip"], h["rank"], h["id"]) for h in want]
    assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want])
    assert all(h["path"] is None for h in got)  # no server paths leak to the page
    audio = client.get(got[0]["audio"])
    assert audio.status_code == 200 and audio.headers["content-type"].startswith("audio/")
    assert audio.content == open(searcher.rows[got[0]["clip"]].path, "rb").read()
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body")[0]
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize("params,words", [({"q": ""}, "empty"), ({"q": "x" * 51}, "51 characters"),
                                          ({"q": "dog", "k": 21}, "1 to 20"), ({"q": "dog", "k": 0}, "1 to 20")])
def test_api_caps_queries(client, params, words):
    r = client.get("/api/search", params=params)
    assert r.status_code == 400 and words in r.json()["detail"]


@pytest.mark.parametrize("url", ["/audio/../../etc/passwd", "/audio/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                 "/audio/%2Fetc%2Fpasswd", "/audio/-1", "/audio/12", "/audio/999", "/audio/1e1",
                                 "/audio/0x1", "/audio/%20%31", "/static/../serve.py", "/static/%2e%2e/serve.py",
                                 "/static/..%2fserve.py", "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
                                 "/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                                 "/audio/%C2%B2", "/audio/%D9%A1"])  # superscript two, Arabic-Indic one: isdigit() but not a clip number
def test_path_traversal_gets_404(client, url):
    assert client.get(url).status_code == 404


def test_missing_audio_file_is_a_clear_404(store, ckpts, synth_corpus, tmp_path):
    from fastapi.testclient import TestClient

    from audioret.search.serve import create_app

    files = sorted(_audio_dir(synth_corpus).iterdir())[:2]
    folder = tmp_path / "a"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    index_run(IndexConfig(checkpoint=ckpts[0], out=tmp_path / "idx", audio_dir=folder, num_workers=0))
    (folder / files[1].name).unlink()
    c = TestClient(create_app(Searcher(tmp_path / "idx")))
    assert c.get("/audio/0").status_code == 200
    r = c.get("/audio/1")
    assert r.status_code == 404 and "no longer exists" in r.json()["detail"] and files[1].name in r.json()["detail"]


@pytest.mark.parametrize("module", ["faiss", "fastapi", "uvicorn"])
def test_missing_extra_is_one_line_with_the_install_hint(module, monkeypatch, capsys, tmp_path):
    import sys

    from audioret.search.serve import main as serve_main

    monkeypatch.setitem(sys.modules, module, None)  # import -> ImportError, as when not installed
    if module == "faiss":
        assert index_main(["--checkpoint", "c.pt", "--audio-dir", str(tmp_path), "--out", str(tmp_path / "i")]) == 2
        assert search_main([str(tmp_path), "a dog"]) == 2
    assert serve_main([str(tmp_path)]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert "pip install 'audioret[search]'" in line and module in line
    assert not (tmp_path / "i").exists()
