"""``audioret demo``: the whole pipeline on one machine, in minutes, with nothing downloaded.

corpus (synthetic, Clotho layout) -> extract (tiny BEATs + tiny RoBERTa) -> store -> train heads
-> short fine-tune warm-started from heads -> evaluate (single- and multi-match) -> predictions.

Random tiny encoders show that the pipeline works end to end, not real retrieval quality: the
synthetic sounds are simple enough that heads learn them from random features. Give
``--beats-ckpt``, ``--text-model`` and ``--data-path`` (a folder holding CLOTHO_v2.1/) and the same
command runs the real thing. Each step leaves its artifact under ``--out`` with a completion record
(``<step>.json``, written last); a rerun reuses every step whose record matches its inputs. One line
per step says which one runs (``[3/9] train-heads: ...``) and how long it took.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from audioret.config import atomic_write_text, build_parser, config_from_namespace, option, to_dict
from audioret.errors import InputError, report_user_error, user_error_types
from audioret.logs import format_duration, setup_logging

log = logging.getLogger(__name__)

HEADLINE = ("mAP@16_multi", "mAP@10_multi", "mAP@10", "R@1", "R@5", "R@10")


@dataclass
class DemoConfig:
    """Run the whole pipeline (corpus -> extract -> heads -> fine-tune -> evaluate) and print one table."""

    STAGE = "demo"  # recorded in saved configs (audioret.config.to_dict); not a field

    out: Path = option(Path("demo"), "folder for every artifact (corpus, store, checkpoints, metrics, predictions)")
    data_path: Path | None = option(None, "real run: folder holding CLOTHO_v2.1/ (default: synthesise a corpus)")
    download: bool = option(False, "real run: let aac-datasets fetch Clotho v2.1 into --data-path if absent")
    beats_ckpt: Path | None = option(None, "real run: BEATs checkpoint file (default: the tiny random BEATs)")
    text_model: str = option("tiny-roberta", "text encoder: tiny-roberta (demo), roberta-large, or a HF folder")
    n_dev: int = option(480, "synthetic corpus: training clips (5 captions each)", unit="clips")
    n_val: int = option(60, "synthetic corpus: validation clips", unit="clips")
    n_eval: int = option(60, "synthetic corpus: evaluation clips", unit="clips")
    seed: int = option(0, "seed of the corpus and of every training run")
    head_epochs: int = option(15, "train-heads epochs", unit="epochs")
    finetune_epochs: int = option(15, "fine-tune epochs (0 skips the fine-tune)", unit="epochs")
    finetune_lr: float | None = option(None, "fine-tune peak learning rate; default 1e-3 for the tiny random "
                                             "RoBERTa, the baseline's 2e-5 with --beats-ckpt (real encoders)")
    batch_size: int = option(32, "training batch size", unit="captions")
    num_workers: int = option(1, "extraction decode workers", unit="processes")
    top_k: int = option(16, "length of the ranked predictions list", unit="audios")
    progress: bool = option(True, "let each step show its progress (bars on a terminal, plain lines in a log)")


# ------------------------------------------------------------------ pure helpers

def strip_prefix(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """{'test/mAP@10': x} -> {'mAP@10': x} for the keys with ``prefix``."""
    return {k[len(prefix):]: float(v) for k, v in metrics.items() if k.startswith(prefix)}


@dataclass
class Step:
    """One pipeline step: its completion record lives in ``<out>/<name>.json``."""

    name: str
    inputs: dict[str, Any]
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0
    reused: bool = False


# settings that change what a step shows, not what it computes: a rerun with another value reuses the step
PRESENTATION_KEYS = ("progress",)


def step_inputs(config: Any) -> dict[str, Any]:
    """A stage config as a step's inputs (its completion record), without presentation settings."""
    return {k: v for k, v in to_dict(config).items() if k not in PRESENTATION_KEYS}


@dataclass
class Announcer:
    """Numbers the steps and prints ``[i/n] stage: what ...`` when one starts and ``[i/n] stage: done
    in 12.3 s`` when it ends, so a slow machine shows which step runs (the steps' own progress comes
    in between); a reused step is one line."""

    total: int
    count: int = 0

    def next(self, what: str) -> str:
        self.count += 1
        return f"[{self.count}/{self.total}] {what}"

    @staticmethod
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)


def run_step(out: Path, name: str, inputs: dict[str, Any], fn: Callable[[], dict[str, Any]],
             announce: tuple[Announcer, str] | None = None) -> Step:
    """Run ``fn`` unless ``<out>/<name>.json`` records the same inputs; the record is written last.

    ``announce`` = (announcer, "stage: what") prints the step's start and end lines.
    """
    record = out / f"{name}.json"
    inputs = json.loads(json.dumps(inputs, default=str))
    tag = announce[0].next(announce[1]) if announce else ""
    step = _reuse(record, name, inputs)
    if step is not None:
        if announce:
            Announcer.say(f"{tag}: reused ({record})")
        return step
    if announce:
        Announcer.say(f"{tag} ...")
    t0 = time.perf_counter()
    result = fn()
    step = Step(name, inputs, json.loads(json.dumps(result, default=str)), time.perf_counter() - t0)
    atomic_write_text(record, json.dumps({"inputs": step.inputs, "result": step.result,
                                          "wall_s": step.wall_s}, indent=2))
    if announce:
        Announcer.say(f"{tag.split(':', 1)[0]}: done in {format_duration(step.wall_s)}")
    return step


def _reuse(record: Path, name: str, inputs: dict[str, Any]) -> Step | None:
    """The recorded step if ``record`` holds these inputs (a complete earlier run), else None."""
    if not record.is_file():
        return None
    try:
        saved = json.loads(record.read_text())
    except json.JSONDecodeError:
        return None
    recorded = {k: v for k, v in (saved.get("inputs") or {}).items() if k not in PRESENTATION_KEYS}
    if recorded != inputs:  # records written before progress left the inputs still match
        return None
    return Step(name, inputs, saved.get("result", {}), saved.get("wall_s", 0.0), reused=True)


# ------------------------------------------------------------------ the inputs, checked first

def check_inputs(cfg: DemoConfig) -> None:
    """Every real-run input, before ``--out`` is created: a wrong flag fails in seconds with one
    line naming it (the steps would otherwise fail minutes in, after synthesising or extracting)."""
    if cfg.download and cfg.data_path is None:
        raise InputError("--download needs --data-path (the folder to fetch Clotho v2.1 into); without "
                         "--data-path the demo synthesises its own corpus")
    if cfg.text_model != "tiny-roberta":
        from audioret.encoders.text import resolve_text_model

        resolve_text_model(cfg.text_model)
    if cfg.beats_ckpt is not None:
        from audioret.encoders.beats import load_beats

        load_beats(cfg.beats_ckpt)  # missing, unreadable or not an official BEATs file: one line
    if cfg.data_path is not None:
        from audioret.corpora import load_corpus

        for split in ("dev", "val", "eval"):
            load_corpus("clotho", cfg.data_path, split, download=cfg.download, durations=False)


# ------------------------------------------------------------------ the steps

def _corpus(cfg: DemoConfig) -> Path:
    if cfg.data_path is not None:
        return cfg.data_path
    return cfg.out / "corpus"


def step_corpus(cfg: DemoConfig, say: Announcer) -> Step:
    def make() -> dict[str, Any]:
        from audioret.corpora import synthesize

        root = synthesize(cfg.out / "corpus", n_dev=cfg.n_dev, n_val=cfg.n_val, n_eval=cfg.n_eval,
                          seed=cfg.seed, long_fraction=0.1)
        return {"root": str(root)}

    if cfg.data_path is not None:
        Announcer.say(f"{say.next('corpus')}: Clotho v2.1 in {cfg.data_path} (checked)")
        return Step("corpus", {"data_path": str(cfg.data_path)}, {"root": str(cfg.data_path)}, reused=True)
    what = f"corpus: synthesise {cfg.n_dev}/{cfg.n_val}/{cfg.n_eval} dev/val/eval clips in {cfg.out / 'corpus'}"
    return run_step(cfg.out, "corpus", {"n": [cfg.n_dev, cfg.n_val, cfg.n_eval], "seed": cfg.seed}, make,
                    (say, what))


def extract_config(cfg: DemoConfig) -> Any:
    from audioret.extract.config import ExtractConfig

    return ExtractConfig(corpus="clotho", data_path=_corpus(cfg), store=cfg.out / "features.zarr",
                         audio_encoder="beats" if cfg.beats_ckpt else "tiny-beats", beats_ckpt=cfg.beats_ckpt,
                         text_model=cfg.text_model, num_workers=cfg.num_workers, download=cfg.download,
                         progress=cfg.progress)


def step_extract(cfg: DemoConfig, say: Announcer) -> Step:
    def make() -> dict[str, Any]:
        from audioret.extract.pipeline import run

        result = run(extract_config(cfg))
        if result.num_failed:
            log.warning("extract: %d item(s) failed (recorded in the store)", result.num_failed)
        return {"store": str(cfg.out / "features.zarr"), "failed": result.num_failed}

    audio = "BEATs" if cfg.beats_ckpt else "tiny random BEATs"
    what = f"extract: {audio} + {cfg.text_model} -> {cfg.out / 'features.zarr'}"
    return run_step(cfg.out, "extract", step_inputs(extract_config(cfg)), make, (say, what))


def heads_config(cfg: DemoConfig, name: str, **overrides: Any) -> Any:
    from audioret.train_heads.config import TrainHeadsConfig

    return TrainHeadsConfig(store=cfg.out / "features.zarr", out=cfg.out / name, max_epochs=cfg.head_epochs,
                            batch_size=cfg.batch_size, seed=cfg.seed, progress=cfg.progress, logger="csv",
                            accelerator="auto", **overrides)


def step_heads(cfg: DemoConfig, name: str, say: Announcer, what: str, **overrides: Any) -> Step:
    def make() -> dict[str, Any]:
        from audioret.train_heads.run import run

        results = run(heads_config(cfg, name, **overrides))
        main, floor = results[0], [r for r in results if r.checkpoint is None]
        out = {"checkpoint": str(main.checkpoint), "test": strip_prefix(main.metrics, "test/")}
        if floor:
            out["floor"] = strip_prefix(floor[0].metrics, "test/")
        return out

    what = f"train-heads: {what}, {cfg.head_epochs} epochs -> {cfg.out / name}"
    return run_step(cfg.out, name, step_inputs(heads_config(cfg, name, **overrides)), make, (say, what))


def finetune_config(cfg: DemoConfig, init_heads: Path) -> Any:
    from audioret.finetune.config import FinetuneConfig

    real = cfg.beats_ckpt is not None
    names = {f.name for f in dataclasses.fields(FinetuneConfig)}
    # a stage being renamed or gaining flags (--num-workers, --progress) must not break the demo
    extra: dict[str, Any] = {"num_workers" if "num_workers" in names else "n_workers":
                             cfg.num_workers if real else 0}
    if "progress" in names:
        extra["progress"] = cfg.progress
    if "logger" in names:
        extra["logger"] = "csv"  # logs/metrics.csv: the report's curves
    return FinetuneConfig(data_path=_corpus(cfg), out=cfg.out / "finetune", seed=max(cfg.seed, 1),
                          batch_size=cfg.batch_size, batch_size_eval=64, max_epochs=cfg.finetune_epochs,
                          warmup_epochs=0.5, rampdown_epochs=max(cfg.finetune_epochs - 0.5, 0.5),
                          max_lr=cfg.finetune_lr or (2e-5 if real else 1e-3), min_lr=1e-7,
                          precision="16-mixed" if real else "32-true",
                          audio_encoder="beats" if real else "tiny-beats", beats_ckpt_path=cfg.beats_ckpt,
                          text_model=cfg.text_model, init_heads=init_heads,
                          audio_store=cfg.out / "features.zarr", logging=True, download=cfg.download,
                          multi_match=_annotations(cfg), **extra)


def _annotations(cfg: DemoConfig) -> Path | None:
    if cfg.data_path is not None:
        return None  # finetune defaults to the shipped Clotho-eval annotations
    from audioret.corpora import multi_match_annotations_path

    return multi_match_annotations_path(cfg.out / "corpus")


def step_finetune(cfg: DemoConfig, init_heads: Path, say: Announcer) -> Step:
    def make() -> dict[str, Any]:
        from audioret.finetune.run import run

        result = run(finetune_config(cfg, init_heads))
        return {"test_last": result.get("test_last", {}), "test_best": result.get("test_best", {}),
                "best_checkpoint": result.get("best_checkpoint"), "out": result.get("out")}

    what = f"finetune: {cfg.finetune_epochs} epochs end to end from the seed-shape heads -> {cfg.out / 'finetune'}"
    return run_step(cfg.out, "finetune", step_inputs(finetune_config(cfg, init_heads)), make, (say, what))


def step_evaluate(cfg: DemoConfig, name: str, checkpoint: Path, say: Announcer) -> Step:
    """Score a heads checkpoint on the store's eval split through the evaluate stage."""
    def make() -> dict[str, Any]:
        from audioret.evaluate.cli import run as evaluate
        from audioret.evaluate.config import EvaluateConfig

        ann = _annotations(cfg)
        ecfg = EvaluateConfig(checkpoint=checkpoint, store=cfg.out / "features.zarr", split="eval",
                              annotations=[ann] if ann else [], out=cfg.out / name)
        return {"metrics": evaluate(ecfg, show=False)}

    what = f"evaluate: {checkpoint} on the eval split -> {cfg.out / name}"
    return run_step(cfg.out, name, {"checkpoint": str(checkpoint)}, make, (say, what))


def step_predict(cfg: DemoConfig, checkpoint: Path, say: Announcer) -> Step:
    def make() -> dict[str, Any]:
        from audioret.evaluate.config import PredictConfig
        from audioret.evaluate.predict import run as predict

        paths = predict(PredictConfig(checkpoint=checkpoint, store=cfg.out / "features.zarr", split="eval",
                                      out=cfg.out / "predictions", name="demo", top_k=cfg.top_k))
        return {"files": [str(p) for p in paths]}

    what = f"predict: top-{cfg.top_k} lists for the eval captions -> {cfg.out / 'predictions'}"
    return run_step(cfg.out, "predict", {"checkpoint": str(checkpoint), "top_k": cfg.top_k}, make, (say, what))


def eval_relevant_counts(cfg: DemoConfig) -> tuple[int, list[int]]:
    """(number of eval audios, relevant audios per annotated query) for the chance row."""
    from audioret.evaluate.io import read_annotations
    from audioret.store import open_store

    num_audios = len(open_store(cfg.out / "features.zarr").audio("eval").ids)
    ann = _annotations(cfg)
    if ann is None:
        from audioret.resources import CLOTHO_EVAL_MULTI_MATCH, resource_path

        ann = resource_path(CLOTHO_EVAL_MULTI_MATCH)
    return num_audios, [len(a.files) for a in read_annotations(ann)]


def step_report(cfg: DemoConfig, say: Announcer) -> Path:
    """The report of every run under ``--out`` (and of summary.json's table); always redrawn (seconds)."""
    from audioret.report.build import run as report
    from audioret.report.config import ReportConfig

    out = cfg.out / "report"
    tag = say.next(f"report: training curves, the models compared, per-query analysis -> {out / 'report.html'}")
    Announcer.say(f"{tag} ...")
    t0 = time.perf_counter()
    page = report(ReportConfig(runs=[cfg.out], out=out, title="audioret demo"))
    Announcer.say(f"{tag.split(':', 1)[0]}: done in {format_duration(time.perf_counter() - t0)}")
    return page


# ------------------------------------------------------------------ run and report

def run(cfg: DemoConfig) -> dict[str, Any]:
    """Check the inputs, then every step (reusing complete ones), then the summary table.

    ``--out`` is created only after the inputs pass; if this run created it and fails, the empty
    folders it made are removed (files, and anything that existed before, are never touched).
    """
    check_inputs(cfg)
    created = not cfg.out.exists()
    cfg.out.mkdir(parents=True, exist_ok=True)
    try:
        return _run_steps(cfg)
    except BaseException:
        if created:
            remove_empty_dirs(cfg.out)
        raise


def remove_empty_dirs(root: Path) -> None:
    """Remove ``root`` and its subfolders bottom-up where they hold no file (a rerun reuses the rest).
    Best effort: it runs while an error propagates, and must never replace that error with its own."""
    try:
        folders = [p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()]
        for folder in [*sorted(folders, key=lambda p: len(p.parts), reverse=True), root]:
            try:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            except OSError:
                continue
    except OSError:
        pass


def _run_steps(cfg: DemoConfig) -> dict[str, Any]:
    say = Announcer(total=(8 if cfg.finetune_epochs > 0 else 5) + 1)  # + 1: the report
    steps = [step_corpus(cfg, say), step_extract(cfg, say)]
    heads = step_heads(cfg, "heads", say, "heads (train-heads defaults)")
    ckpt = Path(heads.result["checkpoint"])
    evaluation = step_evaluate(cfg, "evaluation", ckpt, say)
    steps += [heads, evaluation, step_predict(cfg, ckpt, say)]
    models: dict[str, dict[str, float]] = {"heads": evaluation.result["metrics"]}
    if "floor" in heads.result:
        models["ridge floor"] = heads.result["floor"]
    if cfg.finetune_epochs > 0:
        seed_heads = step_heads(cfg, "heads_seed_shape", say, "seed-shape heads (segment mean, <s>, linear)",
                                audio_pooling="segment-mean", text_pooling="first", projection="linear",
                                floor="none")
        seed_eval = step_evaluate(cfg, "evaluation_seed_shape", Path(seed_heads.result["checkpoint"]), say)
        ft = step_finetune(cfg, Path(seed_heads.result["checkpoint"]), say)
        steps += [seed_heads, seed_eval, ft]
        models["heads (seed shape)"] = seed_eval.result["metrics"]
        models["fine-tune"] = ft.result["test_last"]
    num_audios, counts = eval_relevant_counts(cfg)
    from audioret.evaluate.metrics import chance_metrics

    models["chance"] = chance_metrics(num_audios, counts, seed=cfg.seed)
    summary = {"config": to_dict(cfg), "steps": {s.name: {"wall_s": s.wall_s, "reused": s.reused} for s in steps},
               "models": models, "eval_audios": num_audios}
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    summary["report"] = str(step_report(cfg, say))
    print_summary(cfg, steps, models)
    Announcer.say(f"report: {summary['report']} (curves, the models compared, per-query analysis; open it in a "
                  "browser)")
    from audioret.search.demo import demo_index
    from audioret.search.deps import MissingExtra

    try:
        Announcer.say(demo_index(ckpt, cfg.out / "features.zarr", "eval", cfg.out / "search_index"))
    except MissingExtra as err:
        Announcer.say(f"search: skipped ({err})")
    return summary


def print_summary(cfg: DemoConfig, steps: list[Step], models: dict[str, dict[str, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 100)
    timing = Table(title="audioret demo: steps")
    timing.add_column("step")
    timing.add_column("wall time", justify="right")
    for s in steps:
        timing.add_row(s.name, "reused" if s.reused else f"{s.wall_s:.1f} s")
    console.print(timing)
    table = Table(title="Clotho-layout eval split (multi-match = the corpus's multi-match annotations)")
    table.add_column("model")
    for k in HEADLINE:
        table.add_column(k, justify="right")
    for name, m in models.items():
        table.add_row(name, *[f"{100 * m[k]:.2f}" if k in m else "-" for k in HEADLINE])
    console.print(table)
    console.print("heads: train-heads defaults (mean+std audio, mean text, MLP); ridge floor: closed-form "
                  "(scikit-learn); heads (seed shape): segment-mean audio, <s> token, linear, as the baseline; "
                  "fine-tune: end to end from the seed-shape heads (frozen BEATs features from the store); "
                  "chance: a random ranking of the same eval split. Values in %.")
    if cfg.beats_ckpt is None:
        console.print("[yellow]Random tiny encoders: this shows that the pipeline works end to end, not real "
                      "retrieval quality. For real numbers pass --beats-ckpt, --text-model roberta-large and "
                      "--data-path with Clotho v2.1 (see README).[/yellow]")
    console.print(f"artifacts under {cfg.out}/: corpus/, features.zarr, heads/, finetune/, evaluation/metrics.json, "
                  "predictions/demo_top*.csv, summary.json, report/report.html")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(DemoConfig, "audioret demo", __doc__)
    cfg = config_from_namespace(DemoConfig, parser.parse_args(argv))
    # the stages' plain progress lines (off a terminal) are INFO records: shown with --progress
    setup_logging(logging.INFO if cfg.progress else logging.WARNING)
    try:
        run(cfg)
    except user_error_types() as err:  # a wrong flag, path or file: one line naming it, exit 2
        return report_user_error("audioret demo", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
