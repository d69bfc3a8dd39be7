"""Head checkpoints: save, load, and what is in them.

Format (a plain ``torch.save`` dict; ``format_version`` 1)::

    {
      "format": "audioret-heads",
      "format_version": 1,
      "head_config": {...},        # HeadConfig fields: rebuilds the modules
      "state_dict": {...},         # RetrievalHeads.state_dict() (audio.*, text.*, tau)
      "store": {...},              # identity of the feature store trained on: its metadata
                                   # (encoder identities, extraction policy) and path
      "metrics": {...},            # e.g. {"val/mAP@10": ..., "test/mAP@16_multi": ...}
      "train_config": {...},       # the resolved training config (to_dict)
      "audioret_version": "0.1.0",
    }

Lightning checkpoints written by ``train_heads`` (``epoch=N.ckpt``, ``last.ckpt``) hold the same
entries except ``state_dict`` under the key ``"audioret_heads"``; the weights are Lightning's own
``state_dict`` with the prefix ``heads.``. ``load_heads`` reads both kinds.
Warm start for finetune: ``load_heads(path).audio.state_dict()`` / ``.text`` (same module layout).
"""

from __future__ import annotations

import dataclasses
import pathlib
from pathlib import Path
from typing import Any

import torch

from .heads import HeadConfig, RetrievalHeads

FORMAT = "audioret-heads"
FORMAT_VERSION = 1
LIGHTNING_KEY = "audioret_heads"
HEADS, FINETUNE = "heads", "finetune"  # the two checkpoint kinds evaluate/distill accept
LIGHTNING_PREFIX = "heads."


def head_config_from_dict(data: dict[str, Any]) -> HeadConfig:
    known = {f.name for f in dataclasses.fields(HeadConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"head_config has unknown keys {sorted(unknown)}: the checkpoint was written by a "
                         f"newer audioret; upgrade audioret to load it")
    return HeadConfig(**data)


def checkpoint_payload(heads: RetrievalHeads, *, store: dict[str, Any] | None = None,
                       metrics: dict[str, float] | None = None,
                       train_config: dict[str, Any] | None = None, with_weights: bool = True) -> dict:
    """The checkpoint dict described in the module docstring."""
    from audioret import __version__

    out: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "head_config": dataclasses.asdict(heads.config),
        "store": dict(store or {}), "metrics": dict(metrics or {}),
        "train_config": dict(train_config or {}), "audioret_version": __version__,
    }
    if with_weights:
        out["state_dict"] = {k: v.detach().cpu() for k, v in heads.state_dict().items()}
    return out


def save_heads(path: str | Path, heads: RetrievalHeads, **info: Any) -> Path:
    """Write a plain head checkpoint atomically (temp file + rename: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint_payload(heads, **info), tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict (plain or Lightning), normalised to the plain format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such head checkpoint (expected a file written by "
                                f"`audioret train-heads`, e.g. <out>/heads.pt or <out>/checkpoints/last.ckpt)")
    raw = load_checked(path, "a head checkpoint written by `audioret train-heads`")
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        ckpt = raw
    elif isinstance(raw, dict) and LIGHTNING_KEY in raw:
        ckpt = dict(raw[LIGHTNING_KEY])
        ckpt["state_dict"] = {k[len(LIGHTNING_PREFIX):]: v for k, v in raw["state_dict"].items()
                              if k.startswith(LIGHTNING_PREFIX)}
    else:
        raise ValueError(f"{path}: not an audioret head checkpoint (no 'format': {FORMAT!r} and no "
                         f"{LIGHTNING_KEY!r} entry); finetune checkpoints load with audioret.finetune")
    version = ckpt.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: head checkpoint format_version {version}, this audioret reads "
                         f"{FORMAT_VERSION}; use the audioret version that wrote it")
    return ckpt


def load_heads(path: str | Path, map_location: str | torch.device = "cpu") -> RetrievalHeads:
    """Rebuild the trained heads (eval mode) from a plain or Lightning head checkpoint.

    The checkpoint's ``store`` entry is kept on ``heads.checkpoint_info`` so callers can check
    the features they embed come from the same encoders (``store["metadata"]``).
    """
    ckpt = read_checkpoint(path)
    heads = RetrievalHeads(head_config_from_dict(ckpt["head_config"]))
    heads.load_state_dict(ckpt["state_dict"])
    heads.checkpoint_info = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return heads.to(map_location).eval()


# The only non-builtin types a checkpoint may hold besides tensors and containers: paths (a seed or
# user config may keep a Path in its hyper-parameters). torch's weights_only unpickler allows the
# rest of what audioret and Lightning 2.x write (dicts, lists, numbers, strings, tensors).
SAFE_GLOBALS: tuple[type, ...] = (pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath,
                                  pathlib.PureWindowsPath)


class UnsafeCheckpointError(ValueError):
    """A checkpoint that needs Python objects outside the allow-list to load (it could run code)."""


def safe_torch_load(path: str | Path, *, mmap: bool = True) -> Any:
    """``torch.load(weights_only=True)`` with audioret's allow-list: a file is never unpickled into code."""
    with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as err:
            if not mmap or "mmap" not in str(err):
                raise
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) files


def _refused(err: BaseException) -> str | None:
    """What a weights_only refusal names (e.g. "unsupported GLOBAL posix.system"), None for other failures."""
    text = str(err)
    if "Weights only load failed" not in text and "WeightsUnpickler" not in text:
        return None
    for line in text.splitlines():
        if "GLOBAL" in line or "WeightsUnpickler error:" in line:
            return " ".join(line.replace("WeightsUnpickler error:", "").split()).rstrip(".")
    return "objects outside the allow-list"


def load_checked(path: str | Path, what: str) -> Any:
    """``safe_torch_load`` of a checkpoint whose failures (missing, truncated, not a torch file, holding
    code) name the file and what was expected (``what``), instead of a bare unpickling traceback."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {what})")
    try:
        return safe_torch_load(path)
    except Exception as err:  # noqa: BLE001 - re-raised naming the file
        refused = _refused(err)
        if refused is not None:
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the file holds Python objects other than tensors, numbers, "
                f"strings and paths ({refused}), which could run code, and audioret never unpickles code "
                f"from a checkpoint. Expected {what}; if you wrote the file yourself, save only plain "
                "types (a state_dict and dicts of str/int/float)") from None
        raise ValueError(f"{path}: cannot be read by torch.load ({type(err).__name__}: {err}); expected "
                         f"{what}. Is the file complete (not truncated by a crash or a copy)?") from None


def checkpoint_kind(path: str | Path) -> str:
    """``"heads"`` or ``"finetune"`` from the checkpoint's contents; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (a heads checkpoint from `audioret "
                                "train-heads` or a Lightning .ckpt from `audioret finetune`)")
    raw = load_checked(path, "a heads checkpoint or a finetune Lightning .ckpt")
    if isinstance(raw, dict) and (raw.get("format") == FORMAT or LIGHTNING_KEY in raw):
        return HEADS
    if isinstance(raw, dict) and "state_dict" in raw and "hyper_parameters" in raw:
        return FINETUNE
    got = sorted(map(str, raw))[:8] if isinstance(raw, dict) else type(raw).__name__
    raise ValueError(f"{path}: neither an audioret heads checkpoint ('format': {FORMAT!r} or an "
                     f"{LIGHTNING_KEY!r} entry) nor a finetune Lightning checkpoint ('state_dict' + "
                     f"'hyper_parameters'); found {got}")
