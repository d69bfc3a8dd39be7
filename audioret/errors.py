"""Errors a user can fix (wrong path, missing data, mismatched store or checkpoint).

Stage CLIs print them as one line naming the file and the fix, and exit 2, instead of a traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

INTERRUPTED = 130   # the shell's status for a process stopped by SIGINT (128 + 2)
RESUME_HINT = "completed parts are kept: rerun the same command to resume"


class UserError(Exception):
    """Base of the errors of shared packages that mean 'fix your input' (corpora's CorpusError): they
    subclass it, so this module names them without importing those packages (imports run one way)."""


class InputError(ValueError):
    """A command-line value that cannot work (the message names the flag and the fix)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean 'fix your input' (imported lazily: evaluated only on an error)."""
    from audioret.store.errors import StoreError  # store/ imports nothing of ours: it cannot subclass

    # CheckpointError (encoders) and the models' checkpoint errors are ValueErrors;
    # TextModelNotFound is a FileNotFoundError.
    return (StoreError, UserError, ValueError, FileNotFoundError)


def report_user_error(prog: str, err: BaseException) -> int:
    """``prog: error: <message>`` on one line of stderr; returns the exit status 2."""
    print(f"{prog}: error: {one_line(str(err))}", file=sys.stderr)
    return 2


def one_line(text: str) -> str:
    """Line breaks of a message (a library's, or a list of differences) as "; ": one line per error."""
    parts = [" ".join(line.split()) for line in text.splitlines()]
    return "; ".join(p for p in parts if p).replace(":;", ":")


def report_interrupt(prog: str, kept: str = RESUME_HINT) -> int:
    """``prog: stopped by Ctrl-C; <what was kept and how to go on>`` on one line; returns 130.
    Stage CLIs catch KeyboardInterrupt with this instead of printing its traceback."""
    print(f"{prog}: stopped by Ctrl-C; {kept}", file=sys.stderr)
    return INTERRUPTED


@contextmanager
def watch_interrupt() -> Iterator[Callable[[], bool]]:
    """Yield ``seen()``: whether Ctrl-C was pressed, also where a library turned it into something else
    (Lightning's fit shuts down gracefully and raises ``SystemExit(1)``). Ctrl-C still raises
    KeyboardInterrupt as usual; the previous handler is restored afterwards. A no-op off the main thread."""
    hit = {"seen": False}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: hit["seen"]
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        hit["seen"] = True
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: hit["seen"]
    finally:
        signal.signal(signal.SIGINT, previous)


def is_interrupt(err: BaseException, seen: Callable[[], bool]) -> bool:
    """A KeyboardInterrupt, or the SystemExit a library raised after its own Ctrl-C handling."""
    return isinstance(err, KeyboardInterrupt) or (isinstance(err, SystemExit) and seen())


# OSErrors a user fixes on their side (free space, a writable folder), not bugs in audioret
DISK_FAULTS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
               errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted"}


WRITE_ONLY_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)   # never raised by a read


def disk_fault(err: BaseException | None, errnos: Iterable[int] = DISK_FAULTS) -> OSError | None:
    """The full-disk / read-only / permission OSError behind ``err`` (its causes included: the
    store's background writer re-raises it wrapped), or None."""
    seen, errnos = 0, set(errnos)
    while err is not None and seen < 10:
        if isinstance(err, OSError) and err.errno in errnos:
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def disk_fault_message(err: OSError, where: str | os.PathLike, flag: str) -> str:
    """One line naming the output that could not be written and what to do."""
    name = err.filename if _inside(err.filename, where) else where   # not a library's temp file elsewhere
    what = DISK_FAULTS.get(err.errno, err.strerror or "write failed")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"cannot write {name} ({what}): free space on that disk or point {flag} at another one, "
                "then rerun the same command")
    return f"cannot write {name} ({what}): point {flag} at a writable folder"


def _inside(name: str | os.PathLike | None, where: str | os.PathLike) -> bool:
    if not name:
        return False
    a, b = os.path.abspath(os.fspath(name)), os.path.abspath(os.fspath(where))
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def report_disk_fault(prog: str, err: BaseException, where: str | os.PathLike, flag: str) -> int | None:
    """``prog: error: cannot write ...`` and 2 for a disk fault behind ``err``; None for anything else
    (the caller re-raises it: a bug keeps its traceback)."""
    fault = disk_fault(err)
    if fault is None:
        return None
    print(f"{prog}: error: {disk_fault_message(fault, where, flag)}", file=sys.stderr)
    return 2


class OutputError(InputError):
    """An output that cannot be written (full disk, read-only folder); the message says which and what to do."""


@contextmanager
def output_faults(where: str | os.PathLike, flag: str, *, reads_inside: bool = False) -> Iterator[None]:
    """Turn a disk fault inside into OutputError (a user error: one line, exit 2) naming ``where`` and
    ``flag``; other errors pass unchanged. ``reads_inside``: the block also reads inputs, so only
    faults of writes (full disk, read-only) are mapped (a permission error may be an input's)."""
    try:
        yield
    except OutputError:
        raise
    except Exception as err:
        fault = disk_fault(err, WRITE_ONLY_FAULTS if reads_inside else DISK_FAULTS)
        if fault is None:
            raise
        raise OutputError(disk_fault_message(fault, where, flag)) from err
