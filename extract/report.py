"""Progress bar, per-stage timing and the final summary of an extraction run."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from audioret.logs import format_duration

log = logging.getLogger(__name__)


@dataclass
class TableStats:
    """What one pass over one split did (one row of the summary)."""

    split: str
    kind: str                     # "audio" | "text"
    items: int = 0                # items in the table
    skipped: int = 0              # already complete before this run (or owned by other shards)
    processed: int = 0            # items this run wrote (failed included)
    failed: int = 0
    audio_seconds: float = 0.0    # audio decoded this run
    wall: float = 0.0             # seconds
    decode: float = 0.0           # worker seconds decoding + resampling (summed over workers)
    wait_data: float = 0.0        # compute thread waiting for decoded batches
    model: float = 0.0            # encoder forward (GPU: measured with CUDA events)
    write: float = 0.0            # writer thread busy
    write_blocked: float = 0.0    # compute thread waiting for a free writer-queue slot
    failures: dict[int, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.processed / self.wall if self.wall > 0 else 0.0

    def bound(self) -> str:
        """The stage that bounds the run, from where the compute thread spent its time."""
        stages = {"decode": self.wait_data, "model": self.model, "write": self.write_blocked}
        return max(stages, key=stages.get) if self.processed else "-"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["failures"] = {str(k): v for k, v in self.failures.items()}
        d["items_per_second"] = self.rate
        d["bound_by"] = self.bound()
        return d


class ModelTimer:
    """Sums model time: wall clock on CPU, CUDA events on GPU (no sync inside the loop)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0
        self._events: list[tuple[Any, Any]] = []
        self._t0 = 0.0
        self._start: Any = None

    def __enter__(self) -> ModelTimer:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *_: Any) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._start, end))
        else:
            self.seconds += time.perf_counter() - self._t0

    def total(self) -> float:
        if self._events:
            torch.cuda.synchronize()
            self.seconds += sum(a.elapsed_time(b) for a, b in self._events) / 1000.0
            self._events.clear()
        return self.seconds


@dataclass
class _PlainTask:
    """One table's state for the off-terminal progress lines."""

    name: str
    total: int
    last_time: float
    last_done: int = 0


class ExtractProgress:
    """Progress of each table: a rich bar (items, items/s, audio hours/s, failures, ETA) when the console
    is a terminal; otherwise (a SLURM log, a pipe) a plain log line every ``every_fraction`` of the table
    or every ``every_seconds``, whichever comes first, and one when the table is done."""

    def __init__(self, enabled: bool, console: Console | None = None, *, every_fraction: float = 0.25,
                 every_seconds: float = 30.0) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.every_fraction, self.every_seconds = every_fraction, every_seconds
        self._progress: Progress | None = None
        self._plain: dict[int, _PlainTask] = {}
        if enabled and self.console.is_terminal:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f} items/s"), TextColumn("{task.fields[hours]:.3f} audio h/s"),
                TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=self.console, transient=False)

    def __enter__(self) -> ExtractProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *_: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def task(self, name: str, total: int) -> int | None:
        if not self.enabled:
            return None
        if self._progress is None:
            key = len(self._plain)
            self._plain[key] = _PlainTask(name, total, time.perf_counter())
            return key
        return self._progress.add_task(name, total=total, rate=0.0, hours=0.0, failed=0)

    def update(self, task: int | None, stats: TableStats, started: float) -> None:
        if not self.enabled or task is None:
            return
        dt = max(time.perf_counter() - started, 1e-9)
        if self._progress is None:
            self._plain_line(self._plain[task], stats, dt)
            return
        self._progress.update(task, completed=stats.processed, rate=stats.processed / dt,
                              hours=stats.audio_seconds / 3600.0 / dt, failed=stats.failed)

    def _plain_line(self, t: _PlainTask, stats: TableStats, dt: float) -> None:
        now, done = time.perf_counter(), stats.processed
        step = max(1, int(t.total * self.every_fraction))
        due = done >= t.total or done - t.last_done >= step or now - t.last_time >= self.every_seconds
        if not due or done == t.last_done:
            return
        t.last_time, t.last_done = now, done
        rate = done / dt
        eta = format_duration((t.total - done) / rate) if rate > 0 else "?"
        share = f" ({100 * done / t.total:.0f}%)" if t.total else ""
        hours = f", {stats.audio_seconds / 3600.0 / dt:.3f} audio h/s" if stats.kind == "audio" else ""
        log.info("%s: %d/%d items%s, %.1f items/s%s, %d failed, elapsed %s, ETA %s", t.name, done, t.total, share,
                 rate, hours, stats.failed, format_duration(dt), eta)


def summary_table(stats: list[TableStats]) -> Table:
    t = Table(title="audioret extract: summary")
    for col in ("split", "kind", "items", "skipped", "done", "failed", "items/s", "audio h/s",
                "wall s", "decode s*", "wait data", "model s", "write s", "wait write", "bound by"):
        t.add_column(col, justify="right" if col not in ("split", "kind", "bound by") else "left")
    for s in stats:
        hours = s.audio_seconds / 3600.0 / s.wall if s.wall else 0.0
        t.add_row(s.split, s.kind, str(s.items), str(s.skipped), str(s.processed),
                  f"[red]{s.failed}[/red]" if s.failed else "0", f"{s.rate:.1f}", f"{hours:.3f}",
                  f"{s.wall:.1f}", f"{s.decode:.1f}", f"{s.wait_data:.1f}", f"{s.model:.1f}",
                  f"{s.write:.1f}", f"{s.write_blocked:.1f}", s.bound())
    t.caption = "* decode s: summed over DataLoader workers (runs beside the model)"
    return t


def failures_table(stats: list[TableStats], ids: dict[tuple[str, str], list[str]], limit: int = 20) -> Table:
    t = Table(title="failed items (recorded in the store; every rerun retries them)")
    for col in ("split", "kind", "item", "reason"):
        t.add_column(col)
    shown = 0
    for s in stats:
        names = ids.get((s.split, s.kind), [])
        for i, reason in sorted(s.failures.items()):
            if shown < limit:
                t.add_row(s.split, s.kind, names[i] if i < len(names) else str(i), reason)
            shown += 1
    if shown > limit:
        t.caption = f"... and {shown - limit} more (see `audioret store info`)"
    return t
