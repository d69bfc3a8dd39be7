"""Typed stage configs: one dataclass per stage, command-line flags generated from it.

Every field carries its help text (and unit) in ``metadata``; ``--help`` shows it with the
default. Each flag is accepted in kebab-case and snake_case (``--data-path`` and
``--data_path``), so users arriving from the baseline's ``d25_t6.train`` keep their habits.
The resolved config is saved with every artifact (``to_dict``) and read back (``from_dict``).

Every stage parser built here (``build_parser``, or ``StageParser`` for a subcommand) also takes
``--config FILE`` (repeatable: YAML, or JSON as the stages write it; later files override earlier
ones, explicit flags override every file) and ``--print-config`` (the resolved config as YAML, then
exit 0). A saved config names its stage (``stage`` key, from the config class's ``STAGE``); a file
of another stage, an unknown key or a malformed file is one line on stderr and exit 2. ``--config``
also reads a run folder (its ``config.json``), a feature store (the ``extract_config`` in its
``zarr.json``) and records that embed one under ``config`` (evaluate's metrics.json, predict's
``<name>_source.json``, the demo's summary.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

C = TypeVar("C")


def option(default: Any = dataclasses.MISSING, help: str = "", *, unit: str | None = None,
           default_factory: Any = dataclasses.MISSING, flags: tuple[str, ...] = (),
           cli: bool = True, positional: bool = False, metavar: str | None = None) -> Any:
    """A dataclass field with help text; ``flags`` adds extra spellings, ``cli=False`` hides it,
    ``positional=True`` makes it a positional argument (``metavar`` names it in the usage line)."""
    meta = {"help": help, "unit": unit, "flags": flags, "cli": cli, "positional": positional, "metavar": metavar}
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


def add_config_args(parser: argparse.ArgumentParser, cls: type, group: str | None = None, *,
                    enforce_required: bool = True, exclude: frozenset[str] = frozenset()) -> None:
    """Add one flag per field of dataclass ``cls`` to ``parser`` (defaults left to the dataclass).

    ``enforce_required=False``: fields without a default are not required by argparse (a ``--config``
    file may give them; ``StageParser`` checks them after reading the files). ``exclude``: fields
    left out (a section's fields that the stage's main config owns).
    """
    hints = get_type_hints(cls)
    target = parser.add_argument_group(group) if group else parser
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True) or f.name in exclude:
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        if f.metadata.get("positional"):
            _add_positional(target, f, tp, optional)
            continue
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
        if required and enforce_required:
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


def _add_positional(target: Any, f: dataclasses.Field, tp: Any, optional: bool) -> None:
    """A positional field (``CKPT``, or a list: ``RUN_DIR ...``): never required by argparse (a --config
    file may give it; StageParser checks required fields) and absent from the namespace when not given."""
    listed = get_origin(tp) in (list, tuple)
    conv, _ = _converter(get_args(tp)[0] if listed else tp)
    if optional and not listed:
        conv = _none_or(conv)
    text = plain(f.metadata.get("help", "")) + (f" [{f.metadata['unit']}]" if f.metadata.get("unit") else "")
    target.add_argument(f.name, nargs="*" if listed else "?", default=argparse.SUPPRESS, type=_keep_suppress(conv),
                        metavar=f.metadata.get("metavar") or f.name.upper(),
                        help=text + (" (required)" if _required(f) else ""))  # no "(default: None)" noise


def _keep_suppress(conv: Any) -> Any:
    """argparse runs an absent ``?`` positional's default through its type: SUPPRESS must stay SUPPRESS
    (then the namespace has no value and files or the dataclass default apply)."""
    def parse(text: str) -> Any:
        return argparse.SUPPRESS if text == argparse.SUPPRESS else conv(text)
    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def config_from_namespace(cls: type[C], ns: argparse.Namespace, **overrides: Any) -> C:
    """Build ``cls`` from the parsed flags that belong to it (others are ignored)."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(ns).items() if k in names}
    values.update(overrides)
    for name, value in values.items():  # argparse's nargs give lists; a tuple field keeps its type
        if isinstance(value, list) and get_origin(_unwrap_optional(hints[name])[0]) is tuple:
            values[name] = tuple(value)
    return cls(**values)


# ---------------------------------------------------------------- --config FILE and --print-config

FILES_DEST, PRINT_DEST = "_config_files", "_print_config"
STORE_ATTR = "audioret_store"  # a feature store's root attributes (store/FORMAT.md): {"metadata": {"extract_config"}}


class ConfigFileError(ValueError):
    """A ``--config`` file that cannot be used; the message is one line naming the file (and key)."""


def build_parser(cls: type, prog: str, description: str | None = None, *,
                 sections: dict[str, type] | None = None) -> "StageParser":
    """The parser of a stage: one flag per field of ``cls``, plus ``--config`` and ``--print-config``."""
    return StageParser(prog=prog, description=plain(description or (cls.__doc__ or "").strip()),
                       config_cls=cls, sections=sections)


def parse_config(cls: type[C], argv: list[str] | None, prog: str) -> C:
    return config_from_namespace(cls, build_parser(cls, prog).parse_args(argv))


class StageParser(argparse.ArgumentParser):
    """One stage's flags (from its config dataclass) plus ``--config FILE`` and ``--print-config``.

    Values resolve as: dataclass defaults < ``--config`` files in order < explicit flags (flags have
    no argparse default, so the namespace holds exactly the flags given). ``sections`` name nested
    configs of a stage that has two (``distill run``: ``heads`` = the train-heads flags it passes
    on): their flags are the arguments the main config does not know, their keys a nested mapping.
    As a subcommand: ``parser.add_subparsers(parser_class=StageParser)``, then
    ``add_parser(name, config_cls=...)``.
    """

    def __init__(self, *args: Any, config_cls: type, stage: str | None = None,
                 sections: dict[str, type] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.config_cls = config_cls
        self.stage: str = stage or getattr(config_cls, "STAGE", None) or self.prog.removeprefix("audioret ").strip()
        self.sections = dict(sections or {})
        add_config_args(self, config_cls, enforce_required=False)
        group = self.add_argument_group("config files")
        group.add_argument("--config", dest=FILES_DEST, action="append", default=[], metavar="FILE",
                           help="read flag values from FILE: YAML or JSON, as --print-config prints them or as "
                                "a run saved them (a run folder reads its config.json, a feature store its "
                                "extract config); repeatable, later files and then flags given here win")
        group.add_argument("--print-config", dest=PRINT_DEST, action="store_true",
                           help="print the resolved config (defaults, --config files, flags) as YAML and exit; "
                                "fields still required are printed as null and marked")

    # ---- parsing
    _raw = False  # inside parse_known_intermixed_args: its two passes are plain argparse, resolved after

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        ns, extra = super().parse_known_args(args, namespace)
        return (ns, extra) if self._raw else self._resolve(ns, extra)

    def parse_known_intermixed_args(self, args: Any = None,
                                    namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        """Positionals mixed with flags (``audioret search INDEX "a dog" --top-k 5 "rain"``)."""
        self._raw = True
        try:
            ns, extra = super().parse_known_intermixed_args(args, namespace)
        finally:
            self._raw = False
        return self._resolve(ns, extra)

    def _resolve(self, ns: argparse.Namespace, extra: list[str]) -> tuple[argparse.Namespace, list[str]]:
        """Apply the --config files under the flags given, the sections, --print-config, required fields."""
        files: list[str] = getattr(ns, FILES_DEST, None) or []
        main: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {name: {} for name in self.sections}
        for file in files:
            try:
                values, sections = self.file_values(load_config_file(file), file)
            except ConfigFileError as err:
                self.exit(2, f"{self.prog}: error: {' '.join(str(err).split())}\n")
            main.update(values)
            for name, section in sections.items():
                nested[name].update(section)
        for name, value in main.items():
            if not hasattr(ns, name):  # an explicit flag wins over every file
                setattr(ns, name, value)
        for name, cls in self.sections.items():
            sub = argparse.ArgumentParser(prog=self.prog, add_help=False)
            add_config_args(sub, cls, enforce_required=False, exclude=self._field_names())
            sub_ns = sub.parse_args(extra)
            for key, value in nested[name].items():
                if not hasattr(sub_ns, key):
                    setattr(sub_ns, key, value)
            setattr(ns, name, sub_ns)
            extra = []
        missing = [f for f in dataclasses.fields(self.config_cls) if _required(f) and not hasattr(ns, f.name)]
        if getattr(ns, PRINT_DEST, False):
            if extra:
                self.error(f"unrecognized arguments: {' '.join(extra)}")
            sys.stdout.write(self.format_config(ns))
            self.exit(0)
        if missing:
            self.error("the following arguments are required: " + ", ".join(_spelling(f) for f in missing)
                       + " (or a --config file that sets them)")
        return ns, extra

    def _field_names(self) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(self.config_cls))

    def file_values(self, doc: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """(main config values, section values) of one loaded file, checked and converted."""
        stage = doc.get("stage")
        if stage is not None and stage != self.stage:
            raise ConfigFileError(f"{source}: a config of `audioret {stage}`, not of `audioret {self.stage}`: pass "
                                  f"it to `audioret {stage}`, or start from `audioret {self.stage} --print-config`")
        sections: dict[str, dict[str, Any]] = {}
        for name, cls in self.sections.items():
            section = doc.get(name)
            if section is None:
                continue
            if not isinstance(section, dict):
                raise ConfigFileError(f"{source}: {name}: expected a mapping of {name} keys, got "
                                      f"{type(section).__name__}")
            sections[name] = _field_values(cls, section, f"{source}: {name}", self.stage,
                                           exclude=self._field_names())
        rest = {k: v for k, v in doc.items() if k != "stage" and k not in self.sections}
        mine = self._field_names()
        for key in rest:
            name = str(key).replace("-", "_")
            owner = next((sec for sec, cls in self.sections.items() if name not in mine
                          and name in {f.name for f in dataclasses.fields(cls)}), None)
            if owner is not None:  # a flag of the section given at the top level, as on the command line
                raise ConfigFileError(f"{source}: {key!r} is a {getattr(self.sections[owner], 'STAGE', owner)} "
                                      f"setting: put it under `{owner}:` (as `audioret {self.stage} --print-config` "
                                      "shows)")
        return _field_values(self.config_cls, rest, source, self.stage), sections

    # ---- printing
    def resolved(self, ns: argparse.Namespace) -> dict[str, Any]:
        """The resolved config in ``to_dict``'s form (stage first; required fields not set are None)."""
        out: dict[str, Any] = {"stage": self.stage, **_resolved_fields(self.config_cls, ns)}
        for name, cls in self.sections.items():
            out[name] = _resolved_fields(cls, getattr(ns, name), exclude=self._field_names())
        return out

    def format_config(self, ns: argparse.Namespace) -> str:
        """``resolved`` as commented YAML: each key under its help text, missing required keys marked."""
        values = self.resolved(ns)
        lines = [f"# audioret {self.stage}: resolved config (defaults < --config files < flags).",
                 f"# Save it, edit it, rerun: audioret {self.stage} --config FILE [flags that override it]",
                 f"stage: {_yaml_scalar(self.stage)}"]
        lines += _yaml_fields(self.config_cls, values, indent="")
        for name, cls in self.sections.items():
            lines += [f"# {name}: the {getattr(cls, 'STAGE', name)} settings every run of this stage uses "
                      "(the keys above take precedence)", f"{name}:"]
            lines += _yaml_fields(cls, values[name], indent="  ")
        return "\n".join(lines) + "\n"


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The config mapping in ``path``: a YAML or JSON file; a run folder (its ``config.json``); a feature
    store (its folder or ``zarr.json``: the recorded extract config, less ``overwrite``); or a record
    that embeds a config under ``config`` (evaluate's metrics.json, predict's <name>_source.json, the
    demo's summary.json)."""
    p = Path(path)
    if p.is_dir():
        found = [p / name for name in ("config.json", "zarr.json") if (p / name).is_file()]
        if not found:
            raise ConfigFileError(f"{path}: a folder without config.json (a run folder) or zarr.json (a feature "
                                  "store); pass a config file")
        p = found[0]
    if _is_checkpoint(p):
        run = p.parent.parent if p.parent.name == "checkpoints" else p.parent
        raise ConfigFileError(f"{path}: a checkpoint, not a config: its run's config is the run folder's "
                              f"config.json (pass the folder: --config {run})")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigFileError(f"{path}: cannot be read as a text config ({getattr(err, 'strerror', None) or err})") \
            from None
    doc = _parse_text(text, str(path), json_only=p.suffix.lower() == ".json")
    if not isinstance(doc, dict):
        what = "an empty file" if doc is None else f"a {type(doc).__name__}"
        raise ConfigFileError(f"{path}: expected a mapping of config keys (key: value lines), got {what}")
    if "zarr_format" in doc:  # a feature store: audioret extract recorded its config in the root attributes
        meta = ((doc.get("attributes") or {}).get(STORE_ATTR) or {}).get("metadata") or {}
        config = meta.get("extract_config")
        if not isinstance(config, dict):
            raise ConfigFileError(f"{path}: a Zarr store without an extract config (not written by audioret extract)")
        # extract --overwrite deletes the store first: replayed from the store itself it would delete what
        # the config was read from (a rerun that adds a split would lose the others), so it is not replayed
        return {"stage": "extract", **{k: v for k, v in config.items() if k != "overwrite"}}
    if "stage" not in doc and isinstance(doc.get("config"), dict):
        return dict(doc["config"])
    return doc


def _is_checkpoint(p: Path) -> bool:
    """A torch checkpoint (zip archive or legacy pickle), which --config cannot read without loading it."""
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def _parse_text(text: str, source: str, *, json_only: bool) -> Any:
    if json_only:
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigFileError(f"{source}: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") \
                from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigFileError(f"{source}: not valid YAML: {problem}{where}") from None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _spelling(f: dataclasses.Field) -> str:
    """How a user gives field ``f`` on the command line: ``--data-path`` or a positional's ``RUN_DIR``."""
    return (f.metadata.get("metavar") or f.name.upper()) if f.metadata.get("positional") else _flag(f.name)


def _field_values(cls: type, data: dict[str, Any], source: str, stage: str,
                  exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``data``'s keys (snake_case or kebab-case) checked against ``cls``'s fields, values converted
    to the field types as the flags would be; a required field set to null counts as not given."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in exclude}  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigFileError(f"{source}: unknown key {key!r} for `audioret {stage}`{hint}; "
                                  f"`audioret {stage} --print-config` lists every key")
        if value is None and _required(fields[name]):
            continue
        out[name] = _coerce(hints[name], value, f"{source}: {key}")
    return out


def _coerce(hint: Any, value: Any, where: str) -> Any:
    tp, optional = _unwrap_optional(hint)
    if value is None:
        if optional:
            return None
        if get_origin(tp) is list:  # a field that held one optional value before (evaluate/predict --checkpoint)
            return []
        raise ConfigFileError(f"{where}: null is not allowed here; give a value or delete the line")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigFileError(f"{where}: expected true or false, got {value!r}")
    if get_origin(tp) is list and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]  # a saved single value of a field that became a list (--checkpoint A B: ensembles)
    if get_origin(tp) in (list, tuple):
        if not isinstance(value, list):
            raise ConfigFileError(f"{where}: expected a list like [a, b], got {value!r}")
        items = [_scalar(get_args(tp)[0], v, where) for v in value]
        return tuple(items) if get_origin(tp) is tuple else items
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    conv, choices = _converter(tp)
    if isinstance(value, (dict, list, bool)):
        raise ConfigFileError(f"{where}: expected one {getattr(conv, '__name__', 'value')} value, got {value!r}")
    try:
        if conv is float and isinstance(value, (int, float)):
            out: Any = float(value)
        elif conv is int and isinstance(value, int):
            out = value
        else:
            out = conv(str(value))
    except ValueError:
        raise ConfigFileError(f"{where}: {value!r} is not a valid {getattr(conv, '__name__', 'value')}") from None
    if choices is not None and out not in choices:
        raise ConfigFileError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    return out


def _resolved_fields(cls: type, ns: argparse.Namespace, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in exclude:
            continue
        if hasattr(ns, f.name):
            value = getattr(ns, f.name)
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = None if f.default is dataclasses.MISSING else f.default
        out[f.name] = _plain(value)
    return out


def _yaml_scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=2 ** 30, allow_unicode=True).strip()
    return text[:-3].rstrip() if text.endswith("\n...") else text


def _yaml_fields(cls: type, values: dict[str, Any], indent: str) -> list[str]:
    lines: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in values:
            continue
        text = plain(f.metadata.get("help", ""))
        if f.metadata.get("unit"):
            text += f" [{f.metadata['unit']}]"
        lines += [f"{indent}# {line}" for line in textwrap.wrap(" ".join(text.split()), 100)]
        line = f"{indent}{f.name}: {_yaml_scalar(values[f.name])}"
        if values[f.name] is None and _required(f):
            line += f"  # REQUIRED: not set; give {_spelling(f)} or set it here"
        lines.append(line)
    return lines


def to_dict(cfg: Any, **sections: Any) -> dict[str, Any]:
    """JSON-safe dict of a (possibly nested) config dataclass, in the form ``--config`` reads:
    ``stage`` first (the class's ``STAGE``, when it has one), then every field. ``sections`` are
    the nested configs of a stage that has two (``distill run``: ``heads=TrainHeadsConfig``), each
    without the keys of the main config (those flags belong to the main config)."""
    out = {"stage": cfg.STAGE} if isinstance(getattr(cfg, "STAGE", None), str) else {}
    out.update(_plain(cfg))
    for name, section in sections.items():
        out[name] = {k: v for k, v in _plain(section).items() if k not in out}
    return out


def _plain(cfg: Any) -> Any:
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
    if "stage" not in fields and "stage" in data:  # what to_dict records (older files lack it)
        want = getattr(cls, "STAGE", None)
        if want is not None and data["stage"] != want:
            raise ValueError(f"{cls.__name__}: a config of `audioret {data['stage']}`, not of `audioret {want}`")
        data = {k: v for k, v in data.items() if k != "stage"}
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


def save_json(cfg: Any, path: str | Path, **sections: Any) -> None:
    """The resolved config as JSON (``to_dict``: what ``--config`` reads), written atomically."""
    atomic_write_text(path, json.dumps(to_dict(cfg, **sections), indent=2) + "\n")


__all__ = ["option", "plain", "help_text", "add_config_args", "build_parser", "parse_config", "config_from_namespace",
           "StageParser", "ConfigFileError", "load_config_file", "stage_subparser", "to_dict", "from_dict",
           "save_json", "atomic_write_text"]
