"""Lightning checkpoint files the trainers (train_heads, finetune) share: ``last.ckpt`` that really is the
last state, and atomic writes.

Why not ``ModelCheckpoint(save_last=True)``: in Lightning 2.6 it writes ``last.ckpt`` only when a top-k
file is written, so with ``save_top_k=1`` and a monitored metric ``last.ckpt`` holds the *best* epoch, and
``--resume_ckpt_path last.ckpt`` silently restarts from an earlier epoch. :class:`LastCheckpoint` writes
``last.ckpt`` at the end of every training epoch (after validation and after the best-checkpoint callback
has updated its state) and, with ``every_n_steps``, also in the middle of an epoch, so a long epoch
can be resumed mid-way (the data position travels in the checkpoint, see finetune's ResumableLoader).

:class:`AtomicCheckpointIO` writes every checkpoint file to a temporary name in the same folder and
renames it over the target: a crash or a full disk leaves the old file or the new one, never half a
file (Lightning's own save goes through a temporary file elsewhere and then *moves* it, which is a copy
across file systems).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save to ``.<name>.<pid>.tmp`` beside the target, then ``os.replace`` (same folder: atomic)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


class LastCheckpoint(Checkpoint):
    """``<dirpath>/last.ckpt`` = the state after the latest completed epoch (or, with ``every_n_steps``,
    after the latest n-th optimizer step, whichever came later). A rerun overwrites it in place."""

    def __init__(self, dirpath: str | Path, every_n_steps: int = 0) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.every_n_steps = int(every_n_steps)
        self.path = self.dirpath / LAST
        self._saved_step: int | None = None

    def _skip(self, trainer: L.Trainer) -> bool:
        from lightning.pytorch.trainer.states import TrainerFn

        return bool(trainer.fast_dev_run) or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # collective: every rank calls it, rank 0 writes
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.every_n_steps <= 0 or self._skip(trainer) or trainer.global_step % self.every_n_steps:
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's end follows (after validation): saved there, as a completed epoch
        self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # An epoch cut short by max_steps right after a step save keeps that (mid-epoch) checkpoint:
        # resuming it continues the same epoch at the next batch.
        if self._skip(trainer) or self._saved_step == trainer.global_step:
            return
        self._save(trainer)

    @property
    def state_key(self) -> str:
        return f"LastCheckpoint{{'every_n_steps': {self.every_n_steps}}}"


STALE_PATTERNS = ("epoch=*.ckpt", "step=*.ckpt", LAST, "last-v*.ckpt")


def clear_run_checkpoints(dirpath: str | Path, keep: Iterable[str | Path] = ()) -> list[Path]:
    """Remove the Lightning checkpoints an earlier run wrote into ``dirpath`` (``epoch=N.ckpt``,
    ``step=N.ckpt``, ``last.ckpt``, ``last-vN.ckpt``) except ``keep``, so a rerun into the same folder
    leaves no stale files beside its own. Called after a run succeeded, with its own files in ``keep``:
    a rerun that fails or is killed leaves the earlier run's files alone. Other files are never
    touched. Returns what was removed."""
    folder = Path(dirpath)
    if not folder.is_dir():
        return []
    kept = {Path(k).resolve() for k in keep if k}
    gone = [p for pattern in STALE_PATTERNS for p in folder.glob(pattern) if p.resolve() not in kept]
    for p in gone:
        p.unlink(missing_ok=True)
    if gone:
        log.info("removed %d checkpoint(s) of an earlier run in %s", len(gone), folder)
    return gone


__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "clear_run_checkpoints", "LAST"]
