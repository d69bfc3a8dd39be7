"""Config of ``audioret report`` (one flag per field; the run folders are positional)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audioret.config import option


@dataclass
class ReportConfig:
    """Pictures of runs: training curves (loss, validation with the best epoch, learning rate,
    temperature), a comparison of the runs (seeds, learning rates, distill stages: mean and spread)
    and, for evaluations, the rank of the first correct clip, R@k / mAP@k over k and the 10 best and
    10 worst queries with their top results. Writes report.html (images inline), report.md, the PNGs
    and report.json (every number shown) into --out."""

    STAGE = "report"  # recorded in saved configs; not a field

    runs: list[Path] = option(positional=True, metavar="RUN_DIR",
                              help="run folders (train-heads, finetune, distill stages, evaluate --out, a sweep "
                                   "or a demo folder: runs below it are found)")
    out: Path = option(Path("report"), "report folder (report.html, report.md, report.json, figures/*.png)")
    predictions: Path | None = option(None, "a score matrix (predict's <name>.csv) for the top results of "
                                            "evaluations that cannot recompute their scores")
    store: Path | None = option(None, "score every run with a heads.pt (train-heads, distill stages) on this "
                                      "feature store's --split for the per-query analysis (runs that have no "
                                      "evaluation folder)")
    split: str = option("eval", "store split scored with --store")
    top: int = option(10, "best and worst queries listed per evaluation", unit="queries")
    results: int = option(5, "top results shown per listed query", unit="clips")
    title: str = option("audioret report", "report title")
