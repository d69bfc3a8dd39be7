"""Text encoders: any Hugging Face model (RoBERTa-large by default), offline first.

* ``TextEncoder.encode(captions) -> (tokens [B, L, D], attention_mask [B, L] int64, first [B, D])``
  with the baseline preprocessing (lowercase, strip ASCII punctuation; switchable) and
  ``max_length`` 32 tokens (specials included).
* ``load_text_encoder(name_or_path, *, download=False, ...)``: a local folder, or a name found in
  the local Hugging Face cache; anything else is a ``TextModelNotFound`` saying how to get it.
* ``build_tiny_roberta(cache_dir) -> Path``: a tiny random RoBERTa (seeded weights, a byte-level
  BPE tokenizer trained here on built-in caption-like text) saved as an ordinary HF folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import string
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


class TextModelNotFound(FileNotFoundError):
    """A text model that is neither a local folder nor in the local Hugging Face cache."""


def baseline_preprocess(text: str) -> str:
    """The baseline's caption cleaning: lowercase, drop ASCII ``string.punctuation``."""
    return text.lower().translate(_PUNCT_TABLE)


def resolve_text_model(name_or_path: str | Path, *, download: bool = False) -> str:
    """Return what ``from_pretrained`` should get, or raise ``TextModelNotFound``."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextModelNotFound(f"{path} is a folder but has no config.json; pass a Hugging "
                                    "Face model folder (config.json, weights, tokenizer files)")
        return str(path)
    name = str(name_or_path)
    if download:
        return name
    from huggingface_hub import try_to_load_from_cache
    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return name
    raise TextModelNotFound(
        f"text model {name!r} is neither a local folder nor in the local Hugging Face cache; fix: "
        f"on a machine with internet run `hf download {name}` and copy ~/.cache/huggingface here, "
        f"or pass a local model folder (config.json, weights, tokenizer files) to --text-model")


class FrozenWrapper(nn.Module):
    """Holds ``self.model``; when ``frozen`` its weights need no grad and it stays in eval mode
    whatever ``.train()`` (e.g. Lightning) asks: frozen encoders always run in eval mode."""

    def __init__(self, model: nn.Module, *, name: str, dtype: torch.dtype | None,
                 frozen: bool) -> None:
        super().__init__()
        self.model, self.name, self.dtype, self.frozen = model, name, dtype, frozen
        if frozen:
            self.model.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "FrozenWrapper":
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self


class TextEncoder(FrozenWrapper):
    """A frozen-or-trainable HF text encoder with the baseline's tokenisation."""

    def __init__(self, model: nn.Module, tokenizer: Any, *, name: str, source: str,
                 max_length: int = 32, preprocess_text: bool = True,
                 dtype: torch.dtype | None = None, frozen: bool = True) -> None:
        super().__init__(model, name=name, dtype=dtype, frozen=frozen)
        self.tokenizer = tokenizer
        self.source = source
        self.max_length = max_length
        self.preprocess_text = preprocess_text

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def identity(self) -> dict[str, Any]:
        cfg = self.model.config.to_dict()
        keep = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "vocab_size", "max_position_embeddings")
        return {"kind": "text", "name": self.name, "source": self.source,
                "config": {k: cfg.get(k) for k in keep},
                "weights_sha256": weights_digest(self.source),
                "max_length": self.max_length, "preprocess": self.preprocess_text}

    def preprocess(self, text: str) -> str:
        return baseline_preprocess(text) if self.preprocess_text else text

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        texts = [self.preprocess(c) for c in captions]
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    def num_tokens(self, captions: list[str]) -> list[int]:
        """Valid token counts (specials included, capped at ``max_length``)."""
        return self.tokenize(captions)["attention_mask"].sum(1).tolist()

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(tokens [B, L, D], attention_mask [B, L] int64 (1 = valid), first [B, D])`` with L
        the longest caption in the batch (<= max_length); ``first`` is the ``<s>`` feature."""
        batch = {k: v.to(self.device) for k, v in self.tokenize(captions).items()}
        ctx = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None
               else torch.autocast(self.device.type, enabled=False))
        with ctx:
            out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        tokens = out.last_hidden_state
        return tokens, batch["attention_mask"], tokens[:, 0]


def weights_digest(folder: str) -> str | None:
    """sha256 of a local model folder's weight files (None for hub names)."""
    path = Path(folder)
    if not path.is_dir():
        from huggingface_hub import try_to_load_from_cache
        for fname in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(folder, fname)
            if isinstance(hit, str):
                return _sha256_files([Path(hit)])
        return None
    files = sorted(p for p in path.iterdir()
                   if p.suffix in (".safetensors", ".bin") and p.is_file())
    return _sha256_files(files) if files else None


def _sha256_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()


def load_text_encoder(name_or_path: str | Path = "roberta-large", *, download: bool = False,
                      device: str | torch.device = "cpu", max_length: int = 32,
                      preprocess: bool = True, dtype: torch.dtype | None = None,
                      frozen: bool = True, name: str | None = None) -> TextEncoder:
    """AutoTokenizer/AutoModel (no pooling layer where supported) -> ``TextEncoder``."""
    from transformers import AutoModel, AutoTokenizer
    source = resolve_text_model(name_or_path, download=download)
    local_only = not download
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    try:
        model = AutoModel.from_pretrained(source, local_files_only=local_only,
                                          add_pooling_layer=False)
    except TypeError:
        model = AutoModel.from_pretrained(source, local_files_only=local_only)
    model = model.to(device)
    return TextEncoder(model, tokenizer, name=name or str(name_or_path), source=source,
                       max_length=max_length, preprocess_text=preprocess, dtype=dtype,
                       frozen=frozen)


# ----------------------------------------------------------------------------------------
# tiny RoBERTa for tests and the demo

_WORDS = {
    "subjects": ["a dog", "a man", "a woman", "children", "a bird", "a car", "the wind",
                 "rain", "a crowd", "a train", "water", "an engine", "a door", "a baby",
                 "people", "a cat", "thunder", "a bell", "footsteps", "a motorcycle"],
    "verbs": ["barks", "talks", "sings", "chirps", "passes by", "blows", "falls", "cheers",
              "rumbles", "flows", "hums", "creaks", "cries", "laugh", "meows", "rings",
              "walk", "roars", "splashes", "whistles"],
    "places": ["in the distance", "nearby", "outside", "in a room", "on the street",
               "in a park", "near a river", "at night", "in the background", "loudly",
               "softly", "repeatedly", "while birds chirp", "as cars pass", "in the rain"],
}


def tiny_corpus() -> list[str]:
    """Deterministic caption-like English sentences (the tokenizer's training text)."""
    s, v, p = _WORDS["subjects"], _WORDS["verbs"], _WORDS["places"]
    lines = []
    for i in range(len(s) * len(v)):
        a, b, c = s[i % len(s)], v[(i * 7) % len(v)], p[(i * 3) % len(p)]
        lines.append(f"{a} {b} {c}")
        lines.append(f"{a.capitalize()} {b}, then {s[(i + 5) % len(s)]} {v[(i + 3) % len(v)]}.")
    return lines


TINY_ROBERTA = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=128, max_position_embeddings=66, vocab_size=600)


def build_tiny_roberta(cache_dir: str | Path, *, seed: int = 0, force: bool = False) -> Path:
    """Build (once) a tiny random RoBERTa folder under ``cache_dir/tiny-roberta``; returns it.

    Written to a temporary folder and renamed, so a crash never leaves a half-built model.
    """
    out = Path(cache_dir) / "tiny-roberta"
    marker = out / "audioret_build.json"
    recipe = {"seed": seed, **TINY_ROBERTA, "version": 1}
    if not force and marker.is_file() and json.loads(marker.read_text()) == recipe:
        return out
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-roberta-", dir=out.parent))
    try:
        bpe = ByteLevelBPETokenizer()
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        bpe.train_from_iterator(tiny_corpus(), vocab_size=TINY_ROBERTA["vocab_size"],
                                min_frequency=1, special_tokens=specials, show_progress=False)
        bpe_dir = tmp / "bpe"
        bpe_dir.mkdir()
        vocab, merges = bpe.save_model(str(bpe_dir))
        tok = RobertaTokenizer(vocab=vocab, merges=merges)
        tok.model_max_length = TINY_ROBERTA["max_position_embeddings"] - 2
        torch.manual_seed(seed)
        cfg = RobertaConfig(vocab_size=len(tok), hidden_size=TINY_ROBERTA["hidden_size"],
                            num_hidden_layers=TINY_ROBERTA["num_hidden_layers"],
                            num_attention_heads=TINY_ROBERTA["num_attention_heads"],
                            intermediate_size=TINY_ROBERTA["intermediate_size"],
                            max_position_embeddings=TINY_ROBERTA["max_position_embeddings"],
                            pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                            eos_token_id=tok.eos_token_id)
        model = RobertaModel(cfg, add_pooling_layer=False)
        shutil.rmtree(bpe_dir)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "audioret_build.json").write_text(json.dumps(recipe))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
