"""``run(config)``: one training run, or a sweep of runs back to back with one results table.

A run: seed -> heads -> Lightning fit -> test with the best checkpoint -> ``<out>/heads.pt`` (plain
head checkpoint of the best epoch, see audioret.models.checkpoint) and ``<out>/metrics.json``.
``<out>/checkpoints/`` holds ``epoch=N.ckpt`` (best by val/mAP@10) and ``last.ckpt`` (the latest epoch);
a rerun into the same ``--out`` replaces them. A sweep (any of --seeds/--lrs/--taus/--audio-poolings/
--text-poolings/--projections) runs every combination into ``<out>/<run name>/`` and writes
``<out>/sweep.csv`` and ``<out>/sweep.json``; the closed-form floor is a row of the same table.
The terminal table shows metrics in % (2 decimals) and wall time as ``1m 42s``; the files keep raw
values: metrics as fractions in [0, 1] and ``wall_s`` in seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audioret.config import atomic_write_text, save_json, to_dict
from audioret.errors import InputError, output_faults
from audioret.logs import format_duration, tame_lightning
from audioret.models import HeadConfig, RetrievalHeads, load_heads, save_heads
from audioret.models.checkpoint import safe_torch_load
from audioret.models.distill_loss import resolve_weights
from audioret.models.loggers import check_logger
from audioret.models.precision import choose_precision
from audioret.models.teachers import teacher_for_reader

from .config import TrainHeadsConfig
from .data import EvalChunks, SplitReader, identity_collate
from .data import train_loader as data_loader

log = logging.getLogger(__name__)

SWEEP_FIELDS = {"seeds": "seed", "lrs": "max_lr", "taus": "initial_tau", "audio_poolings": "audio_pooling",
                "text_poolings": "text_pooling", "projections": "projection"}


@dataclass
class Splits:
    """The data of a run: a training reader, evaluation readers by prefix, the store's identity."""

    train: SplitReader
    evals: dict[str, SplitReader] = field(default_factory=dict)  # "val" / "test" -> reader
    store: dict[str, Any] = field(default_factory=dict)  # {"path": ..., "metadata": {...}}
    shard_block: int = 0  # > 0: streaming reader, shuffle by blocks of this many captions


@dataclass
class RunResult:
    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    checkpoint: Path | None
    wall_s: float


# ---------------------------------------------------------------- small pure helpers

def head_config(cfg: TrainHeadsConfig, audio_dim: int, text_dim: int) -> HeadConfig:
    return HeadConfig(audio_dim=audio_dim, text_dim=text_dim, embed_dim=cfg.embed_dim,
                      audio_pooling=cfg.audio_pooling, text_pooling=cfg.text_pooling,
                      projection=cfg.projection, hidden_dim=cfg.hidden_dim, dropout=cfg.dropout,
                      seq_layers=cfg.seq_layers, seq_dim=cfg.seq_dim, seq_heads=cfg.seq_heads,
                      initial_tau=cfg.initial_tau, tau_trainable=cfg.tau_trainable).validate()


def single_run_name(cfg: TrainHeadsConfig) -> str:
    """The table's name of a run without a sweep: its output folder's name (``runs/heads`` -> heads)."""
    return cfg.out.name or "heads"


def expand_sweep(cfg: TrainHeadsConfig) -> list[tuple[str, TrainHeadsConfig]]:
    """Every combination of the sweep lists -> (run name, config). No lists: the config itself."""
    axes = [(name, SWEEP_FIELDS[name], getattr(cfg, name)) for name in SWEEP_FIELDS if getattr(cfg, name)]
    if not axes:
        return [(single_run_name(cfg), cfg)]
    runs = []
    for values in itertools.product(*[a[2] for a in axes]):
        changes = {target: v for (_, target, _), v in zip(axes, values)}
        name = "_".join(f"{target}={v}" for target, v in changes.items())
        # each run's own config (saved with it: --config reruns that run alone, not the sweep again below it)
        runs.append((name, dataclasses.replace(cfg, **changes, **{a[0]: [] for a in axes}, out=cfg.out / name)))
    return runs


def _dims(reader: SplitReader) -> tuple[int, int]:
    a = reader.audio(torch.tensor([0]))
    t = reader.text(torch.tensor([0]))
    return int(a.frames.shape[-1]), int(t.tokens.shape[-1])


def initial_heads(cfg: TrainHeadsConfig, splits: Splits) -> RetrievalHeads:
    """New heads from the flags, or (--init-from) a checkpoint's architecture and weights."""
    if cfg.init_from is None:
        return RetrievalHeads(head_config(cfg, *_dims(splits.train)))
    heads = load_heads(cfg.init_from).train()
    dims = _dims(splits.train)
    if (heads.config.audio_dim, heads.config.text_dim) != dims:
        raise ValueError(f"{cfg.init_from}: heads for features of widths (audio {heads.config.audio_dim}, text "
                         f"{heads.config.text_dim}), but the training split has {dims}: initialise from heads "
                         "trained on the same store")
    log.info("heads initialised from %s (its architecture; the architecture flags are ignored)", cfg.init_from)
    return heads


# --logger kind -> (packages of which one must be importable, the extra that installs it)
def _logger(cfg: TrainHeadsConfig) -> Any:
    """Per-step train/loss, train/lr, train/tau and per-epoch val/* in ``<out>/logs/version_N/``
    (CSV: metrics.csv, what ``audioret report`` reads)."""
    from lightning.pytorch import loggers

    if cfg.logger == "none":
        return False
    if cfg.logger == "csv":
        return loggers.CSVLogger(cfg.out, name="logs")
    check_logger(cfg.logger)
    if cfg.logger == "tensorboard":
        return loggers.TensorBoardLogger(cfg.out, name="logs")
    return loggers.WandbLogger(project="audioret-heads", name=cfg.out.name, save_dir=str(cfg.out))


def log_every(num_batches: int, most: int = 10) -> int:
    """Steps between log rows: every step when an epoch is short (under 10 x ``most`` steps: curves of
    tiny runs get their points), else every ``most`` (a GPU sync per logged step costs on fast heads)."""
    return 1 if num_batches < 10 * most else most


# ---------------------------------------------------------------- one run

def train_one(cfg: TrainHeadsConfig, splits: Splits, name: str = "heads") -> RunResult:
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from audioret.models.progress import progress_callbacks
    from audioret.models.trainer_checkpoints import AtomicCheckpointIO, LastCheckpoint, clear_run_checkpoints

    from .module import HeadsModule, Schedule

    tame_lightning()  # Lightning's own handler would print each of its lines twice
    log.info("run %s: %d epochs -> %s", name, cfg.max_epochs, cfg.out)  # which run the epoch lines belong to
    t0 = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    heads = initial_heads(cfg, splits)
    info = {"store": splits.store, "train_config": to_dict(cfg)}
    teacher = None
    if cfg.distill_from is not None:  # stage 2: teacher targets aligned to this split's rows
        teacher = teacher_for_reader(cfg.distill_from, splits.train, splits.store)
    weights = resolve_weights(cfg.loss_weight, cfg.distill_weight, distilling=teacher is not None)
    module = HeadsModule(heads, Schedule(cfg.max_lr, cfg.min_lr, cfg.warmup_epochs, cfg.rampdown_epochs,
                                         cfg.weight_decay),
                         eval_splits={p: (r.caption_clip.cpu(), r.num_clips) for p, r in splits.evals.items()},
                         info=info, teacher=teacher, loss_weights=weights)
    loader = lambda ds: torch.utils.data.DataLoader(  # noqa: E731  (evaluation splits are in memory)
        ds, batch_size=None, shuffle=False, collate_fn=identity_collate, num_workers=0)
    train_loader = data_loader(splits.train, cfg.batch_size, seed=cfg.seed, shard_block=splits.shard_block,
                               shuffle_window=cfg.shuffle_window, threads=cfg.num_workers,
                               memory_bytes=cfg.memory_limit_gb * 1e9,
                               pin_memory=torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda"))
    val = splits.evals.get("val")
    monitor = "val/mAP@10" if val is not None else None
    # A rerun into the same --out overwrites epoch=N.ckpt/last.ckpt in place (no -v1 names) and removes
    # the earlier run's other checkpoints only once it has succeeded (below).
    ckpt = ModelCheckpoint(dirpath=cfg.out / "checkpoints", filename="{epoch}", monitor=monitor, mode="max",
                           save_top_k=1, save_last=False, enable_version_counter=False)
    last = LastCheckpoint(cfg.out / "checkpoints")
    show, bars = progress_callbacks(cfg.progress)
    cuda = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    # Native bf16 only (Ampere+): with emulation allowed torch reports bf16 on Turing too, where it is slow.
    bf16 = cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    precision = choose_precision(cfg.precision, cuda=cuda, bf16_supported=bf16)
    devices: Any = cfg.devices if cfg.devices == "auto" or "," in cfg.devices else int(cfg.devices)
    trainer = L.Trainer(accelerator=cfg.accelerator, devices=devices, strategy=cfg.strategy, precision=precision,
                        max_epochs=cfg.max_epochs, logger=_logger(cfg), callbacks=[*bars, ckpt, last],
                        plugins=[AtomicCheckpointIO()],
                        num_sanity_val_steps=0, enable_progress_bar=show, enable_model_summary=False,
                        log_every_n_steps=log_every(len(train_loader.dataset)), default_root_dir=cfg.out)
    trainer.fit(module, train_dataloaders=train_loader,
                val_dataloaders=loader(EvalChunks(val, cfg.eval_batch_size)) if val is not None else None)
    best = ckpt.best_model_path or (str(last.path) if last.path.is_file() else "")
    if trainer.is_global_zero:
        clear_run_checkpoints(cfg.out / "checkpoints", keep=(ckpt.best_model_path, last.path))
    metrics = dict(module.latest_metrics)
    if ckpt.best_model_score is not None:
        metrics["val/mAP@10"] = float(ckpt.best_model_score)  # the selected epoch's score
    if best:
        module.load_state_dict(safe_torch_load(best)["state_dict"])
    test = splits.evals.get("test")
    if test is not None:
        trainer.test(module, dataloaders=loader(EvalChunks(test, cfg.eval_batch_size)), verbose=False)
        metrics.update({k: v for k, v in module.latest_metrics.items() if k.startswith("test/")})
    path = None
    if trainer.is_global_zero:
        path = save_heads(cfg.out / "heads.pt", module.heads.cpu(), store=splits.store, metrics=metrics,
                          train_config=to_dict(cfg))
        atomic_write_text(cfg.out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        save_json(cfg, cfg.out / "config.json")  # this run's config (a sweep's run too): --config RUN_DIR reruns it
    params = {k: getattr(cfg, k) for k in SWEEP_FIELDS.values()}
    return RunResult(name, params, metrics, path, time.perf_counter() - t0)


# ---------------------------------------------------------------- sweeps and the table

def floor_result(cfg: TrainHeadsConfig, splits: Splits) -> RunResult | None:
    if cfg.floor == "none":
        return None
    from .floor import floor_metrics

    t0 = time.perf_counter()
    metrics = floor_metrics(cfg.floor, splits.train, splits.evals)
    return RunResult(f"floor ({cfg.floor}, sklearn)", {}, metrics, None, time.perf_counter() - t0)


TABLE_METRICS = ("val/mAP@10", "test/mAP@10", "test/R@1", "test/R@10", "test/mAP@16_multi")


def results_table(results: list[RunResult], *, compact: bool = False) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows): run name, swept params, metrics, wall time. ``compact`` keeps only the params
    that differ between runs and the headline metrics (for the terminal); the files get everything."""
    params = sorted({k for r in results for k in r.params})
    metrics = sorted({k for r in results for k in r.metrics}, key=lambda k: (not k.startswith("val"), k))
    if compact:
        params = [p for p in params if len({str(r.params.get(p)) for r in results if r.params}) > 1]
        metrics = [m for m in TABLE_METRICS if m in metrics]
    cols = ["run", *params, *metrics, "wall_s"]
    rows = [[r.name, *[r.params.get(p, "") for p in params], *[r.metrics.get(m) for m in metrics],
             round(r.wall_s, 2)] for r in results]
    return cols, rows


def write_table(results: list[RunResult], out: Path) -> None:
    import csv

    from rich.console import Console
    from rich.table import Table

    cols, rows = results_table(results)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)
    (out / "sweep.json").write_text(json.dumps([dict(zip(cols, r)) for r in rows], indent=2, default=str) + "\n")
    cols, rows = results_table(results, compact=True)
    metrics = {m for r in results for m in r.metrics}
    table = Table(title="train-heads results (metrics in %)",
                  caption=f"all columns: {out / 'sweep.csv'} (metrics as fractions, wall_s in seconds)")
    for c in cols:
        table.add_column("wall" if c == "wall_s" else c, justify="left" if c == "run" else "right")
    for r in rows:
        table.add_row(*[table_cell(c, v, metrics) for c, v in zip(cols, r)])
    Console().print(table)


def table_cell(column: str, value: Any, metrics: set[str]) -> str:
    """A terminal cell: metrics in % with 2 decimals (as demo and evaluate print them), wall time as
    ``1m 42s``, swept parameters as given."""
    if value is None or value == "":
        return "-"
    if column == "wall_s":
        return format_duration(float(value))
    if column in metrics and isinstance(value, (int, float)):
        return f"{100 * value:.2f}"
    return str(value)


def run(cfg: TrainHeadsConfig, splits: Splits | None = None) -> list[RunResult]:
    """Train every run of the (possibly one-point) sweep; print and write the results table."""
    check_logger(cfg.logger)  # a missing optional package: one line before any data loads
    if splits is None:
        from .store_reader import load_splits

        splits = load_splits(cfg)
    runs = expand_sweep(cfg)
    for _, c in runs:  # fail on a bad sweep value before the first run, not after it
        head_config(c, 1, 1)
    with output_faults(cfg.out, "--out", reads_inside=True):  # a full disk / read-only --out: one line
        cfg.out.mkdir(parents=True, exist_ok=True)
        save_json(cfg, cfg.out / "config.json")  # what --config reads (a sweep's: the whole sweep)
        results = [train_one(c, splits, name) for name, c in runs]
        floor = floor_result(cfg, splits)
        if floor is not None:
            results.append(floor)
        write_table(results, cfg.out)
    return results
