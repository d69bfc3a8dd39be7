"""Stage 2 end to end in finetune (tiny encoders, synthetic corpus): a finetune checkpoint is a teacher,
its artifact describes itself, and a distilled run initialised from it trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioret.models.teachers import load_targets
from audioret.distill.config import TeachersConfig
from audioret.distill.teachers import run as run_teachers
from audioret.finetune.config import FinetuneConfig
from audioret.finetune.run import run

TINY = dict(audio_encoder="tiny-beats", text_model="tiny-roberta", n_workers=0, precision="32-true", logging=False,
            batch_size=4, max_epochs=1, limit_train_batches=2, limit_val_batches=0, test=False, train_crop="start",
            max_lr=1e-3, warmup_epochs=0.5, rampdown_epochs=1.0, text_dropout=0.0)


@pytest.mark.slow
def test_finetune_teacher_and_distilled_stage2(synth_corpus, tmp_path):
    s1 = run(FinetuneConfig(data_path=synth_corpus, out=tmp_path / "s1", seed=3, **TINY))
    ckpt = s1["last_checkpoint"]
    art = run_teachers(TeachersConfig(checkpoints=[ckpt], data_path=synth_corpus, split="dev", out=tmp_path / "t",
                                      batch_size=8))
    t = load_targets(art)
    ident = t.teachers[0]
    assert ident["kind"] == "finetune" and len(ident["checkpoint_sha256"]) == 64 and ident["embed_dim"] == 1024
    assert ident["encoders"]["text_model"] == "tiny-roberta" and t.corpus["name"] == "clotho" and t.split == "dev"
    assert len(t.clip_ids) == 24 and len(t.captions) == 24 * 5
    assert np.allclose(np.linalg.norm(t.audio[0], axis=1), 1, atol=1e-4)
    # stage 2: init from stage 1, distillation only (paper weights); the weights move
    s2 = run(FinetuneConfig(data_path=synth_corpus, out=tmp_path / "s2", seed=4, load_ckpt_path=ckpt,
                            distill_from=art, **TINY))
    assert s2["global_step"] == 2
    after = torch.load(s2["last_checkpoint"], weights_only=False)
    before = torch.load(ckpt, weights_only=False)
    assert after["hyper_parameters"]["distill_from"] == str(art)
    w0, w1 = before["state_dict"]["model.audio_projection.weight"], after["state_dict"]["model.audio_projection.weight"]
    assert not torch.equal(w0, w1)


def test_finetune_refuses_distill_weight_without_teachers(synth_corpus, tmp_path):
    with pytest.raises(ValueError, match="needs teacher targets"):
        run(FinetuneConfig(data_path=synth_corpus, out=tmp_path / "x", distill_weight=1.0, **TINY))
