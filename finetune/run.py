"""``run(config)``: corpora -> data module -> Lightning Trainer (DDP-ready) -> fit -> test best and last.

Outputs in the run folder (``--out``, default ``<checkpoints_path>/finetune-<time>``)::

    config.json                 the resolved FinetuneConfig
    checkpoints/epoch=N.ckpt    best by val/mAP@10
    checkpoints/last.ckpt       the state after the latest epoch (and, with --checkpoint_every_n_steps,
                                after the latest n-th step): resume with --resume_ckpt_path .../last.ckpt
    metrics.json                {"test_last": {...}, "test_best": {...}, "val_best": ..., "best_checkpoint": ...}
    logs/metrics.csv            Lightning CSV log (--logger csv): train/loss, train/lr, train/tau per step,
                                val/* per epoch, test/*; a resume appends

Everything that can fail on a user's input (flags, corpora, checkpoints, store) is checked and loaded
before the run folder is created; a start that still fails before training removes the folder it made.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from audioret.audio import RESAMPLER
from audioret.config import atomic_write_text, save_json, to_dict
from audioret.errors import InputError, output_faults
from audioret.logs import tame_lightning
from audioret.models.precision import choose_precision
from audioret.models.loggers import check_logger
from audioret.models.progress import progress_callbacks
from audioret.models.trainer_checkpoints import AtomicCheckpointIO, LastCheckpoint

from .config import FinetuneConfig
from .data import (EvalClips, LiveAudio, ResumableBatchSampler, ResumableLoader, StoreAudio, TrainPairs,
                   collate_eval, collate_train, shard_indices)
from .module import FinetuneModule

log = logging.getLogger(__name__)

STORE_IDENTITY_KEYS = ("name", "architecture", "config", "checkpoint_sha256", "sample_rate", "window_samples")


# --------------------------------------------------------------------------- checks and small policies

def validate(cfg: FinetuneConfig) -> None:
    if cfg.audio_store is not None and cfg.audio_trainable:
        raise ValueError("--audio-store holds features of a frozen encoder; it cannot be combined with "
                         "--audio-trainable (drop one of them)")
    if cfg.audio_encoder == "beats" and cfg.beats_ckpt_path is None:
        raise ValueError("--audio-encoder beats needs --beats_ckpt_path PATH (the official BEATs file, "
                         "e.g. BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt); tiny-beats needs none")
    if cfg.audio_encoder == "passt" and cfg.passt_ckpt_path is None and cfg.load_ckpt_path is None:
        raise ValueError("--audio-encoder passt needs --passt_ckpt_path PATH (the PaSST release file "
                         "passt-s-f128-p16-s16-ap.468.pt, or a baseline .ckpt) or --load_ckpt_path of a PaSST "
                         "checkpoint; tiny-passt needs none")
    if cfg.wavcaps and not cfg.ablate_clean_setup:
        raise ValueError("--no-ablate_clean_setup (WavCaps 'audioset_no_audiocaps') is not supported by "
                         "audioret.corpora yet; use the default WavCaps 'audioset' subset")
    if cfg.batch_size < 2:
        raise ValueError(f"--batch_size {cfg.batch_size}: a contrastive batch needs at least 2 items")
    for flag, path in (("--resume_ckpt_path", cfg.resume_ckpt_path), ("--load_ckpt_path", cfg.load_ckpt_path),
                       ("--init-heads", cfg.init_heads), ("--distill-from", cfg.distill_from)):
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"{flag} {path}: no such file; check the path")
    if cfg.resume_ckpt_path is not None:
        check_resumable(Path(cfg.resume_ckpt_path))
    if cfg.logging:
        check_logger(cfg.logger)


RESUMABLE_KEYS = ("state_dict", "hyper_parameters", "loops", "optimizer_states")


def check_resumable(path: Path) -> None:
    """Fail in seconds, with one line, on a file Lightning could not resume from (truncated, random
    bytes, pickled code, a train-heads checkpoint): Lightning reads it only inside fit, after the run
    folder exists, and answers with a traceback. The read is memory-mapped, so cheap."""
    from audioret.models.checkpoint import LIGHTNING_KEY, load_checked

    what = "a finetune Lightning checkpoint, e.g. <run>/checkpoints/last.ckpt"
    if not zipfile.is_zipfile(path):
        raise ValueError(f"--resume_ckpt_path {path}: not a checkpoint written by torch.save "
                         "(truncated or another format); resume from the run's checkpoints/last.ckpt")
    ckpt = load_checked(path, what)
    if isinstance(ckpt, dict) and (LIGHTNING_KEY in ckpt or "format" in ckpt):
        raise ValueError(f"--resume_ckpt_path {path}: a train-heads checkpoint, not a fine-tune run; to start "
                         "a fine-tune from these heads pass --init-heads PATH")
    missing = [k for k in RESUMABLE_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ValueError(f"--resume_ckpt_path {path}: not a resumable fine-tune checkpoint (no {', '.join(missing)}); "
                         "resume from the run's checkpoints/last.ckpt, or pass --load_ckpt_path to start "
                         "a new run from its weights")


def parse_devices(devices: str) -> Any:
    """'auto' | '4' | '0,1' -> what Lightning's Trainer takes."""
    text = str(devices).strip()
    if text == "auto":
        return "auto"
    if "," in text or text.startswith("["):
        return [int(x) for x in text.strip("[]").split(",") if x.strip()]
    return int(text)


def run_folder(cfg: FinetuneConfig) -> Path:
    if cfg.out is not None:
        return Path(cfg.out)
    if cfg.resume_ckpt_path is not None:
        return Path(cfg.resume_ckpt_path).resolve().parent.parent
    return Path(cfg.checkpoints_path) / time.strftime("finetune-%Y%m%d-%H%M%S")


def multi_match_file(cfg: FinetuneConfig) -> Path:
    """--multi-match, else the corpus's own annotations (synthetic corpora), else the shipped file."""
    from audioret.corpora import multi_match_annotations_path
    from audioret.resources import CLOTHO_EVAL_MULTI_MATCH, resource_path

    if cfg.multi_match is not None:
        return Path(cfg.multi_match)
    own = multi_match_annotations_path(cfg.data_path)
    return own if own.is_file() else resource_path(CLOTHO_EVAL_MULTI_MATCH)


# --------------------------------------------------------------------------- corpora and audio sources

def training_clips(cfg: FinetuneConfig) -> list:
    """Clotho dev (+ AudioCaps train, + WavCaps with the DCASE exclusions), concatenated."""
    from audioret.corpora import load_corpus

    parts = [load_corpus("clotho", cfg.data_path, "dev", download=cfg.download)]
    if cfg.audiocaps:
        parts.append(load_corpus("audiocaps", cfg.data_path, "train", download=cfg.download))
    if cfg.wavcaps:
        for sub in ("freesound", "bbc", "soundbible", "audioset"):
            parts.append(load_corpus(f"wavcaps-{sub}", cfg.data_path, "train", download=cfg.download))
    for p in parts:
        log.info("training corpus %s/%s: %d clips, %d captions", p.name, p.split, len(p), p.num_captions)
    return [c for p in parts for c in p.clips]


def store_expectation(identity: dict[str, Any]) -> dict[str, Any]:
    """What a store must have been made with: this audio encoder (not its file path)."""
    return {"audio_encoder": {k: identity[k] for k in STORE_IDENTITY_KEYS if k in identity}}


def open_audio_store(cfg: FinetuneConfig, identity: dict[str, Any]) -> Any:
    """Open ``--audio-store`` checking it was made by the same audio encoder (StoreMismatchError else)."""
    from audioret.encoders.registry import audio_encoder_change
    from audioret.store import open_store

    expect = store_expectation(identity)
    change = audio_encoder_change(open_store(cfg.audio_store).metadata.get("audio_encoder"), identity)
    if change is not None:
        raise ValueError(f"--audio-store {cfg.audio_store} holds {change} (--audio-encoder {cfg.audio_encoder}); "
                         "extract a store with this --audio-encoder, or leave --audio-store out to read the audio")
    pre = open_store(cfg.audio_store).metadata.get("preprocessing")
    if isinstance(pre, dict) and "max_seconds" in pre:  # written by audioret extract
        # live audio is resampled with RESAMPLER: features of another resampler are not mixed in
        expect["preprocessing"] = {"max_seconds": cfg.max_seconds, "resampler": RESAMPLER}
    return open_store(cfg.audio_store, expect=expect)


@dataclass
class Sources:
    train: Any
    val: Any
    test: Any
    notes: dict[str, str] = field(default_factory=dict)


def audio_sources(cfg: FinetuneConfig, model: Any) -> Sources:
    enc = model.audio_encoder
    live = dict(sample_rate=enc.sample_rate, window_samples=enc.window_samples, max_seconds=cfg.max_seconds)
    if cfg.audio_store is None:
        return Sources(LiveAudio(**live, crop_mode=cfg.train_crop), LiveAudio(**live), LiveAudio(**live))
    st = open_audio_store(cfg, enc.identity)
    where = str(cfg.audio_store)

    def table(split: str) -> Any:
        if split not in st.splits():
            return None
        t = st.audio(split)
        t.require_complete()
        return StoreAudio(t, where=where)

    train = table("dev")
    if train is None:
        raise ValueError(f"{where}: the store has no 'dev' audio (splits: {st.splits()}); extract Clotho dev")
    val, test = table("val"), table("eval")
    notes = {"audio": f"window means from {where}; val/test from the store where present"}
    if cfg.audiocaps or cfg.wavcaps:
        log.warning("--audio-store: AudioCaps/WavCaps clips must be in the store's 'dev' split too, "
                    "else they are skipped as unavailable")
    return Sources(train, val or LiveAudio(**live), test or LiveAudio(**live), notes)


# --------------------------------------------------------------------------- data module

class FinetuneData(L.LightningDataModule):
    """Loaders built when Lightning knows the ranks (rank-sharded training batches and evaluation)."""

    def __init__(self, cfg: FinetuneConfig, train_clips: list, val_clips: list, test_clips: list,
                 sources: Sources) -> None:
        super().__init__()
        self.cfg, self.sources = cfg, sources
        self.train_set = TrainPairs(train_clips, sources.train, seed=max(cfg.seed, 0),
                                    retries=cfg.decode_retries)
        self.val_set = EvalClips(val_clips, sources.val)
        self.test_set = EvalClips(test_clips, sources.test)
        self.sampler: ResumableBatchSampler | None = None

    def _workers(self) -> dict[str, Any]:
        n = self.cfg.n_workers
        return {"num_workers": n, "persistent_workers": n > 0, "pin_memory": torch.cuda.is_available()}

    def train_dataloader(self) -> ResumableLoader:
        t = self.trainer
        world, rank = (t.world_size, t.global_rank) if t is not None else (1, 0)
        self.sampler = ResumableBatchSampler(len(self.train_set), self.cfg.batch_size, seed=max(self.cfg.seed, 0),
                                             world=world, rank=rank)
        if t is not None and t.lightning_module is not None:
            t.lightning_module.train_sampler = self.sampler
        return ResumableLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate_train,
                               **self._workers())

    def _eval_loader(self, dataset: EvalClips) -> torch.utils.data.DataLoader:
        t = self.trainer
        world, rank = (t.world_size, t.global_rank) if t is not None else (1, 0)
        subset = torch.utils.data.Subset(dataset, shard_indices(len(dataset), world, rank))
        return torch.utils.data.DataLoader(subset, batch_size=self.cfg.batch_size_eval, shuffle=False,
                                           collate_fn=collate_eval, **self._workers())

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._eval_loader(self.test_set)


# --------------------------------------------------------------------------- model

def build_module(cfg: FinetuneConfig) -> FinetuneModule:
    """The module from the config; --load_ckpt_path weights (not its hparams) and --init-heads."""
    from audioret.models.dual_encoder import adapt_state_dict, read_finetune_checkpoint, strip_lightning_prefix

    from .warm_start import warm_start_projections

    module = FinetuneModule(**to_dict(cfg))
    if cfg.init_heads is not None:
        warm_start_projections(module.model, cfg.init_heads)
        log.info("projections warm-started from %s", cfg.init_heads)
    if cfg.load_ckpt_path is not None:
        ckpt = read_finetune_checkpoint(cfg.load_ckpt_path)
        state = adapt_state_dict(strip_lightning_prefix(ckpt["state_dict"]), module.model.state_dict(),
                                 source=str(cfg.load_ckpt_path))
        module.model.load_state_dict(state)
        log.info("weights loaded from %s (this run's config is used, not the checkpoint's)", cfg.load_ckpt_path)
    if cfg.compile:
        ok = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 7
        if ok:
            module.model.compile_encoders()
        else:
            log.warning("--compile ignored: needs a CUDA device of capability >= 7 (as the baseline)")
    return module


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing metrics.csv is continued (Lightning deletes it)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class AppendingCSVLogger(CSVLogger):
    """``<out>/logs/metrics.csv`` that a resumed run appends to, so the epochs before it stay."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def csv_logger(out: Path, *, append: bool) -> CSVLogger:
    """Lightning's CSV logger in ``<out>/logs`` (appending on a resume)."""
    cls = AppendingCSVLogger if append else CSVLogger
    return cls(out, name="logs", version="")


# --logger kind -> (packages of which one must be importable, the extra that installs it)
def make_logger(cfg: FinetuneConfig, out: Path) -> Any:
    """The training log in ``<out>/logs``: per-step train/loss, train/lr, train/tau and per-epoch val/*
    (CSV: ``logs/metrics.csv``, appended on a resume; what ``audioret report`` reads)."""
    if not cfg.logging or cfg.logger == "none":
        return False
    if cfg.logger == "csv":
        return csv_logger(out, append=cfg.resume_ckpt_path is not None)
    from lightning.pytorch import loggers

    check_logger(cfg.logger)
    if cfg.logger == "tensorboard":
        return loggers.TensorBoardLogger(out, name="logs", version="")
    return loggers.WandbLogger(project="audioret-finetune", name=out.name, save_dir=str(out))


def log_every(num_batches: int | None, most: int = 10) -> int:
    """Steps between log rows: every step when an epoch is short (``--limit_train_batches`` under
    10 x ``most``: curves of tiny runs get their points), else every ``most``."""
    return 1 if num_batches is not None and num_batches < 10 * most else most


def make_trainer(cfg: FinetuneConfig, out: Path) -> tuple[L.Trainer, Any, LastCheckpoint]:
    """The Trainer with its checkpoint callbacks: the best epoch by val/mAP@10 (``epoch=N.ckpt``) and
    ``last.ckpt`` (latest epoch, and every --checkpoint_every_n_steps steps), both written atomically."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.strategies import DDPStrategy

    tame_lightning()
    devices = parse_devices(cfg.devices)
    cuda = torch.cuda.is_available()
    many = cfg.num_nodes > 1 or (cuda and (devices == "auto" and torch.cuda.device_count() > 1
                                           or isinstance(devices, list) and len(devices) > 1
                                           or isinstance(devices, int) and devices > 1))
    validates = cfg.limit_val_batches != 0
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="{epoch}",
                           monitor="val/mAP@10" if validates else None, mode="max", save_top_k=1,
                           save_last=False)
    last = LastCheckpoint(out / "checkpoints", every_n_steps=cfg.checkpoint_every_n_steps)
    show, bars = progress_callbacks(cfg.progress)
    trainer = L.Trainer(
        accelerator="auto", devices=devices, num_nodes=cfg.num_nodes,
        strategy=DDPStrategy(find_unused_parameters=False) if many else "auto",
        precision=choose_precision(cfg.precision, cuda=cuda, bf16_supported=cuda and torch.cuda.is_bf16_supported()),
        max_epochs=cfg.max_epochs, max_steps=cfg.max_steps,
        limit_train_batches=cfg.limit_train_batches, limit_val_batches=cfg.limit_val_batches,
        check_val_every_n_epoch=cfg.val_every_n_epochs, num_sanity_val_steps=0,
        use_distributed_sampler=False, callbacks=[*bars, best, last], plugins=[AtomicCheckpointIO()],
        logger=make_logger(cfg, out), log_every_n_steps=log_every(cfg.limit_train_batches),
        enable_progress_bar=show, enable_model_summary=False, default_root_dir=out)
    return trainer, best, last


# --------------------------------------------------------------------------- run

def _test(trainer: L.Trainer, module: FinetuneModule, data: FinetuneData, ckpt: str | None) -> dict[str, float]:
    trainer.test(module, datamodule=data, ckpt_path=ckpt, verbose=False, weights_only=True)
    return dict(module.eval_results.get("test", {}))


@contextmanager
def created_run_folder(out: Path, started: Callable[[], bool] = lambda: False) -> Iterator[Path]:
    """Create ``out``; if what follows raises before training took a step (``started``) and before a
    checkpoint exists in it, remove what this call created (``out`` and any parent it made), so a
    failed start leaves no stray run folder. A folder that existed before, one holding a checkpoint,
    or a run that trained (an out-of-memory error an hour into the first epoch keeps its config and
    logs) is kept."""
    made = None if out.exists() else out
    while made is not None and not made.parent.exists():
        made = made.parent
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except Exception:
        if made is not None and not started() and not any((out / "checkpoints").glob("*.ckpt")):
            shutil.rmtree(made, ignore_errors=True)
        raise


def run(cfg: FinetuneConfig) -> dict[str, Any]:
    """Train and/or test; returns (and writes to ``<out>/metrics.json``) the metrics."""
    from audioret.corpora import load_corpus
    from audioret.evaluate.io import read_annotations

    tame_lightning()  # `import lightning` above hung its own handler: each line once
    validate(cfg)
    if cfg.seed > 0:
        L.seed_everything(cfg.seed, workers=True)
    train = training_clips(cfg)  # corpora and annotations first: a wrong --data_path fails in seconds
    val = load_corpus("clotho", cfg.data_path, "val", download=cfg.download).clips
    test = load_corpus("clotho", cfg.data_path, "eval", download=cfg.download).clips
    annotations = read_annotations(multi_match_file(cfg)) if cfg.test else None
    module = build_module(cfg)
    sources = audio_sources(cfg, module.model)
    data = FinetuneData(cfg, train, val, test, sources)
    folder = run_folder(cfg)
    with output_faults(folder, "--out", reads_inside=True):  # a full disk / read-only --out: one line
        return _train_and_test(cfg, module, data, annotations, folder, sources.notes)


def _train_and_test(cfg: FinetuneConfig, module: Any, data: Any, annotations: Any, folder: Path,
                    notes: Any) -> dict[str, Any]:
    with created_run_folder(folder, started=lambda: module.global_step > 0) as out:
        save_json(cfg, out / "config.json")
        trainer, best, last = make_trainer(cfg, out)
        result: dict[str, Any] = {"out": str(out), "notes": notes}
        if cfg.train:
            trainer.fit(module, datamodule=data,
                        ckpt_path=str(cfg.resume_ckpt_path) if cfg.resume_ckpt_path else None,
                        weights_only=True)  # checked by check_resumable too: never unpickle code
            result["val_last"] = dict(module.eval_results.get("val", {}))
            result["best_checkpoint"] = best.best_model_path or None
            result["last_checkpoint"] = str(last.path) if last.path.is_file() else None
            result["global_step"] = trainer.global_step
    if annotations is not None:
        module.annotations = [(a.query, a.files) for a in annotations]
        result["multi_match_file"] = str(multi_match_file(cfg))
        result["test_last"] = _test(trainer, module, data, None)
        if cfg.train and best.best_model_path:
            result["test_best"] = _test(trainer, module, data, best.best_model_path)
    if trainer.is_global_zero:
        atomic_write_text(out / "metrics.json", json.dumps(result, indent=2, default=str) + "\n")
    return result


__all__ = ["run", "validate", "choose_precision", "parse_devices", "FinetuneData", "build_module",
           "make_trainer", "store_expectation", "open_audio_store", "multi_match_file", "created_run_folder",
           "csv_logger", "make_logger", "check_logger"]
