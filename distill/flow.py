"""``audioret distill run``: the whole recipe on a feature store in one command, sweep-friendly.

1. stage 1: ``--teachers`` N head models, seeds ``seed .. seed+N-1`` (train-heads flags apply);
2. teachers: the N stage-1 models embed the training split once -> ``<out>/teachers`` (the ensemble);
3. stage 2: each stage-1 model is initialised from and distilled with the ensemble (paper weights 0/1);
4. control: each stage-1 model trained on with the contrastive loss only, for the same epochs as stage 2
   (so "stage 2 beats stage 1" is not just "more epochs beat fewer");
5. every checkpoint is scored on ``--test`` by ``audioret.evaluate`` (multi-match with ``--multi-match``),
   one table: per seed and mean +- std per stage -> ``<out>/compare.csv`` / ``compare.json`` + rich table.

A finished run (``heads.pt`` present) is reused when the command is repeated, so an interrupted sweep
resumes where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audioret.evaluate.model import evaluate_source, load_store_source
from audioret.models.checkpoint import read_checkpoint
from audioret.train_heads.run import train_one
from audioret.train_heads.store_reader import load_splits

from . import teachers as teachers_mod
from .config import DistillRunConfig, TeachersConfig

log = logging.getLogger(__name__)

METRICS = ("mAP@16_multi", "mAP@10_multi", "mAP@10", "R@1", "R@5", "R@10")
SWEEP_LISTS = ("seeds", "lrs", "taus", "audio_poolings", "text_poolings", "projections")


@dataclass
class StageRun:
    stage: str  # "stage1" | "stage2" | "control"
    seed: int
    checkpoint: Path
    metrics: dict[str, float]  # test metrics (evaluate's keys) + val/mAP@10


def base_heads_config(cfg: DistillRunConfig, heads: Any) -> Any:
    """The train-heads config every run starts from: this command's data/out, no sweep lists, no floor."""
    if cfg.store is None:
        raise ValueError("--store is required (a feature store written by `audioret extract`)")
    if cfg.teachers < 1:
        raise ValueError(f"--teachers {cfg.teachers}: need at least one stage-1 model")
    return dataclasses.replace(heads, store=cfg.store, train=cfg.train, val=cfg.val, test=cfg.test, out=cfg.out,
                               floor="none", distill_from=None, init_from=None, loss_weight=None,
                               distill_weight=None, **{k: [] for k in SWEEP_LISTS})


def stage2_config(base: Any, cfg: DistillRunConfig, seed: int, init: Path, teachers: Path | None) -> Any:
    """Stage 2 (``teachers`` given) or its contrastive-only control (``teachers`` None) for one seed."""
    epochs = cfg.stage2_epochs or base.max_epochs
    changes: dict[str, Any] = dict(seed=seed, init_from=init, max_epochs=epochs, max_lr=cfg.stage2_lr or base.max_lr)
    if cfg.stage2_epochs:  # the cosine ends with the stage
        changes["rampdown_epochs"] = max(1.0, epochs - base.warmup_epochs)
    if teachers is None:
        changes.update(out=cfg.out / "control" / f"seed={seed}", loss_weight=1.0, distill_weight=0.0)
    else:
        changes.update(out=cfg.out / "stage2" / f"seed={seed}", distill_from=teachers,
                       loss_weight=cfg.loss_weight, distill_weight=cfg.distill_weight)
    return dataclasses.replace(base, **changes)


def train_or_reuse(run_cfg: Any, splits: Any, name: str) -> Path:
    """Train one head run, or reuse its finished ``heads.pt`` (interrupted sweeps resume)."""
    done = run_cfg.out / "heads.pt"
    if done.is_file():
        log.info("%s: reusing finished run %s", name, done)
        return done
    result = train_one(run_cfg, splits, name)
    if result.checkpoint is None:
        raise RuntimeError(f"{name}: training wrote no checkpoint under {run_cfg.out}")
    return result.checkpoint


def test_metrics(checkpoint: Path, cfg: DistillRunConfig) -> dict[str, float]:
    """The checkpoint scored on the test split by audioret.evaluate (+ its val/mAP@10 from training)."""
    out: dict[str, float] = {}
    if cfg.test:
        src = load_store_source(checkpoint, cfg.store, cfg.test)
        annotations = [cfg.multi_match] if cfg.multi_match else None
        out.update(evaluate_source(src, annotations, None, show=False, skip_unmatched=True))
    val = read_checkpoint(checkpoint).get("metrics", {}).get("val/mAP@10")
    if val is not None:
        out["val/mAP@10"] = float(val)
    return out


def run(cfg: DistillRunConfig, heads: Any, splits: Any = None) -> list[StageRun]:
    """The recipe of the module docstring; ``heads`` is a ``TrainHeadsConfig`` (architecture, lr, ...)."""
    base = base_heads_config(cfg, heads)
    from audioret.config import save_json

    cfg.out.mkdir(parents=True, exist_ok=True)
    save_json(cfg, cfg.out / "config.json", heads=heads)  # what --config reads: this command with its heads flags
    splits = splits if splits is not None else load_splits(base)
    seeds = [cfg.seed + i for i in range(cfg.teachers)]
    stage1 = {s: train_or_reuse(dataclasses.replace(base, seed=s, out=cfg.out / "stage1" / f"seed={s}"), splits,
                                f"stage1 seed={s}") for s in seeds}
    teachers = teachers_mod.run(TeachersConfig(checkpoints=[stage1[s] for s in seeds], out=cfg.out / "teachers",
                                               split=cfg.train, store=cfg.store, overwrite=True))
    runs: list[tuple[str, int, Path]] = [("stage1", s, stage1[s]) for s in seeds]
    for s in seeds:
        runs.append(("stage2", s, train_or_reuse(stage2_config(base, cfg, s, stage1[s], teachers), splits,
                                                 f"stage2 seed={s}")))
        if cfg.control:
            runs.append(("control", s, train_or_reuse(stage2_config(base, cfg, s, stage1[s], None), splits,
                                                      f"control seed={s}")))
    results = [StageRun(stage, s, ckpt, test_metrics(ckpt, cfg)) for stage, s, ckpt in runs]
    write_comparison(results, cfg.out)
    return results


# --------------------------------------------------------------------------- the table

def summary_rows(results: list[StageRun]) -> list[dict[str, Any]]:
    """Per run rows, then per stage mean and std over seeds (std 0 with one seed)."""
    keys = [m for m in (*METRICS, "val/mAP@10") if any(m in r.metrics for r in results)]
    rows: list[dict[str, Any]] = [{"stage": r.stage, "seed": r.seed, **{k: r.metrics.get(k) for k in keys},
                                   "checkpoint": str(r.checkpoint)} for r in results]
    for stage in dict.fromkeys(r.stage for r in results):
        vals = {k: [r.metrics[k] for r in results if r.stage == stage and k in r.metrics] for k in keys}
        rows.append({"stage": stage, "seed": "mean", **{k: statistics.fmean(v) if v else None for k, v in vals.items()}})
        rows.append({"stage": stage, "seed": "std",
                     **{k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in vals.items()}})
    return rows


def write_comparison(results: list[StageRun], out: Path) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.table import Table

    rows = summary_rows(results)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "compare.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    (out / "compare.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    shown = [c for c in cols if c != "checkpoint"]
    table = Table(title=f"stage 1 vs stage 2 (distilled) vs control (contrastive, same epochs): {out / 'compare.csv'}")
    for c in shown:
        table.add_column(c, justify="left" if c in ("stage", "seed") else "right")
    order = {"stage1": 0, "stage2": 1, "control": 2}
    group = {"mean": 1, "std": 2}
    for r in sorted(rows, key=lambda r: (group.get(str(r["seed"]), 0), r["seed"] if isinstance(r["seed"], int) else 0,
                                         order.get(r["stage"], 3))):
        table.add_row(*[f"{r.get(c):.4f}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in shown])
    Console().print(table)
    return rows


__all__ = ["StageRun", "run", "base_heads_config", "stage2_config", "summary_rows", "write_comparison",
           "test_metrics"]
