"""``audioret demo``: the whole pipeline on one machine, in minutes, with nothing downloaded.

corpus (synthetic, Clotho layout) -> extract (tiny BEATs + tiny RoBERTa) -> store -> train heads
-> short fine-tune warm-started from heads -> evaluate (single- and multi-match) -> predictions.

Random tiny encoders show that the pipeline works end to end, not real retrieval quality: the
synthetic sounds are simple enough that heads learn them from random features. Give
``--beats-ckpt``, ``--text-model`` and ``--data-path`` (a folder holding CLOTHO_v2.1/) and the same
command runs the real thing. Each step leaves its artifact under ``--out`` with a completion record
(``<step>.json``, written last); a rerun reuses every step whose record matches its inputs.
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

log = logging.getLogger(__name__)

HEADLINE = ("mAP@16_multi", "mAP@10_multi", "mAP@10", "R@1", "R@5", "R@10")


@dataclass
class DemoConfig:
    """Run the whole pipeline (corpus -> extract -> heads -> fine-tune -> evaluate) and print one table."""

    out: Path = option(Path("demo"), "folder for every artifact (corpus, store, checkpoints, metrics, predictions)")
    data_path: Path | None = option(None, "real run: folder holding CLOTHO_v2.1/ (default: synthesise a corpus)")
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


def run_step(out: Path, name: str, inputs: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> Step:
    """Run ``fn`` unless ``<out>/<name>.json`` records the same inputs; the record is written last."""
    record = out / f"{name}.json"
    inputs = json.loads(json.dumps(inputs, default=str))
    if record.is_file():
        try:
            saved = json.loads(record.read_text())
        except json.JSONDecodeError:
            saved = {}
        if saved.get("inputs") == inputs:
            return Step(name, inputs, saved.get("result", {}), saved.get("wall_s", 0.0), reused=True)
    t0 = time.perf_counter()
    result = fn()
    step = Step(name, inputs, json.loads(json.dumps(result, default=str)), time.perf_counter() - t0)
    atomic_write_text(record, json.dumps({"inputs": step.inputs, "result": step.result, "wall_s": step.wall_s},
                                         indent=2))
    return step


# ------------------------------------------------------------------ the steps

def _corpus(cfg: DemoConfig) -> Path:
    if cfg.data_path is not None:
        return cfg.data_path
    return cfg.out / "corpus"


def step_corpus(cfg: DemoConfig) -> Step:
    def make() -> dict[str, Any]:
        from audioret.corpora import synthesize

        root = synthesize(cfg.out / "corpus", n_dev=cfg.n_dev, n_val=cfg.n_val, n_eval=cfg.n_eval,
                          seed=cfg.seed, long_fraction=0.1)
        return {"root": str(root)}

    if cfg.data_path is not None:
        return Step("corpus", {"data_path": str(cfg.data_path)}, {"root": str(cfg.data_path)}, reused=True)
    return run_step(cfg.out, "corpus", {"n": [cfg.n_dev, cfg.n_val, cfg.n_eval], "seed": cfg.seed}, make)


def extract_config(cfg: DemoConfig) -> Any:
    from audioret.extract.config import ExtractConfig

    return ExtractConfig(corpus="clotho", data_path=_corpus(cfg), store=cfg.out / "features.zarr",
                         audio_encoder="beats" if cfg.beats_ckpt else "tiny-beats", beats_ckpt=cfg.beats_ckpt,
                         text_model=cfg.text_model, num_workers=cfg.num_workers, progress=False)


def step_extract(cfg: DemoConfig) -> Step:
    def make() -> dict[str, Any]:
        from audioret.extract.pipeline import run

        result = run(extract_config(cfg))
        if result.num_failed:
            log.warning("extract: %d item(s) failed (recorded in the store)", result.num_failed)
        return {"store": str(cfg.out / "features.zarr"), "failed": result.num_failed}

    return run_step(cfg.out, "extract", to_dict(extract_config(cfg)), make)


def heads_config(cfg: DemoConfig, name: str, **overrides: Any) -> Any:
    from audioret.train_heads.config import TrainHeadsConfig

    return TrainHeadsConfig(store=cfg.out / "features.zarr", out=cfg.out / name, max_epochs=cfg.head_epochs,
                            batch_size=cfg.batch_size, seed=cfg.seed, progress=False, logger="csv",
                            accelerator="auto", **overrides)


def step_heads(cfg: DemoConfig, name: str, **overrides: Any) -> Step:
    def make() -> dict[str, Any]:
        from audioret.train_heads.run import run

        results = run(heads_config(cfg, name, **overrides))
        main, floor = results[0], [r for r in results if r.checkpoint is None]
        out = {"checkpoint": str(main.checkpoint), "test": strip_prefix(main.metrics, "test/")}
        if floor:
            out["floor"] = strip_prefix(floor[0].metrics, "test/")
        return out

    return run_step(cfg.out, name, to_dict(heads_config(cfg, name, **overrides)), make)


def finetune_config(cfg: DemoConfig, init_heads: Path) -> Any:
    from audioret.finetune.config import FinetuneConfig

    real = cfg.beats_ckpt is not None
    return FinetuneConfig(data_path=_corpus(cfg), out=cfg.out / "finetune", seed=max(cfg.seed, 1),
                          batch_size=cfg.batch_size, batch_size_eval=64, max_epochs=cfg.finetune_epochs,
                          warmup_epochs=0.5, rampdown_epochs=max(cfg.finetune_epochs - 0.5, 0.5),
                          max_lr=cfg.finetune_lr or (2e-5 if real else 1e-3), min_lr=1e-7,
                          n_workers=cfg.num_workers if real else 0, precision="16-mixed" if real else "32-true",
                          audio_encoder="beats" if real else "tiny-beats", beats_ckpt_path=cfg.beats_ckpt,
                          text_model=cfg.text_model, init_heads=init_heads,
                          audio_store=cfg.out / "features.zarr", logging=False,
                          multi_match=_annotations(cfg))


def _annotations(cfg: DemoConfig) -> Path | None:
    if cfg.data_path is not None:
        return None  # finetune defaults to the shipped Clotho-eval annotations
    from audioret.corpora import multi_match_annotations_path

    return multi_match_annotations_path(cfg.out / "corpus")


def step_finetune(cfg: DemoConfig, init_heads: Path) -> Step:
    def make() -> dict[str, Any]:
        from audioret.finetune.run import run

        result = run(finetune_config(cfg, init_heads))
        return {"test_last": result.get("test_last", {}), "test_best": result.get("test_best", {}),
                "best_checkpoint": result.get("best_checkpoint"), "out": result.get("out")}

    return run_step(cfg.out, "finetune", to_dict(finetune_config(cfg, init_heads)), make)


def step_evaluate(cfg: DemoConfig, name: str, checkpoint: Path) -> Step:
    """Score a heads checkpoint on the store's eval split through the evaluate stage."""
    def make() -> dict[str, Any]:
        from audioret.evaluate.cli import run as evaluate
        from audioret.evaluate.config import EvaluateConfig

        ann = _annotations(cfg)
        ecfg = EvaluateConfig(checkpoint=checkpoint, store=cfg.out / "features.zarr", split="eval",
                              annotations=[ann] if ann else [], out=cfg.out / name)
        return {"metrics": evaluate(ecfg, show=False)}

    return run_step(cfg.out, name, {"checkpoint": str(checkpoint)}, make)


def step_predict(cfg: DemoConfig, checkpoint: Path) -> Step:
    def make() -> dict[str, Any]:
        from audioret.evaluate.config import PredictConfig
        from audioret.evaluate.predict import run as predict

        paths = predict(PredictConfig(checkpoint=checkpoint, store=cfg.out / "features.zarr", split="eval",
                                      out=cfg.out / "predictions", name="demo", top_k=cfg.top_k))
        return {"files": [str(p) for p in paths]}

    return run_step(cfg.out, "predict", {"checkpoint": str(checkpoint), "top_k": cfg.top_k}, make)


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


# ------------------------------------------------------------------ run and report

def run(cfg: DemoConfig) -> dict[str, Any]:
    """Every step (reusing complete ones), then the summary table; returns the summary dict."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    steps = [step_corpus(cfg), step_extract(cfg)]
    heads = step_heads(cfg, "heads")
    ckpt = Path(heads.result["checkpoint"])
    evaluation = step_evaluate(cfg, "evaluation", ckpt)
    steps += [heads, evaluation, step_predict(cfg, ckpt)]
    models: dict[str, dict[str, float]] = {"heads": evaluation.result["metrics"]}
    if "floor" in heads.result:
        models["ridge floor"] = heads.result["floor"]
    if cfg.finetune_epochs > 0:
        seed_heads = step_heads(cfg, "heads_seed_shape", audio_pooling="segment-mean", text_pooling="first",
                                projection="linear", floor="none")
        seed_eval = step_evaluate(cfg, "evaluation_seed_shape", Path(seed_heads.result["checkpoint"]))
        ft = step_finetune(cfg, Path(seed_heads.result["checkpoint"]))
        steps += [seed_heads, seed_eval, ft]
        models["heads (seed shape)"] = seed_eval.result["metrics"]
        models["fine-tune"] = ft.result["test_last"]
    num_audios, counts = eval_relevant_counts(cfg)
    from audioret.evaluate.metrics import chance_metrics

    models["chance"] = chance_metrics(num_audios, counts, seed=cfg.seed)
    summary = {"config": to_dict(cfg), "steps": {s.name: {"wall_s": s.wall_s, "reused": s.reused} for s in steps},
               "models": models, "eval_audios": num_audios}
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(cfg, steps, models)
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
                  "predictions/demo_top*.csv, summary.json")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(DemoConfig, "audioret demo", __doc__)
    cfg = config_from_namespace(DemoConfig, parser.parse_args(argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
