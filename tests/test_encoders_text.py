"""Text encoders: offline resolution, baseline preprocessing, tiny RoBERTa built on demand."""

from __future__ import annotations

import pytest
import torch

from audioret.encoders.registry import build_text_encoder
from audioret.encoders.text import (TextModelNotFound, baseline_preprocess, build_tiny_roberta,
                                    resolve_text_model)


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AUDIORET_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield build_text_encoder("tiny-roberta")
    mp.undo()


def test_baseline_preprocess():
    assert baseline_preprocess("A Dog, barking! (loudly)") == "a dog barking loudly"
    assert baseline_preprocess("it's 5 o'clock.") == "its 5 oclock"


def test_unknown_model_gives_an_offline_error_with_the_fix(tmp_path):
    name = "no-such-org/no-such-model-xyz"
    with pytest.raises(TextModelNotFound) as err:
        resolve_text_model(name)
    msg = str(err.value)
    # huggingface-hub >= 1 (what the project installs) ships `hf`, not `huggingface-cli`; --download
    # never reaches the text encoder, so the fix names the folder flag instead
    assert "`hf download no-such-org/no-such-model-xyz`" in msg and "--text-model" in msg
    assert "huggingface-cli" not in msg and "download" + "=True" not in msg and "--download" not in msg
    assert "\n" not in msg
    assert resolve_text_model(name, download=True) == name
    (tmp_path / "folder").mkdir()
    with pytest.raises(TextModelNotFound, match="config.json"):
        resolve_text_model(tmp_path / "folder")


def test_tiny_roberta_encode(tiny_text):
    caps = ["A dog barks, loudly!", "rain falls " * 30]
    tokens, mask, first = tiny_text.encode(caps)
    assert tiny_text.max_length == 32
    assert tokens.shape == (2, 32, tiny_text.dim) and first.shape == (2, tiny_text.dim)
    assert torch.equal(first, tokens[:, 0])
    assert mask.sum(1).tolist() == tiny_text.num_tokens(caps) and tiny_text.num_tokens(caps)[1] == 32
    ids = tiny_text.tokenize(caps)["input_ids"]
    assert ids[0, 0] == tiny_text.tokenizer.bos_token_id            # first token is <s>
    # preprocessing on by default: punctuation and case do not change the tokens
    same, _, _ = tiny_text.encode(["a dog barks loudly"])
    assert torch.allclose(same[0, : mask[0].sum()], tokens[0, : mask[0].sum()], atol=1e-5)
    tiny_text.preprocess_text = False
    try:
        assert tiny_text.num_tokens(["A dog, barks!"]) != tiny_text.num_tokens(["a dog barks"])
    finally:
        tiny_text.preprocess_text = True


def test_tiny_roberta_is_an_ordinary_hf_folder_and_deterministic(tiny_text, tmp_path):
    from transformers import AutoModel, AutoTokenizer
    folder = build_tiny_roberta(tmp_path)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True)
    assert model.config.hidden_size == tiny_text.dim
    assert tok("a dog barks")["input_ids"] == tiny_text.tokenizer("a dog barks")["input_ids"]
    assert tiny_text.identity["weights_sha256"] == build_text_encoder(
        str(folder)).identity["weights_sha256"]
    assert not tiny_text.model.training
    assert getattr(tiny_text.model, "pooler", None) is None          # add_pooling_layer=False
