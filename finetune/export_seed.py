"""``audioret export-seed CKPT OUT.ckpt``: a finetune checkpoint in the seed's (d25_t6 BEATs copy) layout.

The seed loads checkpoints with ``AudioRetrievalModel.load_from_checkpoint(path)``: Lightning builds
the module from ``hyper_parameters`` (its argparse dict: it reads ``beats_ckpt_path``, ``roberta_base``,
``initial_tau``, ``tau_trainable``, ``compile``, the schedule values), then loads ``state_dict`` with
strict keys. audioret's finetune checkpoints keep the same model keys under Lightning's ``model.``
prefix, may hold ``_orig_mod.`` (torch.compile) and store BEATs' shared relative-position table once.
This stage rewrites the keys (no prefix, no ``_orig_mod.``, the shared table repeated for every layer
as the reference BEATs lists it) and the hyper-parameters (the seed's names and defaults, values taken
from the run where the names agree). A PaSST model (``--audio-encoder passt``) is written for the
official baseline's module instead: same keys (the release layout, AudioSet heads included), its
hyper-parameters (with ``s_patchout_t``/``s_patchout_f``, without ``precision``/``beats_ckpt_path``). Weights are copied bit for bit, so the seed's embeddings equal
audioret's (tests/test_export_seed.py). The input loads weights-only (models/checkpoint.py); the
output holds only tensors, numbers, strings and None, so it loads weights-only too.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from audioret.config import build_parser as stage_parser
from audioret.config import config_from_namespace, option
from audioret.models.checkpoint import load_checked
from audioret.models.dual_encoder import BEATS_PREFIX, COMPILE_PREFIX, strip_lightning_prefix

log = logging.getLogger(__name__)
PROG = "audioret export-seed"

# The seed's hyper-parameters: d25_t6.train's argparse dict (BEATs copy: no patchout flags, plus
# --precision and --beats_ckpt_path), with its defaults (baseline.md section 10.1).
SEED_HPARAMS: dict[str, Any] = {
    "devices": "auto", "n_workers": 16, "compile": False, "logging": True, "resume_ckpt_path": None,
    "load_ckpt_path": None, "seed": 21208, "batch_size": 64, "batch_size_eval": 64, "max_epochs": 20,
    "warmup_epochs": 1, "rampdown_epochs": 15, "max_lr": 2e-5, "min_lr": 1e-7, "initial_tau": 0.05,
    "tau_trainable": False, "roberta_base": False, "wavcaps": False, "audiocaps": False,
    "ablate_clean_setup": True, "data_path": "data", "checkpoints_path": "checkpoints", "train": True,
    "test": True, "precision": "16-mixed", "beats_ckpt_path": None,
}
# The official baseline (PaSST): the same options without --precision/--beats_ckpt_path, with patchout.
OFFICIAL_HPARAMS: dict[str, Any] = {
    **{k: v for k, v in SEED_HPARAMS.items() if k not in ("precision", "beats_ckpt_path")},
    "s_patchout_t": 15, "s_patchout_f": 2}
# not carried over: a fresh checkpoint resumes nothing
NOT_CARRIED = ("resume_ckpt_path", "load_ckpt_path")
SEED_TEXT_DIMS = {1024: False, 768: True}  # text projection input -> roberta_base
SEED_AUDIO_ENCODERS = (None, "beats", "tiny-beats", "passt", "tiny-passt")
PASST_ENCODERS = ("passt", "tiny-passt")
_LAYER = re.compile(re.escape(BEATS_PREFIX) + r"encoder\.layers\.(\d+)\.")
_BIAS = "self_attn.relative_attention_bias.weight"


@dataclass
class ExportSeedConfig:
    """Write a finetune checkpoint as the seed's AudioRetrievalModel checkpoint."""

    STAGE = "export-seed"  # recorded in saved configs (audioret.config.to_dict); not a field

    checkpoint: Path = option(help="audioret finetune checkpoint (e.g. <run>/checkpoints/last.ckpt; a seed "
                                   "checkpoint is accepted too)", positional=True, metavar="CKPT")
    out: Path = option(help="the seed-format .ckpt to write", positional=True, metavar="OUT")
    beats_ckpt_path: Path | None = option(None, "BEATs file the seed rebuilds its encoder from before loading the "
                                                "weights (recorded as its --beats_ckpt_path; default: the run's)")
    overwrite: bool = option(False, "replace an existing OUT")


def seed_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DualEncoder / finetune / compiled keys -> the seed module's keys (BEATs' shared table repeated)."""
    out = {k.replace(COMPILE_PREFIX, ""): v for k, v in strip_lightning_prefix(state).items()}
    layers = sorted({int(m.group(1)) for k in out if (m := _LAYER.match(k))})
    first = f"{BEATS_PREFIX}encoder.layers.0.{_BIAS}"
    if first in out:
        for i in layers[1:]:
            out.setdefault(f"{BEATS_PREFIX}encoder.layers.{i}.{_BIAS}", out[first])
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _plain_value(value: Any) -> Any:
    """Checkpoint-safe value (weights_only loads): paths as strings, integral floats of epochs kept."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def is_passt(hp: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> bool:
    """The official baseline's PaSST tower (recognised by its time positional embedding, as on load)."""
    return f"{BEATS_PREFIX}time_new_pos_embed" in state


def seed_hparams(hp: Mapping[str, Any], state: Mapping[str, torch.Tensor],
                 beats_ckpt_path: Path | None, source: Path) -> dict[str, Any]:
    """The seed's argparse dict (the official baseline's for PaSST): its names and defaults, values from
    ``hp`` where the names agree."""
    passt = is_passt(hp, state)
    defaults = OFFICIAL_HPARAMS if passt else SEED_HPARAMS
    out = dict(defaults)
    for key in defaults:
        if key in hp and key not in NOT_CARRIED:
            out[key] = _plain_value(hp[key])
    for key in ("warmup_epochs", "rampdown_epochs"):  # the seed's flags are ints
        if isinstance(out[key], float) and out[key].is_integer():
            out[key] = int(out[key])
    text_in = int(state["text_projection.weight"].shape[1])
    if text_in in SEED_TEXT_DIMS:
        out["roberta_base"] = SEED_TEXT_DIMS[text_in]
    else:  # a test or custom text model: the seed's strict load fails unless its build is adapted too
        log.warning("%s: text projection takes %d-d input; the seed builds roberta-large (1024) or roberta-base "
                    "(768)", source, text_in)
    if passt:
        return out  # the official module builds PaSST from hear21passt, no file
    if beats_ckpt_path is not None:
        out["beats_ckpt_path"] = str(beats_ckpt_path)
    if not out["beats_ckpt_path"]:
        raise ValueError(f"{source}: the run records no BEATs file, and the seed rebuilds BEATs from one before "
                         "loading the weights: pass --beats-ckpt-path (the file as the seed's machine sees it)")
    return out


def check_exportable(hp: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Refuse models the seed cannot build; warn where it builds them but behaves differently."""
    name = hp.get("audio_encoder")
    if name not in SEED_AUDIO_ENCODERS:
        raise ValueError(f"{source}: audio encoder {name!r}: export-seed writes the seed's BEATs layout or the "
                         f"official PaSST one (audio encoders {', '.join(str(n) for n in SEED_AUDIO_ENCODERS[1:])})")
    if name is not None and (name in PASST_ENCODERS) != is_passt(hp, state):
        raise ValueError(f"{source}: hyper_parameters say audio_encoder={name!r} but the weights are "
                         f"{'a PaSST' if is_passt(hp, state) else 'not a PaSST'} tower; the checkpoint was edited "
                         "or mixed up")
    if not any(k.startswith(BEATS_PREFIX) for k in state):
        raise ValueError(f"{source}: no audio encoder weights under {BEATS_PREFIX!r}; not a finetune checkpoint "
                         "of the seed's layout")
    if int(state["audio_projection.weight"].shape[0]) != 1024:
        raise ValueError(f"{source}: embedding size {int(state['audio_projection.weight'].shape[0])}; the seed's "
                         "projections are 1024-d (--embed-dim 1024)")
    text = hp.get("text_model")
    if text and Path(str(text)).name not in ("roberta-large", "roberta-base"):
        log.warning("%s: text model %r; the seed builds roberta-large/roberta-base by name, so its strict load "
                    "succeeds only if this model has their architecture", source, text)
    for key, seed_value in (("max_seconds", 30.0), ("text_dropout", 0.2)):
        if key in hp and hp[key] is not None and float(hp[key]) != seed_value:
            log.warning("%s: %s=%s; the seed always uses %s", source, key, hp[key], seed_value)


def run(cfg: ExportSeedConfig) -> Path:
    """Read, convert and write; returns OUT."""
    src, out = Path(cfg.checkpoint), Path(cfg.out)
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(f"{out}: exists; pass --overwrite to replace it")
    ckpt = load_checked(src, "a Lightning .ckpt written by `audioret finetune`, e.g. <run>/checkpoints/last.ckpt")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{src}: not a Lightning checkpoint (no 'state_dict'); heads checkpoints of "
                         "train-heads have no seed layout")
    hp = dict(ckpt.get("hyper_parameters") or {})
    state = seed_state_dict(ckpt["state_dict"])
    check_exportable(hp, state, src)
    import lightning

    seed_ckpt = {
        "epoch": int(ckpt.get("epoch") or 0),
        "global_step": int(ckpt.get("global_step") or 0),
        "pytorch-lightning_version": str(ckpt.get("pytorch-lightning_version") or lightning.__version__),
        "state_dict": state,
        "hyper_parameters": seed_hparams(hp, state, cfg.beats_ckpt_path, src),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    try:
        torch.save(seed_ckpt, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s: %d tensors in the %s layout (roberta_base=%s)", out, len(state),
             "official PaSST baseline's" if is_passt(hp, state) else "seed's BEATs", seed_ckpt["hyper_parameters"]["roberta_base"])
    return out


def build_parser():  # noqa: ANN201
    return stage_parser(ExportSeedConfig, PROG)  # CKPT OUT positional, --config, --print-config


def main(argv: list[str] | None = None) -> int:
    from audioret.errors import OutputError, disk_fault, disk_fault_message, report_user_error, user_error_types
    from audioret.logs import setup_logging

    setup_logging()
    ns = build_parser().parse_args(argv)
    cfg = config_from_namespace(ExportSeedConfig, ns)
    try:
        try:
            path = run(cfg)
        except Exception as err:  # a full or read-only disk: one line naming OUT
            fault = disk_fault(err)
            if fault is None:
                raise
            raise OutputError(disk_fault_message(fault, cfg.out, "OUT")) from err
    except (FileExistsError, *user_error_types()) as err:
        return report_user_error(PROG, err)
    print(f"wrote {path} (load with the seed: AudioRetrievalModel.load_from_checkpoint)", file=sys.stdout)
    return 0


__all__ = ["ExportSeedConfig", "run", "main", "seed_state_dict", "seed_hparams", "SEED_HPARAMS", "OFFICIAL_HPARAMS"]
