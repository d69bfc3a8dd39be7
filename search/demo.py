"""The demo's last step: index its eval split and show one search (lines for the demo to print)."""

from __future__ import annotations

import shutil
from pathlib import Path


def demo_index(checkpoint: str | Path, store: str | Path, split: str, out: str | Path) -> str:
    """Build (or reuse) an index of ``store``/``split`` with a heads checkpoint and search the split's
    first caption; the lines say where the clip that caption describes ranks (not chosen to look good)."""
    from audioret.search.config import IndexConfig
    from audioret.search.folder import IndexFolderError, read_manifest
    from audioret.search.index import run as index_run
    from audioret.search.query import Searcher
    from audioret.store import open_store

    cfg = IndexConfig(checkpoint=Path(checkpoint), out=Path(out), store=Path(store), split=split, num_workers=0)
    try:
        m = index_run(cfg)
    except IndexFolderError:  # the demo retrained its heads: its own index of the old ones is stale
        if read_manifest(Path(out)) is None:
            raise
        shutil.rmtree(out)
        m = index_run(cfg)
    text = open_store(store).text(split)
    caption = str(text.ids[0])
    target = open_store(store).audio(split).ids[int(text.column("clip_index")[0])]
    searcher = Searcher(out)
    hits = searcher.search([caption], 5)[0]
    lines = [f"search: {m['count']} clips of {split} in {out} ({m['kind']} index); "
             f"audioret search {out} \"{caption}\" --top-k 5:"]
    for h in hits:
        mark = "  <- the clip this caption describes" if h.id == target else ""
        dur = f"{h.duration:.1f} s" if h.duration is not None else "?"
        lines.append(f"  {h.rank}. {h.score:.3f}  {h.id}  ({dur}){mark}")
    if all(h.id != target for h in hits):
        rank = next(h.rank for h in searcher.search([caption], len(searcher))[0] if h.id == target)
        lines.append(f"  (the clip this caption describes, {target}, ranks {rank} of {len(searcher)})")
    lines.append(f"listen: audioret serve {out}  (then open http://127.0.0.1:8000/)")
    return "\n".join(lines)
