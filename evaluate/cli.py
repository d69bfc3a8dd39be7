"""``audioret evaluate``: thin CLI over :func:`run`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from audioret.config import parse_config, to_dict
from audioret.evaluate.annotations import (AnnotationChoice, CorpusRef, choose_annotations, corpus_of_predictions,
                                           corpus_of_store)
from audioret.evaluate.config import EvaluateConfig

if TYPE_CHECKING:
    from audioret.evaluate.members import Embedded
    from audioret.evaluate.report import Evaluation

log = logging.getLogger(__name__)


def run(cfg: EvaluateConfig, *, show: bool = True) -> dict[str, float]:
    """Score ``cfg.predictions`` or a checkpoint (over a store or a corpus's raw audio); returns the metrics."""
    from audioret.evaluate import report

    model = _check_model_flags(cfg)
    choice = choose_ground_truth(cfg, model)
    annotations = choice.paths
    gt = report.load_ground_truth(annotations)
    gt.origin, gt.hint = choice.origin, choice.hint
    if model:
        return _run_model(cfg, gt, annotations, show=show)
    if not annotations:
        raise ValueError(f"{cfg.predictions}: nothing to score against: {choice.origin}. {choice.hint}")
    ev = report.evaluate_predictions(cfg.predictions, gt, ks=cfg.ks, skip_unmatched=cfg.skip_unmatched,
                                     chunk_size=cfg.chunk_size)
    if show:
        report.print_report(ev, title=f"{cfg.predictions.name}")
    if cfg.out is not None:
        path = report.write_report(cfg.out, ev, ks=cfg.ks, extra={
            "config": to_dict(cfg), "annotations": [str(p) for p in annotations], "ground_truth": choice.origin})
        log.info("wrote %s", path)
        from audioret.config import save_json

        save_json(cfg, Path(cfg.out) / "config.json")  # what --config reads (metrics.json embeds it too)
    return ev.metrics


def _check_model_flags(cfg: EvaluateConfig) -> bool:
    """True for the model path; a one-line error for an incomplete or mixed set of flags.
    With --predictions, --store or --data-path only name the corpus whose annotations score it.
    With --checkpoint, both may be given: heads read the store, finetune checkpoints the audio."""
    inputs = [x for x in (cfg.store, cfg.data_path) if x is not None]
    if cfg.checkpoint and (not inputs or cfg.predictions is not None):
        raise ValueError("evaluate: give either --predictions FILE, or --checkpoint CKPT [CKPT ...] with "
                         "--store STORE (heads) and/or --data-path DIR --corpus NAME (raw audio, heads or finetune)")
    if not cfg.checkpoint and cfg.predictions is None:
        raise ValueError("evaluate: give --predictions FILE (a score matrix or ranked CSV), or --checkpoint "
                         "CKPT [CKPT ...] with --store STORE or --data-path DIR [--corpus clotho] [--split eval]")
    if cfg.predictions is not None and len(inputs) > 1:
        raise ValueError("evaluate: --predictions takes at most one of --store STORE / --data-path DIR "
                         "(the corpus whose multi-match annotations score it)")
    if cfg.weights and not cfg.checkpoint:
        raise ValueError("evaluate: --weights weighs the --checkpoint models of an ensemble; give --checkpoint")
    return bool(cfg.checkpoint)


def choose_ground_truth(cfg: EvaluateConfig, model: bool) -> AnnotationChoice:
    """--annotations, else the ranked corpus's own multi-match file, else the shipped Clotho-eval one
    (see :mod:`audioret.evaluate.annotations`); logged, so a user sees which file scored the run."""
    corpus = None if cfg.annotations else _ranked_corpus(cfg, model)
    choice = choose_annotations(list(cfg.annotations), corpus)
    log.info("ground truth: %s", choice.origin)
    return choice


def _ranked_corpus(cfg: EvaluateConfig, model: bool) -> CorpusRef | None:
    """The corpus split that was ranked: --store's metadata, --data-path, or predict's record."""
    split = cfg.split if model else None
    if cfg.store is not None:
        return corpus_of_store(cfg.store, split)
    if cfg.data_path is not None:
        return CorpusRef(cfg.corpus, Path(cfg.data_path).resolve(), split, f"--data-path {cfg.data_path}")
    return corpus_of_predictions(cfg.predictions) if cfg.predictions is not None else None


def _run_model(cfg: EvaluateConfig, gt, annotations: list, *, show: bool) -> dict[str, float]:
    """One or more checkpoints (an ensemble: the weighted mean of their score matrices), each over a
    store split (heads) or a corpus split's raw audio (heads or finetune): single-match targets from
    the split itself, multi-match from ``gt``. Returns the ensemble's metrics (the model's, for one)."""
    from audioret.evaluate import members as MB
    from audioret.evaluate import report
    from audioret.evaluate.ensemble import normalized_weights

    weights = normalized_weights(cfg.weights, len(cfg.checkpoint))
    inputs = MB.SplitInputs(store=cfg.store, data_path=cfg.data_path, corpus=cfg.corpus, split=cfg.split,
                            captions_csv=cfg.captions_csv, beats_ckpt=cfg.beats_ckpt, text_model=cfg.text_model,
                            batch_size=cfg.batch_size, num_workers=cfg.num_workers, device=cfg.device)
    embedded = MB.embed_ensemble(cfg.checkpoint, inputs, MB.cache_root(cfg.out, cfg.embedding_cache))
    ref = embedded[0]
    kw = dict(caption_fnames=ref.caption_fnames, ks=cfg.ks, skip_unmatched=cfg.skip_unmatched,
              chunk_size=cfg.chunk_size, device=cfg.device)
    ev = report.evaluate_blocks(MB.ensemble_block(embedded, weights, cfg.device), ref.captions, ref.audio_fnames,
                                gt, **kw)
    extra = None
    if len(embedded) > 1:
        rows = [(name, report.evaluate_embeddings(e.text, e.audio, e.captions, e.audio_fnames, gt, **kw))
                for name, e in zip(row_names(embedded), embedded)]
        rows.append((ensemble_name(weights), ev))
        if show:
            report.print_comparison(rows)
        extra = {"members": [_member_record(e, w, r) for e, w, (_, r) in zip(embedded, weights, rows)]}
    elif show:
        report.print_report(ev)
    failures = {k: v for e in embedded for k, v in e.failures.items()}
    if cfg.out is not None:
        from audioret.config import save_json
        from audioret.evaluate.predict import write_skipped

        report.write_report(cfg.out, ev, ks=cfg.ks, extra=extra)
        write_skipped(Path(cfg.out) / "skipped_audio.csv", failures)
        save_json(cfg, Path(cfg.out) / "config.json")  # the resolved evaluate config, beside metrics.json
    elif failures:
        log.warning("%d audio files were left out (see the warnings above; --out lists them in "
                    "skipped_audio.csv)", len(failures))
    return ev.metrics


def _row_name(e: "Embedded") -> str:
    from audioret.evaluate.predict import default_name

    return f"{default_name(e.plan.checkpoint)} ({e.plan.input['input']})"  # short: 7 columns in 80 characters


def row_names(embedded: "list[Embedded]") -> list[str]:
    """One table row name per member; members whose short names collide (e.g. two runs/*/heads/heads.pt)
    are numbered by their --checkpoint position, so every row says which model it is."""
    names = [_row_name(e) for e in embedded]
    return [f"{n} #{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def ensemble_name(weights: list[float]) -> str:
    equal = max(weights) - min(weights) < 1e-12
    return "ensemble (mean)" if equal else "ensemble (weights " + "/".join(f"{w:.3g}" for w in weights) + ")"


def _member_record(e: "Embedded", weight: float, ev: "Evaluation") -> dict:
    return {"checkpoint": str(e.plan.checkpoint), "kind": e.plan.kind, "sha256": e.plan.sha256,
            "input": e.plan.input, "weight": weight, "embeddings_reused": e.cached, "metrics": ev.metrics}


def guarded_main(config_cls: type, run_fn, argv: list[str] | None, prog: str) -> int:
    """Parse flags into ``config_cls``, call ``run_fn(cfg)``; expected user errors exit 2 with one line."""
    from audioret.logs import setup_logging

    setup_logging()
    cfg = parse_config(config_cls, argv, prog=prog)
    from audioret.errors import WRITE_ONLY_FAULTS, OutputError, disk_fault, disk_fault_message, report_user_error, \
        user_error_types

    try:
        try:
            run_fn(cfg)
        except Exception as err:  # a full or read-only --out: one line (inputs are read here too: writes only)
            fault = disk_fault(err, WRITE_ONLY_FAULTS)
            out = getattr(cfg, "out", None)
            if fault is None or out is None:
                raise
            raise OutputError(disk_fault_message(fault, out, "--out")) from err
    except user_error_types() as e:
        return report_user_error(prog, e)
    return 0


def main(argv: list[str] | None = None) -> int:
    return guarded_main(EvaluateConfig, run, argv, "audioret evaluate")
