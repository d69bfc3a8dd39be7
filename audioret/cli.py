"""The one command: ``audioret <stage> ...``.

Stages are imported lazily, so ``audioret --help`` answers at once and a stage's heavy
imports (torch, transformers, zarr) are paid only by the stage that runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

# subcommand -> (module whose ``main(argv)`` runs it, one line for --help)
STAGES: dict[str, tuple[str, str]] = {
    "corpus": ("audioret.corpora.cli", "synthesise a corpus in the Clotho layout, or list a real one"),
    "extract": ("audioret.extract.cli", "run BEATs and the text encoder once over a corpus into a store"),
    "store": ("audioret.store.cli", "inspect (info) or check (verify) a feature store"),
    "train-heads": ("audioret.train_heads.cli", "train projection heads on cached store features"),
    "finetune": ("audioret.finetune.cli", "end-to-end baseline training on raw audio (d25_t6.train flags)"),
    "distill": ("audioret.distill.cli", "two-stage distillation with estimated correspondences"),
    "evaluate": ("audioret.evaluate.cli", "score a model or a submission file (mAP@16/10, R@1/5/10)"),
    "predict": ("audioret.evaluate.predict", "write challenge submission files for a folder of audio"),
    "export-seed": ("audioret.finetune.export_seed", "write a finetune checkpoint in the seed's (d25_t6) layout"),
    "index": ("audioret.search.index", "embed a collection once into a searchable index"),
    "search": ("audioret.search.query", "rank an index's clips for a text query"),
    "serve": ("audioret.search.serve", "a local web page to search an index and listen to the results"),
    "report": ("audioret.report.cli", "curves, run comparisons and per-query analysis as one report"),
    "demo": ("audioret.demo", "the whole pipeline on a synthetic corpus with tiny encoders"),
}


def available_stages() -> dict[str, tuple[str, str]]:
    """Stages whose module is installed (stages still being built are left out).

    Looks for the module's file without importing its package, so ``--help`` stays instant
    (importing a stage package pulls in torch).
    """
    out = {}
    for name, (module, text) in STAGES.items():
        package, _, leaf = module.rpartition(".")
        spec = importlib.util.find_spec(package)  # imports only the parents of ``package``
        if spec is None or not spec.submodule_search_locations:
            continue
        if any(Path(loc, f"{leaf}.py").is_file() or Path(loc, leaf, "__init__.py").is_file()
               for loc in spec.submodule_search_locations):
            out[name] = (module, text)
    return out


def _usage(stages: dict[str, tuple[str, str]]) -> str:
    width = max(len(n) for n in stages) if stages else 0
    lines = ["usage: audioret <stage> [options]   (audioret <stage> --help for each stage's flags)", "",
             "stages (data flows corpus -> extract -> store -> train-heads / finetune -> evaluate):"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in stages.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stages = available_stages()
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(stages))
        return 0
    if argv[0] == "--version":
        from audioret import __version__
        print(f"audioret {__version__}")
        return 0
    name = argv[0].replace("_", "-")
    if name not in stages:
        print(f"audioret: unknown stage {argv[0]!r}\n\n{_usage(stages)}", file=sys.stderr)
        return 2
    module = importlib.import_module(stages[name][0])
    result = module.main(argv[1:])
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
