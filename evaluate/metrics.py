"""Retrieval metrics as pure functions (no Lightning, no file I/O).

Scores are cosine similarities ``S = T @ A.T`` (rows: captions/queries, columns: unique audios).
Everything here is *exact* and works in bounded memory: the score matrix is computed one block
of query rows at a time (fp32 matmul, never bf16) and is never materialised in full.

Tie rule (deterministic, documented): audios are ordered by descending score, and equal scores
are ordered by ascending audio index (the lower index, i.e. dataset order, ranks first). The
original baseline leaves ties to ``torch.argsort``/``topk``; we fix them as baseline.md 8.5 suggests.

Exact rank of audio ``c`` in query row ``S[q]`` (1-based)::

    rank = 1 + #{j : S[q, j] > S[q, c]} + #{j < c : S[q, j] == S[q, c]}

computed per block by counting, without sorting; a second equality pass finds the (rare) rows
with ties and only those get the index-aware count.

Metric keys (stable; used by every stage):

- ``R@1``, ``R@5``, ``R@10``: single-match recall (one relevant audio per caption, ``targets``).
- ``mAP@10``: single-match mean of ``1/rank`` if ``rank <= 10`` else 0 (= MRR@10).
- ``mAP@10_multi``, ``mAP@16_multi``: the 2025 multi-match annotations,
  ``AP@k(q) = (1/n_q) * sum_{m: rho_m <= k} m / rho_m`` (``rho`` sorted relevant ranks,
  normalised by the *total* number ``n_q`` of relevant audios), mean over annotated queries.
  ``mAP@16_multi`` is the 2025 ranking metric.

Entry points: :func:`retrieval_metrics` (embeddings -> metric dict), :func:`query_ranks`
(embeddings -> per-query exact ranks for error analysis), :func:`score_matrix_ranks` (same for an
already-computed score matrix, e.g. a submission file), :func:`metrics_from_ranks`,
:func:`top_k` (deterministic top-k predictions), :func:`dedup_audios` (baseline 8.2) and
:func:`match_annotations` (baseline 8.5 matching).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

SINGLE_RECALL_KS: tuple[int, ...] = (1, 5, 10)
SINGLE_MAP_KS: tuple[int, ...] = (10,)
MULTI_KS: tuple[int, ...] = (10, 16)
DEFAULT_BLOCK_BYTES = 128 * 2**20  # one fp32 score block [C, A] (+ same-sized scratch buffers)
_F32_EXACT_COUNT = 2**24  # float32 sums of 0/1 are exact below this many columns


# --------------------------------------------------------------------------- metric maths on ranks

def recall_at_k(ranks: torch.Tensor, k: int) -> float:
    """Fraction of queries whose (1-based) rank is <= k. ranks: [Q] int."""
    if ranks.numel() == 0:
        return float("nan")
    return (ranks <= k).double().mean().item()


def map_single_at_k(ranks: torch.Tensor, k: int) -> float:
    """Single-match mAP@k: mean of 1/rank if rank <= k else 0 (equals MRR@k). ranks: [Q] int."""
    if ranks.numel() == 0:
        return float("nan")
    r = ranks.double()
    return torch.where(r <= k, 1.0 / r, torch.zeros_like(r)).mean().item()


def average_precision_at_k(relevant_ranks: Sequence[int], k: int) -> float:
    """Multi-match AP@k of one query: (1/n_q) * sum over hits rho_m <= k of m / rho_m.

    ``relevant_ranks``: the 1-based ranks of all n_q relevant audios (any order, distinct).
    Normalised by n_q, not min(n_q, k): 12 relevant items with k = 10 score at most 10/12.
    """
    n = len(relevant_ranks)
    if n == 0:
        raise ValueError("average_precision_at_k: a query needs at least one relevant audio (n_q = 0)")
    total = 0.0
    for m, rho in enumerate(sorted(relevant_ranks), start=1):
        if rho > k:
            break
        total += m / rho
    return total / n


def map_multi_at_k(relevant_ranks: Sequence[Sequence[int]], k: int) -> float:
    """Mean of :func:`average_precision_at_k` over annotated queries."""
    if len(relevant_ranks) == 0:
        return float("nan")
    return math.fsum(average_precision_at_k(r, k) for r in relevant_ranks) / len(relevant_ranks)


@dataclass
class Ranks:
    """Exact 1-based ranks for error analysis.

    ``target``: [Q] int64 rank of each caption's own audio (None without single-match targets).
    ``relevant``: per annotated query, the ranks of its relevant audios in the order given.
    ``query_index``: the score-matrix row of each annotated query.
    ``max_rank``: None when ranks are exact everywhere; K when only a top-K list was known, in
    which case any rank > K is stored as K + 1 and metrics with a cutoff > K cannot be computed.
    """

    target: torch.Tensor | None
    relevant: list[list[int]] = field(default_factory=list)
    query_index: list[int] = field(default_factory=list)
    max_rank: int | None = None


def chance_metrics(num_audios: int, relevant_counts: Sequence[int], draws: int = 50, seed: int = 0) -> dict[str, float]:
    """Expected metrics of a random ranking of ``num_audios`` audios.

    Single-match (one relevant audio) in closed form; multi-match (``relevant_counts[q]`` relevant
    audios per annotated query) by Monte Carlo over seeded random permutations.
    """
    out = {f"R@{k}": min(k, num_audios) / num_audios for k in (1, 5, 10)}
    out["mAP@10"] = sum(1.0 / r for r in range(1, min(10, num_audios) + 1)) / num_audios
    g = torch.Generator().manual_seed(seed)
    for k in (10, 16):
        total = 0.0
        for _ in range(draws):
            for n in relevant_counts:
                ranks = sorted((torch.randperm(num_audios, generator=g)[:n] + 1).tolist())
                total += average_precision_at_k(ranks, k)
        out[f"mAP@{k}_multi"] = total / (draws * max(len(relevant_counts), 1))
    return ordered_metrics(out)


def metrics_from_ranks(ranks: Ranks, *, recall_ks: Sequence[int] = SINGLE_RECALL_KS,
                       map_ks: Sequence[int] = SINGLE_MAP_KS,
                       multi_ks: Sequence[int] = MULTI_KS) -> dict[str, float]:
    """Metric dict (keys ``R@k``, ``mAP@k``, ``mAP@k_multi``) from ranks.

    Keys whose cutoff exceeds ``ranks.max_rank`` are left out (not computable from a top-K list);
    :func:`uncomputable_keys` names them.
    """
    ok = (lambda k: True) if ranks.max_rank is None else (lambda k: k <= ranks.max_rank)
    out: dict[str, float] = {}
    if ranks.target is not None:
        for k in recall_ks:
            if ok(k):
                out[f"R@{k}"] = recall_at_k(ranks.target, k)
        for k in map_ks:
            if ok(k):
                out[f"mAP@{k}"] = map_single_at_k(ranks.target, k)
    if ranks.relevant:
        for k in multi_ks:
            if ok(k):
                out[f"mAP@{k}_multi"] = map_multi_at_k(ranks.relevant, k)
    return ordered_metrics(out)


def metric_sort_key(key: str) -> tuple[int, int, str]:
    """Report order: multi-match mAP (largest cutoff first: mAP@16_multi ranks the challenge),
    then single-match mAP, then R@k by increasing k; unknown keys last, by name."""
    name, _, rest = key.partition("@")
    try:
        k = int(rest.removesuffix("_multi"))
    except ValueError:
        return (3, 0, key)
    if rest.endswith("_multi"):
        return (0, -k, key)
    return (1, -k, key) if name == "mAP" else (2, k, key)


def ordered_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` in report order (:func:`metric_sort_key`): mAP@16_multi, mAP@10_multi, mAP@10,
    R@1, R@5, R@10; every table and metrics.json lists them so."""
    return {k: metrics[k] for k in sorted(metrics, key=metric_sort_key)}


def uncomputable_keys(ranks: Ranks, *, recall_ks: Sequence[int] = SINGLE_RECALL_KS,
                      map_ks: Sequence[int] = SINGLE_MAP_KS,
                      multi_ks: Sequence[int] = MULTI_KS) -> list[str]:
    """Metric keys that a top-K list (``ranks.max_rank = K``) is too short to compute."""
    if ranks.max_rank is None:
        return []
    K = ranks.max_rank
    keys = []
    if ranks.target is not None:
        keys += [f"R@{k}" for k in recall_ks if k > K] + [f"mAP@{k}" for k in map_ks if k > K]
    if ranks.relevant:
        keys += [f"mAP@{k}_multi" for k in multi_ks if k > K]
    return keys


# --------------------------------------------------------------------------- exact pair ranks

def default_chunk_size(num_audios: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Query rows per block so that one fp32 block [C, A] takes about ``block_bytes``."""
    return max(1, min(4096, block_bytes // (4 * max(1, num_audios))))


def _count_ahead(block: torch.Tensor, thr: torch.Tensor, col: torch.Tensor,
                 scratch: torch.Tensor) -> torch.Tensor:
    """Entries ranked ahead of column ``col[i]`` in row ``block[i]`` (whose score is ``thr[i]``).

    block: [R, A] fp32; thr, col: [R]; scratch: [>=R, A] float32 buffer (reused, avoids page faults).
    Comparisons are written as float 0/1 and summed: much faster on CPU than summing bools.
    """
    R, A = block.shape
    buf = scratch[:R]
    gt = torch.gt(block, thr[:, None], out=buf).sum(1)
    eq = torch.eq(block, thr[:, None], out=buf).sum(1)
    ahead = gt.round().long()
    tied = (eq > 1.5).nonzero().flatten()  # eq counts the column itself
    if tied.numel():
        sub = block.index_select(0, tied)
        cols = torch.arange(A, device=block.device)
        before = (sub == thr[tied, None]) & (cols[None, :] < col[tied, None])
        ahead[tied] += before.sum(1)
    return ahead


def _slots(rows: torch.Tensor) -> torch.Tensor:
    """Occurrence number of each pair's row among the pairs (0 for a row's first pair) -> [P]."""
    P = rows.numel()
    order = torch.argsort(rows, stable=True)
    srow = rows[order]
    start = torch.ones_like(srow, dtype=torch.bool)
    start[1:] = srow[1:] != srow[:-1]
    pos = torch.arange(P, device=rows.device)
    first = torch.where(start, pos, torch.zeros_like(pos)).cummax(0).values
    slot = torch.empty_like(pos)
    slot[order] = pos - first
    return slot


def _slot_pass(mat: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, thr: torch.Tensor,
               scratch: torch.Tensor) -> torch.Tensor:
    """Ranks of pairs with DISTINCT rows of ``mat`` [R, A], in one pass over ``mat`` (other rows
    get threshold +inf and count nothing) -> [P]."""
    R = mat.shape[0]
    thr_full = torch.full((R,), math.inf, dtype=mat.dtype, device=mat.device)
    col_full = torch.zeros(R, dtype=torch.long, device=mat.device)
    thr_full[rows] = thr
    col_full[rows] = cols
    return _count_ahead(mat, thr_full, col_full, scratch)[rows] + 1


def _block_pair_ranks(block: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                      scratch: torch.Tensor) -> torch.Tensor:
    """Exact ranks of (local row, column) pairs within one score block [C, A] -> [P] int64.

    Pairs are split into "slots" with distinct rows. A slot covering at least a quarter of the
    block's rows (e.g. every caption's single-match target) is one pass over the block; the other
    (sparse, e.g. multi-match) pairs first copy their rows out once and take one pass per slot
    over that copy. Only whole-matrix ops: many small per-row ops are slow, worst on a busy CPU.
    """
    C = block.shape[0]
    out = torch.empty(rows.numel(), dtype=torch.long, device=block.device)
    if rows.numel() == 0:
        return out
    slot = _slots(rows)
    thr_all = block[rows, cols]
    sparse = torch.zeros(rows.numel(), dtype=torch.bool, device=block.device)
    for s in range(int(slot.max().item()) + 1):
        sel = (slot == s).nonzero().flatten()
        if sel.numel() * 4 < C:
            sparse[sel] = True
        else:
            out[sel] = _slot_pass(block, rows[sel], cols[sel], thr_all[sel], scratch)
    rest = sparse.nonzero().flatten()
    if rest.numel():
        uniq, local, counts = torch.unique(rows[rest], return_inverse=True, return_counts=True)
        # rows with more pairs first: slot s then only touches the first n_s copied rows, so the
        # passes cost (number of pairs) x A rather than (rows) x (max pairs per row) x A
        perm = torch.argsort(counts, descending=True, stable=True)
        new_pos = torch.empty_like(perm)
        new_pos[perm] = torch.arange(perm.numel(), device=perm.device)
        local, counts = new_pos[local], counts[perm]
        sub = block[uniq[perm]]  # [U, A] copy of the rows that hold sparse pairs
        sub_slot = _slots(local)
        for s in range(int(sub_slot.max().item()) + 1):
            sel = (sub_slot == s).nonzero().flatten()
            p = rest[sel]
            n_s = int((counts > s).sum())
            out[p] = _slot_pass(sub[:n_s], local[sel], cols[p], thr_all[p], scratch)
    return out


BlockFn = Callable[[int, int], torch.Tensor]  # (row0, row1) -> fp32 scores [row1 - row0, A]


def _check_finite(block: torch.Tensor, row0: int) -> None:
    if not torch.isfinite(block).all():
        bad = (~torch.isfinite(block)).nonzero()[0].tolist()
        raise ValueError(f"score matrix has a non-finite value at row {row0 + bad[0]}, column {bad[1]}: "
                         "check the embeddings/scores for NaN or inf (e.g. a zero vector normalised)")


def _iter_blocks(block_fn: BlockFn, num_rows: int, chunk: int, *, check: bool,
                 needed: Callable[[int, int], bool] = lambda r0, r1: True
                 ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield (r0, r1, scores[r0:r1]) for the blocks ``needed`` (others are never computed)."""
    for r0 in range(0, num_rows, chunk):
        r1 = min(num_rows, r0 + chunk)
        if not needed(r0, r1):
            continue
        block = block_fn(r0, r1)
        if check:
            _check_finite(block, r0)
        yield r0, r1, block


def pair_ranks(block_fn: BlockFn, num_rows: int, num_cols: int, rows: torch.Tensor,
               cols: torch.Tensor, *, chunk_size: int | None = None,
               device: torch.device | str | None = None, check_finite: bool = True) -> torch.Tensor:
    """Exact 1-based rank of column ``cols[p]`` in row ``rows[p]`` of the score matrix. -> [P] int64.

    ``block_fn(r0, r1)`` returns score rows [r0, r1) as fp32 [r1 - r0, num_cols]; it is called once
    per block of ``chunk_size`` rows that holds a pair, in order, so the full matrix never exists.
    ``check_finite`` rejects NaN/inf scores (callers that checked their embeddings skip it).
    """
    rows = torch.as_tensor(rows, dtype=torch.long)
    cols = torch.as_tensor(cols, dtype=torch.long)
    if rows.shape != cols.shape or rows.ndim != 1:
        raise ValueError(f"pair_ranks: rows {tuple(rows.shape)} and cols {tuple(cols.shape)} must be equal 1-D")
    if rows.numel() and (rows.min() < 0 or rows.max() >= num_rows or cols.min() < 0 or cols.max() >= num_cols):
        raise ValueError(f"pair_ranks: a (row, column) pair falls outside the score matrix "
                         f"[{num_rows}, {num_cols}]")
    if num_cols >= _F32_EXACT_COUNT:
        raise ValueError(f"pair_ranks: {num_cols} audios exceed the exact-count limit {_F32_EXACT_COUNT}")
    chunk = chunk_size or default_chunk_size(num_cols)
    out = torch.empty(rows.numel(), dtype=torch.long)
    if rows.numel() == 0:
        return out
    order = torch.argsort(rows, stable=True)
    srows, scols = rows[order], cols[order]
    bounds = torch.searchsorted(srows, torch.arange(0, num_rows + chunk, chunk))
    scratch = None
    def needed(r0: int, r1: int) -> bool:
        return bool(bounds[r0 // chunk + 1] > bounds[r0 // chunk])

    for r0, r1, block in _iter_blocks(block_fn, num_rows, chunk, check=check_finite, needed=needed):
        lo, hi = int(bounds[r0 // chunk]), int(bounds[r0 // chunk + 1])
        dev = block.device if device is None else torch.device(device)
        block = block.to(dev, torch.float32)
        if scratch is None or scratch.device != dev or scratch.shape[0] < block.shape[0]:
            scratch = torch.empty(block.shape[0], num_cols, device=dev)
        local = (srows[lo:hi] - r0).to(dev)
        out[order[lo:hi]] = _block_pair_ranks(block, local, scols[lo:hi].to(dev), scratch).cpu()
    return out


def embedding_blocks(text_emb: torch.Tensor, audio_emb: torch.Tensor,
                      device: torch.device | str | None) -> tuple[BlockFn, int, int]:
    if text_emb.ndim != 2 or audio_emb.ndim != 2 or text_emb.shape[1] != audio_emb.shape[1]:
        raise ValueError(f"embeddings must be text [Q, D] and audio [A, D] with the same D; got "
                         f"{tuple(text_emb.shape)} and {tuple(audio_emb.shape)}")
    for name, emb in (("text", text_emb), ("audio", audio_emb)):
        # a sum is one pass without a [N, D] temporary; NaN/inf always make it non-finite
        if not torch.isfinite(emb.sum()) and not torch.isfinite(emb).all():
            row = (~torch.isfinite(emb)).any(1).nonzero()[0].item()
            raise ValueError(f"{name} embeddings contain NaN/inf (first at row {row}); "
                             "check the model output or the normalisation of an all-zero vector")
    dev = torch.device(device) if device is not None else audio_emb.device
    audio_t = audio_emb.to(dev, torch.float32).T.contiguous()  # [D, A]; fp32 for exactness

    def block(r0: int, r1: int) -> torch.Tensor:
        return text_emb[r0:r1].to(dev, torch.float32) @ audio_t
    return block, text_emb.shape[0], audio_emb.shape[0]


def _flatten_relevant(relevant: Sequence[Sequence[int]], query_index: Sequence[int],
                      num_rows: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    if len(relevant) != len(query_index):
        raise ValueError(f"relevant has {len(relevant)} queries but query_index has {len(query_index)}")
    rows, cols, sizes = [], [], []
    for q, (row, rel) in enumerate(zip(query_index, relevant)):
        uniq = list(dict.fromkeys(int(c) for c in rel))
        if not uniq:
            raise ValueError(f"annotated query #{q} (row {row}) has no relevant audio (n_q = 0)")
        if not 0 <= row < num_rows:
            raise ValueError(f"annotated query #{q}: row {row} outside [0, {num_rows})")
        rows += [int(row)] * len(uniq)
        cols += uniq
        sizes.append(len(uniq))
    return torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long), sizes


def ranks_from_blocks(block_fn: BlockFn, num_rows: int, num_cols: int,
                      targets: Sequence[int] | torch.Tensor | None = None,
                      relevant: Sequence[Sequence[int]] | None = None,
                      query_index: Sequence[int] | None = None, *,
                      target_rows: Sequence[int] | torch.Tensor | None = None,
                      chunk_size: int | None = None,
                      device: torch.device | str | None = None, check_finite: bool = True) -> Ranks:
    """Single- and multi-match exact ranks in one pass over the score blocks.

    ``targets[i]`` is the audio column of single-match query i, scored on row ``target_rows[i]``
    (default: row i). ``relevant[q]`` lists the audio columns of annotated query q, scored on row
    ``query_index[q]``; duplicates within a list count once.
    """
    rows_l, cols_l = [], []
    n_single = 0
    if targets is not None:
        t = torch.as_tensor(targets, dtype=torch.long).flatten()
        tr = torch.arange(t.numel()) if target_rows is None else torch.as_tensor(target_rows, dtype=torch.long)
        if tr.shape != t.shape:
            raise ValueError(f"target_rows has {tr.numel()} entries for {t.numel()} targets")
        rows_l.append(tr)
        cols_l.append(t)
        n_single = t.numel()
    sizes: list[int] = []
    if relevant is not None and len(relevant):
        if query_index is None:
            raise ValueError("relevant given without query_index (the score row of each annotated query)")
        r, c, sizes = _flatten_relevant(relevant, query_index, num_rows)
        rows_l.append(r)
        cols_l.append(c)
    if not rows_l:
        raise ValueError("nothing to rank: give targets and/or relevant + query_index")
    all_ranks = pair_ranks(block_fn, num_rows, num_cols, torch.cat(rows_l), torch.cat(cols_l),
                           chunk_size=chunk_size, device=device, check_finite=check_finite)
    target = all_ranks[:n_single] if targets is not None else None
    rel_ranks, at = [], n_single
    for n in sizes:
        rel_ranks.append(all_ranks[at:at + n].tolist())
        at += n
    return Ranks(target=target, relevant=rel_ranks,
                 query_index=[int(q) for q in query_index] if sizes and query_index is not None else [])


def query_ranks(text_emb: torch.Tensor, audio_emb: torch.Tensor,
                targets: Sequence[int] | torch.Tensor | None = None,
                relevant: Sequence[Sequence[int]] | None = None,
                query_index: Sequence[int] | None = None, *, chunk_size: int | None = None,
                device: torch.device | str | None = None) -> Ranks:
    """Exact per-query ranks from embeddings text [Q, D] x audio [A, D] (fp32, chunked)."""
    block, Q, A = embedding_blocks(text_emb, audio_emb, device)
    return ranks_from_blocks(block, Q, A, targets, relevant, query_index,
                             chunk_size=chunk_size, device=device, check_finite=False)


def score_matrix_ranks(scores: torch.Tensor, targets: Sequence[int] | torch.Tensor | None = None,
                       relevant: Sequence[Sequence[int]] | None = None,
                       query_index: Sequence[int] | None = None, *,
                       target_rows: Sequence[int] | torch.Tensor | None = None,
                       chunk_size: int | None = None) -> Ranks:
    """Exact per-query ranks from an existing score matrix [Q, A] (e.g. a submission file)."""
    if scores.ndim != 2:
        raise ValueError(f"score matrix must be 2-D [queries, audios], got {tuple(scores.shape)}")
    return ranks_from_blocks(lambda r0, r1: scores[r0:r1].float(), scores.shape[0], scores.shape[1],
                             targets, relevant, query_index, target_rows=target_rows,
                             chunk_size=chunk_size)


def retrieval_metrics(text_emb: torch.Tensor, audio_emb: torch.Tensor,
                      targets: Sequence[int] | torch.Tensor | None,
                      relevant: Sequence[Sequence[int]] | None = None,
                      query_index: Sequence[int] | None = None, *,
                      ks: Sequence[int] = MULTI_KS, recall_ks: Sequence[int] = SINGLE_RECALL_KS,
                      map_ks: Sequence[int] = SINGLE_MAP_KS, chunk_size: int | None = None,
                      device: torch.device | str | None = None) -> dict[str, float]:
    """All retrieval metrics, exact, from L2-normalised embeddings (the one entry point).

    text_emb [Q, D], audio_emb [A, D] (unique audios, see :func:`dedup_audios`); ``targets[Q]`` the
    single-match audio index of each caption (or None); ``relevant`` / ``query_index`` the
    multi-match annotations (see :func:`match_annotations`); ``ks`` the multi-match cutoffs.
    Returns ``{"R@1", "R@5", "R@10", "mAP@10", "mAP@10_multi", "mAP@16_multi"}`` (the multi keys
    only with annotations). Runs on ``device`` (default: the audio embeddings' device).
    """
    ranks = query_ranks(text_emb, audio_emb, targets, relevant, query_index,
                        chunk_size=chunk_size, device=device)
    return metrics_from_ranks(ranks, recall_ks=recall_ks, map_ks=map_ks, multi_ks=ks)


# --------------------------------------------------------------------------- top-k predictions

def _fix_block_topk(block: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
    """Apply the tie rule to a block's top-(k+1): exact set at the boundary, stable order inside."""
    C, A = block.shape
    if vals.shape[1] > k:
        boundary = (vals[:, k] == vals[:, k - 1]).nonzero().flatten().tolist()
        vals, idx = vals[:, :k].clone(), idx[:, :k].clone()
        for i in boundary:  # ties straddle the cut: take the lowest indices among the tied
            thr = vals[i, k - 1]
            above = (block[i] > thr).nonzero().flatten()
            tied = (block[i] == thr).nonzero().flatten()[: k - above.numel()]
            chosen = torch.cat([above, tied])
            idx[i] = chosen
            vals[i] = block[i, chosen]
    # order by (-score, index): sort by index, then stable sort by descending score
    o = torch.argsort(idx, dim=1)
    idx, vals = idx.gather(1, o), vals.gather(1, o)
    o = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return idx.gather(1, o)


def top_k_from_blocks(block_fn: BlockFn, num_rows: int, num_cols: int, k: int, *,
                      chunk_size: int | None = None) -> torch.Tensor:
    """Top-k audio indices per row [Q, min(k, A)] int64, ordered by the tie rule."""
    if k < 1:
        raise ValueError(f"top_k: k must be >= 1, got {k}")
    k = min(k, num_cols)
    chunk = chunk_size or default_chunk_size(num_cols)
    out = torch.empty(num_rows, k, dtype=torch.long)
    for r0, r1, block in _iter_blocks(block_fn, num_rows, chunk, check=True):
        block = block.float()
        vals, idx = block.topk(min(k + 1, num_cols), dim=1, sorted=True)
        out[r0:r1] = _fix_block_topk(block, vals, idx, k).cpu()
    return out


def top_k(text_emb: torch.Tensor, audio_emb: torch.Tensor, k: int, *, chunk_size: int | None = None,
          device: torch.device | str | None = None) -> torch.Tensor:
    """Deterministic top-k audio indices per caption from embeddings -> [Q, k] int64."""
    block, Q, A = embedding_blocks(text_emb, audio_emb, device)
    return top_k_from_blocks(block, Q, A, k, chunk_size=chunk_size)


# --------------------------------------------------------------------------- dedup and matching

@dataclass(frozen=True)
class Dedup:
    """Baseline 8.2: ``unique`` audio names in first-occurrence order, ``first_row[a]`` the caption
    row whose audio embedding represents unique audio a, ``targets[i]`` caption i's audio index."""

    unique: list[str]
    first_row: list[int]
    targets: list[int]


def dedup_audios(fnames: Sequence[str]) -> Dedup:
    """Unique-audio list and targets from the per-caption audio names (in caption order)."""
    index: dict[str, int] = {}
    first_row: list[int] = []
    targets: list[int] = []
    for row, name in enumerate(fnames):
        if name not in index:
            index[name] = len(index)
            first_row.append(row)
        targets.append(index[name])
    return Dedup(unique=list(index), first_row=first_row, targets=targets)


@dataclass(frozen=True)
class Unmatched:
    """An annotation row that could not be used, and why."""

    row: int  # 0-based data row in the annotation file
    query: str
    reason: str


@dataclass(frozen=True)
class MultiMatch:
    """Annotations resolved to score-matrix indices: ``query_index[q]`` (row), ``relevant[q]``
    (audio columns), the matched ``queries``, and the ``unmatched`` rows that were skipped."""

    query_index: list[int]
    relevant: list[list[int]]
    queries: list[str]
    unmatched: list[Unmatched]


def match_annotations(annotations: Sequence[tuple[str, Sequence[str]]], captions: Sequence[str],
                      audio_names: Sequence[str], *, skip_unmatched: bool = False) -> MultiMatch:
    """Resolve (query, [file names]) rows against raw captions and unique audio names (exactly).

    Query row = the FIRST index of the exact caption string (no stripping, no case folding);
    file names compared exactly (HTML entities kept). A row with an unknown query or any unknown
    file is an error listing every such row, or, with ``skip_unmatched``, skipped whole (dropping
    only the missing files would shrink n_q and inflate AP) and reported in ``unmatched``.
    """
    first: dict[str, int] = {}
    for i, c in enumerate(captions):
        first.setdefault(c, i)
    col = {name: j for j, name in enumerate(audio_names)}
    qi, rel, qs, bad = [], [], [], []
    for n, (query, files) in enumerate(annotations):
        files = list(dict.fromkeys(files))
        missing = [f for f in files if f not in col]
        if query not in first:
            bad.append(Unmatched(n, query, "query is not an exact caption string"))
        elif not files:
            bad.append(Unmatched(n, query, "no relevant audio listed"))
        elif missing:
            bad.append(Unmatched(n, query, f"audio file(s) not in the audio list: {missing}"))
        else:
            qi.append(first[query])
            rel.append([col[f] for f in files])
            qs.append(query)
    if bad and not skip_unmatched:
        shown = "\n".join(f"  row {u.row}: {u.query!r}: {u.reason}" for u in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ValueError(f"{len(bad)} of {len(annotations)} annotation rows do not match the captions/"
                         f"audio names (exact comparison):\n{shown}{more}\n"
                         "Check that the annotations belong to this split; pass skip_unmatched=True "
                         "(--skip-unmatched) to score only the matching rows.")
    return MultiMatch(query_index=qi, relevant=rel, queries=qs, unmatched=bad)


__all__ = [
    "Ranks", "Dedup", "MultiMatch", "Unmatched", "recall_at_k", "map_single_at_k",
    "average_precision_at_k", "map_multi_at_k", "metrics_from_ranks", "metric_sort_key", "ordered_metrics",
    "uncomputable_keys",
    "default_chunk_size", "pair_ranks", "ranks_from_blocks", "query_ranks", "score_matrix_ranks",
    "retrieval_metrics", "embedding_blocks", "top_k_from_blocks", "top_k", "dedup_audios", "match_annotations",
]
