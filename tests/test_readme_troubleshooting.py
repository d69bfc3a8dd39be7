"""Every message the README's troubleshooting section quotes is one the code can print, so the
headings cannot drift from the messages again.

A quoted message is a backtick span inside a bold heading (``- **`message`**: fix``); ``<...>``
stands for the part that varies. It must match one string literal of the package sources, with
each f-string hole (``{path}``) matching any text (implicitly joined literals count as one, as
Python joins them).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PACKAGES = ("audioret", "audio", "corpora", "encoders", "extract", "store", "train_heads", "finetune",
            "evaluate", "models", "distill")
HOLE = "\x00"


def troubleshooting_quotes() -> list[str]:
    text = README.read_text()
    section = text.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    items = re.split(r"\n(?=- )", section)
    quotes = []
    for item in items:
        for bold in re.findall(r"\*\*(.+?)\*\*", item, flags=re.S):
            quotes += re.findall(r"`([^`]+)`", bold)
    return quotes


def source_strings() -> list[str]:
    """Every str literal and f-string of the package sources, f-string holes as ``HOLE``."""
    out = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    out.append(node.value)
                elif isinstance(node, ast.JoinedStr):
                    out.append("".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values))
    return out


def quote_pattern(quote: str) -> re.Pattern[str]:
    """``<...>`` placeholders match anything; the rest must appear exactly."""
    pieces = re.split(r"<[^<>]+>", quote)
    return re.compile(".+?".join(re.escape(p) for p in pieces), flags=re.S)


QUOTES = troubleshooting_quotes()


def test_the_section_quotes_messages():
    assert len(QUOTES) >= 6, QUOTES


@pytest.mark.parametrize("quote", QUOTES)
def test_quoted_message_is_in_the_source(quote):
    pattern = quote_pattern(quote)
    assert any(pattern.search(s) for s in source_strings()), f"README quotes {quote!r}, which no source string prints"


def test_the_matcher_rejects_a_reworded_message():
    strings = [f"BEATs checkpoint {HOLE} does not exist; download e.g."]
    assert any(quote_pattern("BEATs checkpoint <file> does not exist").search(s) for s in strings)
    assert not any(quote_pattern("BEATs checkpoint not found").search(s) for s in strings)
