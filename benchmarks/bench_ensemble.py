"""Ensemble scoring vs one model: exact single-match ranks + top-16 over the mean of N members' score
matrices, block by block (audioret.evaluate.ensemble.mean_block_fn), side by side in one run.

    python benchmarks/bench_ensemble.py                       # 10k captions x 10k audios, D=256, 4 members
    python benchmarks/bench_ensemble.py --size 20000 --members 4

Each side runs in its own subprocess on seeded random unit vectors; peak memory is ru_maxrss after
the scoring minus before it (the members' embeddings are already in memory), so it shows what the
score blocks cost: one accumulator block more than one model, whatever N (the full matrix is
never built). Time grows with N (one matmul per member and block).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(members: int, size: int, dim: int) -> dict:
    import torch

    from audioret.evaluate import metrics as M
    from audioret.evaluate.ensemble import mean_block_fn, normalized_weights

    g = torch.Generator().manual_seed(0)
    embs = [(torch.nn.functional.normalize(torch.randn(size, dim, generator=g), dim=1),
             torch.nn.functional.normalize(torch.randn(size, dim, generator=g), dim=1)) for _ in range(members)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    block = mean_block_fn([M.embedding_blocks(t, a, None)[0] for t, a in embs], normalized_weights(None, members))
    t0 = time.perf_counter()
    M.ranks_from_blocks(block, size, size, torch.arange(size), check_finite=False)
    M.top_k_from_blocks(block, size, size, 16)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"members": members, "seconds": seconds, "scoring_mb": peak - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10000, help="captions = audios")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_child(a.child, a.size, a.dim)))
        return
    rows = []
    for n in (1, a.members):
        out = subprocess.run([sys.executable, __file__, "--size", str(a.size), "--dim", str(a.dim), "--child", str(n)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    full = a.size * a.size * 4 / 2**20
    for r in rows:
        print(f"members={r['members']}: {r['seconds']:.1f} s, scoring peak +{r['scoring_mb']:.0f} MB "
              f"(the full matrix would be {full:.0f} MB)")
    one, many = rows
    print(f"ratio {a.members} members / 1: time {many['seconds'] / one['seconds']:.2f}x, "
          f"scoring memory {many['scoring_mb'] - one['scoring_mb']:+.0f} MB")


if __name__ == "__main__":
    main()
