"""Exceptions raised by the store (all subclass :class:`StoreError`)."""

from __future__ import annotations

from typing import Any


class StoreError(RuntimeError):
    """Any problem opening, planning, writing or reading a feature store."""


class StoreMismatchError(StoreError):
    """The store was made with other metadata (encoder, preprocessing, plan) than expected.

    ``differences`` maps each dotted key to ``(value in store, value expected)``.
    """

    def __init__(self, path: str, differences: dict[str, tuple[Any, Any]], what: str = "metadata",
                 hint: str = "") -> None:
        self.path = path
        self.differences = differences
        lines = [f"  {k}: store has {_short(a)}, expected {_short(b)}" for k, (a, b) in differences.items()]
        msg = f"store {path}: {what} differs in {len(differences)} key(s):\n" + "\n".join(lines)
        if hint:
            msg += f"\n{hint}"
        super().__init__(msg)


class StoreIncompleteError(StoreError):
    """Data was asked for that is not (yet) completely written."""


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
