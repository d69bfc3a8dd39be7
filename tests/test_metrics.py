"""audioret.evaluate.metrics: hand-computed cases, a plain full-matrix reference, chunking, ties."""

from __future__ import annotations

import math

import pytest
import torch

from audioret.evaluate import metrics as M


# ---------------------------------------------------------------- plain reference (full matrix, argsort)

def ref_ranks_matrix(scores: torch.Tensor) -> torch.Tensor:
    """rank[q, a] (1-based) under the tie rule: sort by descending score, then ascending index."""
    Q, A = scores.shape
    rank = torch.empty(Q, A, dtype=torch.long)
    for q in range(Q):
        order = sorted(range(A), key=lambda a: (-scores[q, a].item(), a))
        for pos, a in enumerate(order, start=1):
            rank[q, a] = pos
    return rank


def ref_metrics(scores, targets, relevant, query_index, ks=(10, 16)):
    rank = ref_ranks_matrix(scores)
    out = {}
    r = torch.tensor([rank[q, t].item() for q, t in enumerate(targets)])
    for k in (1, 5, 10):
        out[f"R@{k}"] = sum(1 for x in r.tolist() if x <= k) / len(r)
    out["mAP@10"] = sum((1 / x if x <= 10 else 0) for x in r.tolist()) / len(r)
    if relevant:
        for k in ks:
            aps = []
            for row, rel in zip(query_index, relevant):
                order = torch.argsort(rank[row])  # audio indices by rank
                hits, ap = 0, 0.0
                for pos in range(1, k + 1):
                    if pos - 1 < len(order) and order[pos - 1].item() in rel:
                        hits += 1
                        ap += hits / pos
                aps.append(ap / len(rel))
            out[f"mAP@{k}_multi"] = sum(aps) / len(aps)
    return out


def integer_embeddings(q, a, d, seed, levels=2):
    """Small integer vectors: exact fp32 dot products with many exact ties."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-levels, levels + 1, (q, d), generator=g).float(),
            torch.randint(-levels, levels + 1, (a, d), generator=g).float())


def random_annotations(q, a, n, seed, max_rel=6):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(q, generator=g)[:n].tolist()
    rel = [torch.randperm(a, generator=g)[: int(torch.randint(1, max_rel + 1, (1,), generator=g))].tolist()
           for _ in rows]
    return rows, rel


# ---------------------------------------------------------------- hand-computed

def test_single_match_hand_computed():
    ranks = torch.tensor([1, 2, 6, 11])
    r = M.Ranks(target=ranks)
    m = M.metrics_from_ranks(r)
    assert m["R@1"] == pytest.approx(1 / 4)
    assert m["R@5"] == pytest.approx(2 / 4)
    assert m["R@10"] == pytest.approx(3 / 4)
    assert m["mAP@10"] == pytest.approx((1 + 1 / 2 + 1 / 6 + 0) / 4)
    assert set(m) == {"R@1", "R@5", "R@10", "mAP@10"}


def test_average_precision_hand_computed():
    # relevant at ranks 1, 3, 20: (1/1 + 2/3) / 3 with k = 10
    assert M.average_precision_at_k([3, 20, 1], 10) == pytest.approx((1 + 2 / 3) / 3)
    # every relevant item past the cutoff scores 0
    assert M.average_precision_at_k([11, 12], 10) == 0.0
    # 12 relevant items in ranks 1..12: k = 10 gives at most 10/12, k = 16 gives 1
    assert M.average_precision_at_k(list(range(1, 13)), 10) == pytest.approx(10 / 12)
    assert M.average_precision_at_k(list(range(1, 13)), 16) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="n_q = 0"):
        M.average_precision_at_k([], 10)


def test_exact_rank_from_scores_with_ties():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.1, 0.5]])
    # order: 1 (0.9), 0, 2, 4 (tied 0.5, lower index first), 3
    ranks = M.score_matrix_ranks(scores, targets=[2], relevant=[[4, 3, 1]], query_index=[0], chunk_size=1)
    assert ranks.target.tolist() == [3]
    assert ranks.relevant == [[4, 5, 1]]
    m = M.metrics_from_ranks(ranks, multi_ks=(4,))
    assert m["mAP@4_multi"] == pytest.approx((1 / 1 + 2 / 4) / 3)


def test_multi_match_hand_computed_end_to_end():
    # 1 query, 3 audios along axes: scores 0.9, 0.1, 0.5 -> ranks 1, 3, 2
    text = torch.tensor([[0.9, 0.1, 0.5]])
    audio = torch.eye(3)
    m = M.retrieval_metrics(text, audio, targets=[1], relevant=[[1, 2]], query_index=[0], ks=(1, 2, 3))
    assert m["R@1"] == 0.0 and m["R@5"] == 1.0
    assert m["mAP@10"] == pytest.approx(1 / 3)
    assert m["mAP@1_multi"] == 0.0
    assert m["mAP@2_multi"] == pytest.approx((1 / 2) / 2)
    assert m["mAP@3_multi"] == pytest.approx((1 / 2 + 2 / 3) / 2)


# ---------------------------------------------------------------- reference agreement

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_full_matrix_reference_with_ties(seed):
    Q, A, D = 37, 23, 3
    text, audio = integer_embeddings(Q, A, D, seed, levels=1)  # heavy ties
    g = torch.Generator().manual_seed(seed + 100)
    targets = torch.randint(0, A, (Q,), generator=g).tolist()
    rows, rel = random_annotations(Q, A, 15, seed, max_rel=12)
    got = M.retrieval_metrics(text, audio, targets, rel, rows, ks=(10, 16), chunk_size=5)
    want = ref_metrics(text @ audio.T, targets, rel, rows)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_ranks_match_reference_exactly_float_data():
    Q, A, D = 40, 50, 8
    g = torch.Generator().manual_seed(7)
    text = torch.nn.functional.normalize(torch.randn(Q, D, generator=g), dim=1)
    audio = torch.nn.functional.normalize(torch.randn(A, D, generator=g), dim=1)
    audio[10] = audio[3]  # a duplicated audio: exact ties in every row
    scores = text @ audio.T
    targets = list(range(Q))
    rows, rel = random_annotations(Q, A, 12, 3)
    got = M.score_matrix_ranks(scores, targets, rel, rows, chunk_size=7)
    ref = ref_ranks_matrix(scores)
    assert got.target.tolist() == [ref[q, t].item() for q, t in enumerate(targets)]
    assert got.relevant == [[ref[r, c].item() for c in cs] for r, cs in zip(rows, rel)]


@pytest.mark.parametrize("chunk", [1, 3, 16, 1000])
def test_chunked_equals_unchunked(chunk):
    Q, A, D = 45, 31, 4
    text, audio = integer_embeddings(Q, A, D, 11)
    targets = torch.randint(0, A, (Q,), generator=torch.Generator().manual_seed(1))
    rows, rel = random_annotations(Q, A, 20, 5)
    rows[1] = rows[0]  # two annotated queries on the same row
    full = M.query_ranks(text, audio, targets, rel, rows, chunk_size=Q)
    part = M.query_ranks(text, audio, targets, rel, rows, chunk_size=chunk)
    assert torch.equal(full.target, part.target)
    assert full.relevant == part.relevant
    assert M.retrieval_metrics(text, audio, targets, rel, rows, chunk_size=chunk) == \
        M.retrieval_metrics(text, audio, targets, rel, rows, chunk_size=Q)


def test_custom_target_rows_and_duplicate_relevant():
    scores = torch.tensor([[0.1, 0.3, 0.2], [0.9, 0.8, 0.7]])
    r = M.score_matrix_ranks(scores, targets=[0, 2, 0], target_rows=[0, 1, 1],
                             relevant=[[1, 1, 0]], query_index=[1])
    assert r.target.tolist() == [3, 3, 1]
    assert r.relevant == [[2, 1]]  # a file listed twice counts once


def test_top_k_tie_rule_and_reference():
    Q, A, D = 30, 25, 2
    text, audio = integer_embeddings(Q, A, D, 4, levels=1)
    scores = text @ audio.T
    ref = ref_ranks_matrix(scores)
    for k in (1, 5, 16, 40):
        got = M.top_k(text, audio, k, chunk_size=4)
        want = torch.argsort(ref, dim=1)[:, : min(k, A)]
        assert torch.equal(got, want), k


def test_errors_are_clear():
    text, audio = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="same D"):
        M.retrieval_metrics(text, torch.randn(5, 3), [0, 1, 2])
    with pytest.raises(ValueError, match="outside the score matrix"):
        M.retrieval_metrics(text, audio, [0, 1, 9])
    with pytest.raises(ValueError, match="query_index"):
        M.retrieval_metrics(text, audio, None, relevant=[[1]])
    bad = text.clone()
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        M.retrieval_metrics(bad, audio, [0, 1, 2])
    with pytest.raises(ValueError, match="n_q = 0"):
        M.retrieval_metrics(text, audio, None, relevant=[[]], query_index=[0])


def test_top_k_list_ranks_omit_uncomputable_keys():
    r = M.Ranks(target=torch.tensor([1, 3, 6]), relevant=[[1, 6]], query_index=[0], max_rank=5)
    m = M.metrics_from_ranks(r)
    assert set(m) == {"R@1", "R@5"}
    assert M.uncomputable_keys(r) == ["R@10", "mAP@10", "mAP@10_multi", "mAP@16_multi"]


# ---------------------------------------------------------------- dedup and matching

def test_dedup_first_occurrence_order():
    d = M.dedup_audios(["b.wav", "b.wav", "a.wav", "b.wav", "c.wav", "a.wav"])
    assert d.unique == ["b.wav", "a.wav", "c.wav"]
    assert d.first_row == [0, 2, 4]
    assert d.targets == [0, 0, 1, 0, 2, 1]


def test_match_annotations_exact_and_unmatched():
    captions = ["a dog barks", "rain falls ", "a dog barks", "Rain falls"]
    audio = ["x &amp; y.wav", "z.wav", "w, v.wav"]
    ann = [("a dog barks", ["z.wav", "x &amp; y.wav"]),
           ("rain falls ", ["w, v.wav"]),
           ("rain falls", ["z.wav"]),                 # no exact caption (trailing space differs)
           ("Rain falls", ["x & y.wav"])]             # entity unescaped: not the same file name
    with pytest.raises(ValueError, match="2 of 4 annotation rows") as e:
        M.match_annotations(ann, captions, audio)
    assert "row 2" in str(e.value) and "row 3" in str(e.value)
    mm = M.match_annotations(ann, captions, audio, skip_unmatched=True)
    assert mm.query_index == [0, 1]
    assert mm.relevant == [[1, 0], [2]]
    assert [u.row for u in mm.unmatched] == [2, 3]


# ---------------------------------------------------------------- annotation reader

def test_read_shipped_annotations_verbatim():
    from audioret.evaluate.io import read_annotations
    from audioret.resources import CLOTHO_EVAL_MULTI_MATCH, resource_path
    ann = read_annotations(resource_path(CLOTHO_EVAL_MULTI_MATCH))
    assert len(ann) == 1037
    assert sum(len(a.files) for a in ann) == 3116
    assert max(len(a.files) for a in ann) == 12
    assert any(a.query != a.query.strip() for a in ann)        # trailing whitespace kept
    assert any("&#39;" in f or "&amp;" in f for a in ann for f in a.files)  # entities kept
    assert any("," in f for a in ann for f in a.files)


def test_read_annotations_and_captions(tmp_path):
    from audioret.evaluate.io import read_annotations, read_clotho_captions
    p = tmp_path / "ann.csv"
    p.write_text('query,audio_filenames\n"NA","[\'a, b.wav\', \'c.wav\']"\nx,"not a list"\n')
    with pytest.raises(ValueError, match=r"ann.csv:3.*Python-literal"):
        read_annotations(p)
    p.write_text('query,audio_filenames\n"NA","[\'a, b.wav\', \'c.wav\']"\n')
    assert read_annotations(p)[0].query == "NA"
    assert read_annotations(p)[0].files == ("a, b.wav", "c.wav")
    c = tmp_path / "cap.csv"
    c.write_text("file_name,caption_1,caption_2\nx.wav,one,two\ny.wav,three,\n")
    t = read_clotho_captions(c)
    assert t.captions == ["one", "two", "three"] and t.fnames == ["x.wav", "x.wav", "y.wav"]
    with pytest.raises(ValueError, match="missing"):
        read_annotations(c)


def test_many_relevant_per_query_exceeding_block_rows():
    # 2-row blocks, one query with 15 relevant audios: the sparse per-row path splits its work
    text, audio = integer_embeddings(6, 40, 3, 9, levels=1)
    rel = [list(range(0, 40, 3)) + [1, 2]]
    got = M.score_matrix_ranks(text @ audio.T, None, rel, [4], chunk_size=2)
    ref = ref_ranks_matrix(text @ audio.T)
    assert got.relevant == [[ref[4, c].item() for c in rel[0]]]


def test_chance_matches_closed_form_single_match():
    from audioret.evaluate.metrics import chance_metrics

    c = chance_metrics(20, [1, 3], draws=5)
    assert abs(c["R@1"] - 1 / 20) < 1e-12 and abs(c["R@10"] - 10 / 20) < 1e-12
    assert abs(c["mAP@10"] - sum(1 / r for r in range(1, 11)) / 20) < 1e-12
    assert 0 < c["mAP@16_multi"] < 1
