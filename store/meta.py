"""Store metadata: what is added automatically and how two metadata dicts are compared."""

from __future__ import annotations

import datetime as _dt
import math
import platform
from collections.abc import Iterable, Mapping
from typing import Any

FORMAT_VERSION = 2          # 2: plan and part records in zarr attributes (records.py); 1: JSON files beside them
READABLE_VERSIONS = (1, 2)  # a version 1 store is read, and extended, in its own layout
ATTR_KEY = "audioret_store"
# Keys that describe *when/with what* a store was made, not *what* it holds: never compared.
VOLATILE_KEYS = ("created", "package_versions", "format_version")  # version checked apart
_MISSING = "<missing>"


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the bytes on disk (and torch/audioret when importable)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("zarr", "numcodecs", "numpy", "torch", "audioret"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists/tuples kept whole, tuples as lists)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = _normal(value)
    return out


def _normal(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_normal(v) for v in value]
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def diff(stored: Mapping[str, Any], expected: Mapping[str, Any], *, only_expected: bool = True,
         ignore: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ: ``{key: (stored, expected)}``.

    ``only_expected``: compare only keys that ``expected`` names (a reader asks for what it
    needs); otherwise keys missing on either side differ too. Keys equal to or under an
    ``ignore`` prefix and the volatile keys are skipped.
    """
    skip = tuple(ignore) + VOLATILE_KEYS
    fs, fe = flatten(stored), flatten(expected)
    keys = list(fe) if only_expected else list(dict.fromkeys([*fs, *fe]))
    out: dict[str, tuple[Any, Any]] = {}
    for key in keys:
        if any(key == s or key.startswith(s + ".") for s in skip):
            continue
        a, b = fs.get(key, _MISSING), fe.get(key, _MISSING)
        if a is _MISSING and only_expected:
            # expected names a nested dict the store keeps flat (or vice versa): compare prefix
            sub = {k: v for k, v in fs.items() if k.startswith(key + ".")}
            a = sub if sub else _MISSING
        if not _equal(a, b):
            out[key] = (a, b)
    return out
