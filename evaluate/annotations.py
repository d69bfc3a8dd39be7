"""Which multi-match annotations ``evaluate`` scores against when ``--annotations`` is not given.

The rule is the one finetune uses for its test set (``finetune.run.multi_match_file``): the
corpus's own file (``<data path>/metadata_eval.csv``, which synthetic corpora such as the demo's
write), else the shipped Clotho-eval annotations for a Clotho corpus. What names the corpus:

- ``--data-path DIR [--corpus NAME]``;
- ``--store STORE``: the store's metadata records the corpus it was extracted from (name, data path);
- ``--predictions FILE``: ``predict`` writes a record ``<name>_source.json`` beside its submission
  files (checkpoint, store or audio folder, split, corpus), found from ``<name>.csv`` and
  ``<name>_top<K>.csv``.

Multi-match annotations exist for the eval split only; other splits are scored single-match.
The chosen file travels with a sentence saying where it came from and what to pass instead, so a
mismatch error can tell the user which flag fixes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD_SUFFIX = "_source.json"
RECORD_FORMAT = "audioret-predictions"
MULTI_MATCH_SPLIT = "eval"
CORPUS_FILE_HINT = ("pass --annotations CORPUS/metadata_eval.csv (synthetic corpora write it at their root, "
                    "e.g. demo/corpus/metadata_eval.csv) or --data-path CORPUS")


@dataclass(frozen=True)
class CorpusRef:
    """A corpus split as a stage recorded it; ``via`` names it for messages ("the corpus of --store S")."""

    name: str | None
    data_path: Path | None
    split: str | None
    via: str


@dataclass(frozen=True)
class AnnotationChoice:
    """The ground-truth files to read, where they come from, and what to pass when they do not fit."""

    paths: list[Path]
    origin: str
    hint: str


def corpus_of_store(store: str | Path, split: str | None) -> CorpusRef:
    """The corpus a store was extracted from (``metadata.corpus``: name, resolved data path)."""
    from audioret.store import open_store

    corpus = open_store(store).metadata.get("corpus") or {}
    path = corpus.get("data_path")
    return CorpusRef(corpus.get("name"), Path(path) if path else None, split, f"the corpus of --store {store}")


def record_path(out: str | Path, name: str) -> Path:
    """Where ``predict`` records the source of ``<out>/<name>.csv`` and ``<name>_top<K>.csv``."""
    return Path(out) / f"{name}{RECORD_SUFFIX}"


def find_record(predictions: str | Path) -> Path | None:
    """The record beside a submission file: ``<name>_source.json`` for ``<name>[_top<K>].csv``
    (beside the link and beside the file it points to, for a linked submission file)."""
    for p in dict.fromkeys([Path(predictions), Path(predictions).resolve()]):
        for stem in dict.fromkeys([p.stem, re.sub(r"_top\d+$", "", p.stem)]):
            path = record_path(p.parent, stem)
            if path.is_file():
                return path
    return None


def write_record(out: str | Path, name: str, info: dict[str, Any]) -> Path:
    """Record what a set of submission files was predicted from (read back by :func:`corpus_of_predictions`)."""
    from audioret.config import atomic_write_text

    payload = {"format": RECORD_FORMAT, "version": 1, **info}
    return atomic_write_text(record_path(out, name), json.dumps(payload, indent=2, default=str) + "\n")


def corpus_of_predictions(predictions: str | Path) -> CorpusRef | None:
    """The corpus split a submission file was predicted on, from predict's record; None without one."""
    path = find_record(predictions)
    if path is None:
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable predict record ({err}); delete it or pass --annotations FILE") from None
    if rec.get("format") != RECORD_FORMAT:
        return None
    corpus = rec.get("corpus") or {}
    data_path = corpus.get("data_path")
    return CorpusRef(corpus.get("name"), Path(data_path) if data_path else None, rec.get("split"),
                     f"the corpus recorded in {path}")


def own_annotations(data_path: Path) -> Path:
    """The corpus's own multi-match file (where synthetic corpora write it)."""
    from audioret.corpora import multi_match_annotations_path

    return multi_match_annotations_path(data_path)


def choose_annotations(explicit: list[Path], corpus: CorpusRef | None) -> AnnotationChoice:
    """``--annotations`` if given; else the corpus's own multi-match file; else the shipped
    Clotho-eval annotations (unknown or Clotho corpus, eval split); else none."""
    if explicit:
        return AnnotationChoice(list(explicit), "--annotations " + " ".join(map(str, explicit)),
                                "Check that --annotations belong to the corpus and split that were ranked.")
    if corpus is not None and corpus.split not in (None, MULTI_MATCH_SPLIT):
        return AnnotationChoice([], f"no multi-match annotations for split {corpus.split!r} of {corpus.via} "
                                f"(they exist for '{MULTI_MATCH_SPLIT}')",
                                "Pass --annotations FILE (a Clotho captions CSV or a multi-match CSV of that split).")
    if corpus is not None and corpus.data_path is not None:
        own = own_annotations(corpus.data_path)
        if own.is_file():
            return AnnotationChoice([own], f"{own}, the multi-match annotations of {corpus.via}",
                                    "Pass --annotations FILE with the annotations of the split that was ranked.")
    if corpus is not None and corpus.name not in (None, "clotho"):
        return AnnotationChoice([], f"no multi-match annotations: {corpus.via} is {corpus.name!r}, not Clotho, "
                                "and has no metadata_eval.csv",
                                "Pass --annotations FILE (a multi-match query,audio_filenames CSV or a Clotho "
                                "captions CSV).")
    return AnnotationChoice([shipped_annotations()], _shipped_origin(corpus),
                            f"If the ranked split is not Clotho eval, {CORPUS_FILE_HINT}.")


def shipped_annotations() -> Path:
    from audioret.resources import CLOTHO_EVAL_MULTI_MATCH, resource_path

    return resource_path(CLOTHO_EVAL_MULTI_MATCH)


def _shipped_origin(corpus: CorpusRef | None) -> str:
    why = "no --annotations"
    if corpus is not None and corpus.data_path is not None:
        why += f"; {corpus.via} ({corpus.data_path}) has no metadata_eval.csv of its own"
    elif corpus is not None:
        why += f"; {corpus.via} is not named"
    else:
        why += ", and no record of the corpus these predictions come from"
    return f"the shipped Clotho-eval multi-match annotations ({why})"


__all__ = ["AnnotationChoice", "CorpusRef", "choose_annotations", "corpus_of_predictions", "corpus_of_store",
           "find_record", "record_path", "write_record"]
