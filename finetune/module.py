"""The Lightning side of finetune: one ``DualEncoder`` (``self.model``), the baseline's loss with
negatives all-gathered over ranks, the per-step LR schedule, and gathered validation/test metrics.

Checkpoints: ``hyper_parameters`` = the resolved ``FinetuneConfig`` (``to_dict``), ``state_dict`` keys
``model.<DualEncoder keys>`` (seed layout under the ``model.`` prefix). Loading accepts keys with
``_orig_mod.`` (compiled runs) and seed BEATs-copy checkpoints (no ``model.`` prefix).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor

from audioret.evaluate.metrics import dedup_audios, match_annotations, retrieval_metrics
from audioret.models import all_gather_variable, all_gather_with_grad, lr_at, segment_mean
from audioret.models.distill_loss import combined_loss, resolve_weights
from audioret.models.dual_encoder import (DualEncoder, adapt_state_dict, build_dual_encoder, pad_windows,
                                          strip_lightning_prefix)
from audioret.models.teachers import teacher_for_pairs

from .data import AudioBatch, EvalBatch, ResumableBatchSampler, TrainBatch

log = logging.getLogger(__name__)


def gather_objects(values: list[Any]) -> list[Any]:
    """Concatenate per-rank Python lists in rank order (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, values)
    return [v for p in parts for v in p]


class FinetuneModule(L.LightningModule):
    """LightningModule over a DualEncoder; built from the flat config dict (``hyper_parameters``)."""

    def __init__(self, **config: Any) -> None:
        super().__init__()
        self.save_hyperparameters(config)
        self.model: DualEncoder = build_dual_encoder(config)
        self.loss_weights = resolve_weights(config.get("loss_weight"), config.get("distill_weight"),
                                            distilling=bool(config.get("distill_from")))
        self.teacher: Any = None  # stage 2: audioret.models.teachers BoundTeacher, bound to the training data in setup
        self.train_sampler: ResumableBatchSampler | None = None  # set by run.py for data position
        self.annotations: list[tuple[str, Sequence[str]]] | None = None  # test multi-match rows
        self.eval_results: dict[str, dict[str, float]] = {}
        self._outputs: list[dict[str, Any]] = []

    # ---- embeddings -----------------------------------------------------------------------------
    def embed_audio_batch(self, audio: AudioBatch) -> Tensor:
        """Raw windows through the encoder, or stored window means: the same seed pooling."""
        if audio.kind == "windows":
            pooled = self.model.pooled_audio(audio.values, audio.counts)
        else:
            padded, mask = pad_windows(audio.values.float(), audio.counts)
            pooled = segment_mean(padded, mask)
        return self.model.project_audio(pooled)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, TrainBatch):
            return TrainBatch(batch.audio.to(device), batch.clip.to(device), batch.captions,
                              batch.index.to(device))
        if isinstance(batch, EvalBatch):
            return EvalBatch(batch.audio.to(device), batch.clip.to(device), batch.captions,
                             batch.caption_clip.to(device), batch.fnames)
        return batch

    # ---- training ---------------------------------------------------------------------------------
    def current_lr(self) -> float:
        hp = self.hparams
        return lr_at(self.trainer.global_step, int(self.trainer.num_training_batches), max_lr=hp.max_lr,
                     min_lr=hp.min_lr, warmup_epochs=hp.warmup_epochs, rampdown_epochs=hp.rampdown_epochs)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.train_sampler is not None:  # checkpoints saved at the end of this batch resume after it
            self.train_sampler.consumed = batch_idx + 1

    def setup(self, stage: str) -> None:
        """Stage 2 (--distill-from): teacher rows aligned to the training items (clip index, item index)."""
        path = self.hparams.get("distill_from")
        if stage == "fit" and path and self.teacher is None:
            train = self.trainer.datamodule.train_set
            self.teacher = teacher_for_pairs(path, [c.clip_id for c in train.clips], [p.caption for p in train.pairs],
                                             [p.clip for p in train.pairs])

    def batch_loss(self, batch: TrainBatch) -> Tensor:
        """The baseline's loss on this batch (+ the distillation term in stage 2), negatives gathered
        from every rank."""
        audio = self.embed_audio_batch(batch.audio)
        text = self.model.embed_text(batch.captions)
        clip = all_gather_with_grad(batch.clip)
        sim = (self.teacher.similarity(clip, all_gather_with_grad(batch.index))
               if self.teacher is not None else None)  # [B_all, B_all] teacher cosines (stage 2)
        loss, _ = combined_loss(all_gather_with_grad(audio), all_gather_with_grad(text), clip, clip, self.model.tau,
                                sim, loss_weight=self.loss_weights[0], distill_weight=self.loss_weights[1])
        return loss

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        lr = self.current_lr()
        for group in self.optimizers().param_groups:  # type: ignore[union-attr]
            group["lr"] = lr
        loss = self.batch_loss(batch)
        bs = len(batch.captions)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/lr", lr, batch_size=bs)
        self.log("train/tau", self.model.tau.detach().abs().squeeze(), batch_size=bs)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.max_lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=0.0, amsgrad=False)

    # ---- evaluation ---------------------------------------------------------------------------------
    def _eval_step(self, batch: EvalBatch | None) -> None:
        if batch is None:
            return
        self._outputs.append({"audio": self.embed_audio_batch(batch.audio).float(), "clip": batch.clip,
                              "text": self.model.embed_text(batch.captions).float(),
                              "caption_clip": batch.caption_clip, "captions": batch.captions,
                              "fnames": batch.fnames})

    def validation_step(self, batch: EvalBatch | None, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: EvalBatch | None, batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._outputs = []

    def on_test_epoch_start(self) -> None:
        self._outputs = []

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val", None)

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test", self.annotations)

    def _finish_eval(self, prefix: str, annotations: list[tuple[str, Sequence[str]]] | None) -> None:
        metrics = gathered_metrics(self._outputs, annotations, self.device)
        self._outputs = []
        self.eval_results[prefix] = metrics
        for k, v in metrics.items():
            self.log(f"{prefix}/{k}", v, sync_dist=False, rank_zero_only=False,
                     prog_bar=prefix == "val" and k == "mAP@10")  # shown in the progress bar

    # ---- checkpoints --------------------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Accept compiled (``_orig_mod.``) and seed-layout keys: normalise before the strict load."""
        own = self.model.state_dict()
        state = adapt_state_dict(strip_lightning_prefix(checkpoint["state_dict"]), own,
                                 source="checkpoint")
        checkpoint["state_dict"] = {f"model.{k}": v for k, v in state.items()}


def gathered_metrics(outputs: list[dict[str, Any]], annotations: list[tuple[str, Sequence[str]]] | None,
                     device: torch.device) -> dict[str, float]:
    """All ranks' eval outputs -> metrics on the whole split (each clip once, captions in clip order)."""
    def cat(key: str, width: int | None = None) -> Tensor:
        parts = [o[key] for o in outputs]
        if parts:
            return torch.cat(parts)
        return torch.zeros((0, width) if width else (0,), device=device)

    dim = outputs[0]["audio"].shape[1] if outputs else 1
    audio = all_gather_variable(cat("audio", dim).to(device))
    clip = all_gather_variable(cat("clip").to(device))
    text = all_gather_variable(cat("text", dim).to(device))
    cap_clip = all_gather_variable(cat("caption_clip").to(device))
    captions = gather_objects([c for o in outputs for c in o["captions"]])
    fnames = gather_objects([f for o in outputs for f in o["fnames"]])
    if len(clip) == 0:
        return {}
    fname_of = dict(zip(clip.tolist(), fnames))
    order = torch.argsort(cap_clip, stable=True)  # clip order; captions keep their order within a clip
    caps = [captions[i] for i in order.tolist()]
    cap_fnames = [fname_of[int(cap_clip[i])] for i in order.tolist()]
    text = text[order]
    dd = dedup_audios(cap_fnames)
    row_of_clip = {c: i for i, c in enumerate(clip.tolist())}
    clip_of_fname = {f: c for c, f in fname_of.items()}
    audio_rows = torch.tensor([row_of_clip[clip_of_fname[f]] for f in dd.unique], device=device)
    audio = audio[audio_rows]
    relevant = query_index = None
    if annotations:
        mm = match_annotations(annotations, caps, dd.unique, skip_unmatched=True)
        if mm.unmatched:
            log.warning("%d of %d multi-match annotation rows do not match this split (skipped), e.g. %r",
                        len(mm.unmatched), len(annotations), mm.unmatched[0])
        if mm.relevant:
            relevant, query_index = mm.relevant, mm.query_index
    return retrieval_metrics(text.float(), audio.float(), dd.targets, relevant, query_index)
