"""``audioret corpus synth|list``: write a synthetic Clotho-layout corpus, or summarise a split."""

from __future__ import annotations

import argparse
import logging
import time

from audioret.config import StageParser, config_from_namespace, plain
from audioret.errors import report_user_error, user_error_types
from audioret.logs import setup_logging

from .base import CorpusSplit
from .config import ListConfig, SynthConfig
from .registry import load_corpus
from .synth import multi_match_annotations_path, write_corpus

logger = logging.getLogger(__name__)


def run_synth(config: SynthConfig) -> CorpusSplit | None:
    from rich.console import Console

    from audioret.errors import output_faults

    started = time.perf_counter()
    with output_faults(config.out, "--out"):  # a full or read-only disk: one line, exit 2
        out = write_corpus(config)
    Console().print(f"wrote synthetic corpus [bold]{out}[/] ({config.n_dev}/{config.n_val}/{config.n_eval} "
                    f"clips) in {time.perf_counter() - started:.1f} s; multi-match annotations: "
                    f"{multi_match_annotations_path(out)}")
    return None


def run_list(config: ListConfig) -> CorpusSplit:
    kw: dict = {}
    if config.corpus == "folder":
        kw["captions_csv"] = config.captions_csv
    elif config.corpus != "audiocaps":
        kw["allow_missing"] = config.allow_missing
    corpus = load_corpus(config.corpus, config.data_path, config.split, download=config.download, **kw)
    print_summary(corpus)
    return corpus


def print_summary(corpus: CorpusSplit) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{corpus.name} / {corpus.split}  ({corpus.root})")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("clips", str(len(corpus)))
    table.add_row("captions", str(corpus.num_captions))
    if corpus.queries:
        table.add_row("queries", str(len(corpus.queries)))
    known = [c.duration for c in corpus.clips if c.duration is not None]
    if known:
        table.add_row("total duration", f"{sum(known) / 3600:.2f} h ({len(known)} clips known)")
        table.add_row("clip duration min / mean / max",
                      f"{min(known):.1f} / {sum(known) / len(known):.1f} / {max(known):.1f} s")
    for reason, count in sorted(corpus.removed.items()):
        table.add_row(f"removed: {reason}", str(count))
    Console().print(table)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audioret corpus", description=plain(__doc__ or ""))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=StageParser)  # + --config
    sub.add_parser("synth", help=SynthConfig.__doc__, description=SynthConfig.__doc__, config_cls=SynthConfig)
    sub.add_parser("list", help=ListConfig.__doc__, description=ListConfig.__doc__, config_cls=ListConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    ns = build_parser().parse_args(argv)
    try:
        if ns.command == "synth":
            run_synth(config_from_namespace(SynthConfig, ns))
        else:
            run_list(config_from_namespace(ListConfig, ns))
    except user_error_types() as exc:  # like every stage: one line, exit 2
        return report_user_error(f"audioret corpus {ns.command}", exc)
    return 0
