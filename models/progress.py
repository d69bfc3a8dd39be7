"""Progress of a Lightning fit that can run for hours (train_heads, finetune, distill's runs).

On a terminal: rich's bar (epoch/step, time left in the epoch, loss, the validation metric), one kept
line per epoch, and the whole run's ETA in the epoch description. Off a terminal (a SLURM log, a pipe,
``> file``): bars would be thousands of carriage-return fragments or nothing at all, so instead ONE log
line per epoch::

    epoch 3/20 (step 360): train loss 2.3141, val mAP@10 12.34%, elapsed 1m 02s, ETA 5m 51s

:func:`progress_callbacks` picks one of the two; ``Trainer(enable_progress_bar=..., callbacks=...)``
takes what it returns.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar, RichProgressBar

from audioret.logs import format_duration

log = logging.getLogger(__name__)

VAL_METRIC = "val/mAP@10"


class RunClock:
    """Elapsed time of this fit and the ETA of the whole run (from this process's steps per second)."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.step0 = 0

    def start(self, trainer: L.Trainer) -> None:
        self.t0, self.step0 = time.monotonic(), trainer.global_step

    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def remaining_steps(self, trainer: L.Trainer) -> float | None:
        """Optimizer steps left: until max_steps or the end of max_epochs, whichever comes first."""
        left: list[float] = []
        if trainer.max_steps is not None and trainer.max_steps > 0:
            left.append(trainer.max_steps - trainer.global_step)
        per_epoch = trainer.num_training_batches  # optimizer steps per epoch (no gradient accumulation)
        if trainer.max_epochs is not None and trainer.max_epochs > 0 and 0 < per_epoch < float("inf"):
            left.append(trainer.max_epochs * per_epoch - trainer.global_step)
        return max(0.0, min(left)) if left else None

    def eta(self, trainer: L.Trainer) -> float | None:
        steps = trainer.global_step - self.step0
        left = self.remaining_steps(trainer)
        if steps <= 0 or left is None:
            return None
        return self.elapsed() / steps * left


def _epochs_label(trainer: L.Trainer, epoch: int) -> str:
    """1-based ``3/20`` (``3`` without an epoch limit)."""
    total = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
    return f"{epoch + 1}/{total}" if total else f"{epoch + 1}"


class EpochLines(ProgressBar):
    """The off-terminal progress: one INFO line per training epoch (rank 0 only), nothing per step."""

    def __init__(self, metric: str = VAL_METRIC) -> None:
        super().__init__()
        self.metric = metric
        self.clock = RunClock()
        self._enabled = True
        self._loss_sum: torch.Tensor | None = None
        self._batches = 0
        self._validated = False

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.start(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loss_sum, self._batches, self._validated = None, 0, False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):  # summed on the device: no sync per step
            value = loss.detach().float()
            self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
            self._batches += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._validated = True

    def epoch_line(self, trainer: L.Trainer) -> str:
        parts = [f"epoch {_epochs_label(trainer, trainer.current_epoch)} (step {trainer.global_step})"]
        if self._loss_sum is not None and self._batches:
            parts.append(f"train loss {float(self._loss_sum) / self._batches:.4f}")
        value = trainer.callback_metrics.get(self.metric)
        if self._validated and value is not None:
            parts.append(f"{self.metric.replace('/', ' ')} {100 * float(value):.2f}%")
        parts.append(f"elapsed {format_duration(self.clock.elapsed())}")
        eta = self.clock.eta(trainer)
        parts.append(f"ETA {format_duration(eta)}" if eta is not None else "ETA ?")
        return parts[0] + ": " + ", ".join(parts[1:])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            log.info(self.epoch_line(trainer))


class RichBar(RichProgressBar):
    """Lightning's rich bar on stderr, each epoch's line kept, 1-based epochs and the run's ETA."""

    def __init__(self) -> None:
        super().__init__(leave=True, console_kwargs={"stderr": True})
        self.clock = RunClock()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.start(trainer)
        super().on_train_start(trainer, pl_module)

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {_epochs_label(self.trainer, current_epoch)}"
        eta = self.clock.eta(self.trainer)
        return text + (f" (run ETA {format_duration(eta)})" if eta is not None else "")

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)  # the logger's version number says nothing here
        for key, value in items.items():  # retrieval metrics in %, as every other audioret output
            if key.startswith(("val/", "test/")) and isinstance(value, (int, float)):
                items[key] = f"{100 * value:.2f}%"
        return items


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_callbacks(enabled: bool, *, terminal: bool | None = None,
                       metric: str = VAL_METRIC) -> tuple[bool, list[Callback]]:
    """``(enable_progress_bar, callbacks)`` for a Trainer: the rich bar on a terminal (stderr), one
    line per epoch otherwise; nothing when ``enabled`` is False (``--no-progress``)."""
    if not enabled:
        return False, []
    if is_terminal() if terminal is None else terminal:
        return True, [RichBar()]
    return True, [EpochLines(metric)]


__all__ = ["progress_callbacks", "EpochLines", "RichBar", "RunClock", "is_terminal", "VAL_METRIC"]
