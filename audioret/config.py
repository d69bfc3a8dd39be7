"""Typed stage configs: one dataclass per stage, command-line flags generated from it.

Every field carries its help text (and unit) in ``metadata``; ``--help`` shows it with the
default. Each flag is accepted in kebab-case and snake_case (``--data-path`` and
``--data_path``), so users arriving from the baseline's ``d25_t6.train`` keep their habits.
The resolved config is saved with every artifact (``to_dict``) and read back (``from_dict``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

C = TypeVar("C")


def option(default: Any = dataclasses.MISSING, help: str = "", *, unit: str | None = None,
           default_factory: Any = dataclasses.MISSING, flags: tuple[str, ...] = (),
           cli: bool = True) -> Any:
    """A dataclass field with help text; ``flags`` adds extra spellings, ``cli=False`` hides it."""
    meta = {"help": help, "unit": unit, "flags": flags, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _converter(tp: Any) -> tuple[Any, list[Any] | None]:
    """(callable that parses one command-line token, choices or None)."""
    if get_origin(tp) is Literal:
        choices = list(get_args(tp))
        kind = type(choices[0])
        return kind, choices
    if tp is Path:
        return Path, None
    if tp in (int, float, str):
        return tp, None
    raise TypeError(f"config field type {tp!r} has no command-line converter")


def _none_or(conv: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else conv(text)
    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def plain(text: str) -> str:
    """Docstring text for a terminal: reST's double backticks are noise in ``--help``."""
    return text.replace("``", "")


def help_text(text: str, unit: str | None, default: Any, *, required: bool = False) -> str:
    """One option's help: text, [unit], then exactly one ``(default: ...)`` or ``(required)``.

    A help text that already says ``(default: ...)`` in words keeps its own (it explains the
    default better than the bare value, e.g. ``None``); the unit goes before it.
    """
    text = plain(text)
    own = text.find("(default:")
    head, tail = (text[:own].rstrip(), " " + text[own:]) if own >= 0 else (text, "")
    if unit:
        head += f" [{unit}]"
    if required:
        return head + tail + " (required)"
    if tail:
        return head + tail
    return f"{head} (default: {str(default) if isinstance(default, Path) else default})"


def add_config_args(parser: argparse.ArgumentParser, cls: type, group: str | None = None) -> None:
    """Add one flag per field of dataclass ``cls`` to ``parser`` (defaults left to the dataclass)."""
    hints = get_type_hints(cls)
    target = parser.add_argument_group(group) if group else parser
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        names = [f"--{f.name.replace('_', '-')}"]
        if "_" in f.name:
            names.append(f"--{f.name}")
        names.extend(f.metadata.get("flags", ()))
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        text = help_text(f.metadata.get("help", ""), f.metadata.get("unit"), None if required else default,
                         required=required)
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": text}
        if required:
            kwargs["required"] = True
            kwargs.pop("default")
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction  # also adds --no-<flag>
        elif get_origin(tp) in (list, tuple):
            inner = get_args(tp)[0]
            conv, choices = _converter(inner)
            kwargs.update(type=conv, nargs="+", choices=choices)
            kwargs["metavar"] = inner.__name__.upper() if hasattr(inner, "__name__") else "VALUE"
        else:
            conv, choices = _converter(tp)
            kwargs.update(type=_none_or(conv) if optional else conv, choices=choices)
            if choices is None:
                kwargs["metavar"] = getattr(tp, "__name__", "VALUE").upper()
        target.add_argument(*names, **kwargs)


def config_from_namespace(cls: type[C], ns: argparse.Namespace, **overrides: Any) -> C:
    """Build ``cls`` from the parsed flags that belong to it (others are ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(ns).items() if k in names}
    values.update(overrides)
    return cls(**values)


def build_parser(cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=plain(description or (cls.__doc__ or "").strip()),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser, cls)
    return parser


def parse_config(cls: type[C], argv: list[str] | None, prog: str) -> C:
    return config_from_namespace(cls, build_parser(cls, prog).parse_args(argv))


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-safe dict of a (possibly nested) config dataclass."""
    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v
    return conv(cfg)


def from_dict(cls: type[C], data: dict[str, Any], *, strict: bool = True) -> C:
    """Inverse of ``to_dict``; unknown keys raise (``strict``) so a stale config is noticed."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - set(fields)
    if unknown and strict:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}; "
                         f"expected a subset of {sorted(fields)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            continue
        tp, _ = _unwrap_optional(hints[name])
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = from_dict(tp, value, strict=strict)  # type: ignore[arg-type]
        elif tp is Path and value is not None:
            value = Path(value)
        elif get_origin(tp) is tuple and value is not None:
            value = tuple(value)
        values[name] = value
    return cls(**values)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``: a crash
    leaves the old file or the new one, never half a file (results and completion markers)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:  # a full disk or an interrupt: no half-written temp file stays behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_json(cfg: Any, path: str | Path) -> None:
    """The resolved config as JSON, written atomically."""
    atomic_write_text(path, json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


__all__ = ["option", "plain", "help_text", "add_config_args", "build_parser", "parse_config", "config_from_namespace",
           "to_dict", "from_dict", "save_json", "atomic_write_text"]
