"""``audioret store info PATH``, ``audioret store verify PATH`` and ``audioret store upgrade PATH``.

Thin: parses flags, calls ``summarize`` / ``verify_store``, prints with rich. Exit status of
``verify``: 0 intact, 1 problems found, 2 no store at PATH.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import meta
from .errors import StoreError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="audioret store", description="Inspect or check a feature store.")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="summary: splits, counts, sizes, encoder, completeness, failures")
    info.add_argument("path", help="store path or fsspec URL (e.g. s3://bucket/feat.zarr)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument("--failures", type=int, default=10, help="failures listed per table (default: 10)")
    ver = sub.add_parser("verify", help="check every file against its recorded size and checksum, stray .partial "
                         "files, offsets, lengths, finiteness, completeness (exit 1 on a problem)")
    ver.add_argument("path", help="store path or fsspec URL")
    ver.add_argument("--no-values", dest="values", action="store_false",
                     help="skip decoding the data (only metadata, offsets and completeness)")
    ver.add_argument("--allow-incomplete", action="store_true", help="do not count unfinished parts as problems")
    ver.add_argument("--quick", action="store_true",
                     help="compare file sizes and modification times instead of reading every byte for checksums")
    up = sub.add_parser("upgrade", help="rewrite an older store's bookkeeping in the current format, in place "
                        "(format 1 -> 2: plan.json and parts/*.json into zarr attributes; no feature is rewritten)")
    up.add_argument("path", help="store path or fsspec URL")
    return p


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


MORE = "…({} more chars, see --json)"


def short_value(value: Any, limit: int = 110) -> str:
    """``value`` as compact JSON of at most about ``limit`` characters, cut only between whole
    items (a dict's entries, a list's elements, a text's words) and marked with how much is left,
    so a reader never sees half a token and knows where the rest is."""
    full = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if len(full) <= limit:
        return full
    if isinstance(value, dict):
        parts = [f"{json.dumps(str(k))}: {json.dumps(v, default=str, ensure_ascii=False)}" for k, v in value.items()]
        open_, close = "{", "}"
    elif isinstance(value, (list, tuple)):
        parts = [json.dumps(v, default=str, ensure_ascii=False) for v in value]
        open_, close = "[", "]"
    else:
        parts, open_, close = full.split(" "), "", ""
    sep = " " if open_ == "" else ", "
    kept: list[str] = []
    for part in parts:
        if len(sep.join([*kept, part])) + 2 > limit:
            break
        kept.append(part)
    shown = sep.join(kept)
    rest = len(full) - len(open_) - len(shown) - len(close)
    return f"{open_}{shown}{sep if kept else ''}{MORE.format(rest)}{close}"


def metadata_lines(section: Any) -> list[str]:
    """One ``key: value`` line per entry of a metadata section (values via ``short_value``)."""
    if not isinstance(section, dict):
        return [short_value(section)]
    return [f"{k}: {short_value(v)}" for k, v in section.items()]


def _print_info(s: dict[str, Any], max_failures: int) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=None if sys.stdout.isatty() else 160)
    md = s["metadata"]
    con.print(f"[bold]{s['path']}[/bold]  format v{s['format_version']}  codec {s['codec']}  "
              f"created {s['created']}  on disk {_size(s['disk_bytes'])}")
    for key in ("audio_encoder", "text_encoder", "preprocessing", "corpus"):
        if key in md:
            con.print(f"  [bold]{key}[/bold]", highlight=False)
            for line in metadata_lines(md[key]):
                con.print(f"    {line}", markup=False, highlight=False)
    t = Table("split", "kind", "items", "written", "failed", "parts", "field", "dim", "dtype", "rows",
              "kept fp", "on disk", "ratio")
    for split, kinds in s["splits"].items():
        for kind, k in kinds.items():
            state = "[green]complete[/green]" if k["complete"] else f"[yellow]{k['items_done']}[/yellow]"
            for j, (name, f) in enumerate(k["fields"].items()):
                head = [split, kind, str(k["items"]), state, str(k["failed"]),
                        f"{k['parts_complete']}/{k['parts']}"] if j == 0 else [""] * 6
                ratio = f["disk_bytes"] / f["kept_bytes"] if f["kept_bytes"] else float("nan")
                t.add_row(*head, name, str(f["dim"]), f["dtype"], str(f["rows"]), _size(f["kept_bytes"]),
                          _size(f["disk_bytes"]), f"{ratio:.3f}")
    con.print(t)
    for split, kinds in s["splits"].items():
        for kind, k in kinds.items():
            for item, reason in list(k["failures"].items())[:max_failures]:
                con.print(f"  [red]failed[/red] {split}/{kind} item {item}: {reason}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .verify import summarize, verify_store

    if args.command == "upgrade":
        from .upgrade import upgrade_store

        try:
            before, moved = upgrade_store(args.path)
        except StoreError as e:
            print(f"audioret store upgrade: error: {e}", file=sys.stderr)
            return 2
        if before == meta.FORMAT_VERSION:
            print(f"{args.path}: already format version {before}")
        else:
            print(f"{args.path}: format version {before} -> {meta.FORMAT_VERSION} ({moved} tables): plain zarr "
                  "opens it without warnings now")
        return 0
    if args.command == "info":
        try:
            s = summarize(args.path)
        except StoreError as e:
            print(f"audioret store info: error: {e}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(s, indent=2, default=str))
        else:
            _print_info(s, args.failures)
        return 0
    notes: list[str] = []
    problems = verify_store(args.path, check_values=args.values, require_complete=not args.allow_incomplete,
                            quick=args.quick, progress=sys.stderr.isatty(), notes=notes)
    if problems and problems[0].startswith("no audioret store"):
        print(f"audioret store verify: error: {problems[0]}", file=sys.stderr)
        return 2
    for n in notes:
        print(f"note: {n}")
    for p in problems:
        print(f"PROBLEM {p}")
    if not problems:
        print(f"{args.path}: OK")
        return 0
    from .verify import FIX

    print(f"{args.path}: {len(problems)} problem(s): {FIX}")
    return 1
