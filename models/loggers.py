"""Optional training loggers (TensorBoard, W&B): checked before any data loads, so a missing
package is one line with its install hint rather than a traceback when the Trainer starts."""

from __future__ import annotations

import importlib.util

from audioret.errors import InputError

# --logger value -> (importable packages, any one will do; the audioret extra that installs it)
LOGGER_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
}


def check_logger(kind: str, flag: str = "--logger") -> None:
    """Raise InputError (one line, exit 2) when ``kind`` needs a package that is not installed."""
    if kind not in LOGGER_PACKAGES:
        return
    packages, extra = LOGGER_PACKAGES[kind]
    if not any(importlib.util.find_spec(p) for p in packages):
        raise InputError(f"{flag} {kind} needs the `{packages[0]}` package, which is not installed: "
                         f"pip install 'audioret[{extra}]', or use {flag} csv (the default)")
