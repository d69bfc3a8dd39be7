"""The LightningModule: glue only. Model (``RetrievalHeads``), loss (``contrastive_loss``),
schedule (``lr_at``) and metrics (``audioret.evaluate.metrics``) live elsewhere and are pure.

Training: embed the batch's unique clips once, expand to one audio row per caption, all-gather
audio/text embeddings and clip ids across ranks (gradient through the local part), baseline loss.
Evaluation: every rank embeds its chunks; at epoch end embeddings are gathered with their indices,
de-duplicated (DistributedSampler pads by repeating) and put in dataset order, so every rank
computes the metrics on the whole split (the baseline computes them per GPU, which is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import Tensor

from audioret.models import RetrievalHeads, all_gather_variable, all_gather_with_grad, lr_at
from audioret.models.checkpoint import LIGHTNING_KEY, checkpoint_payload
from audioret.models.distill_loss import combined_loss

from .data import EvalChunk, TrainBatch


@dataclass
class Schedule:
    max_lr: float
    min_lr: float
    warmup_epochs: float
    rampdown_epochs: float
    weight_decay: float = 0.0


def split_metrics(text_emb: Tensor, audio_emb: Tensor, caption_clip: Tensor) -> dict[str, float]:
    """Single-match metrics of a whole split (R@1/5/10, mAP@10) via evaluate's metric functions."""
    from audioret.evaluate.metrics import retrieval_metrics

    return retrieval_metrics(text_emb.float(), audio_emb.float(), caption_clip.cpu())


def _assemble(index: Tensor, emb: Tensor, n: int) -> Tensor:
    """Rows gathered from all ranks (with repeats) -> [n, D] in dataset order; errors if any is missing."""
    out = emb.new_zeros((n, emb.shape[-1]))
    seen = torch.zeros(n, dtype=torch.bool, device=emb.device)
    out[index] = emb
    seen[index] = True
    if not bool(seen.all()):
        raise RuntimeError(f"evaluation gathered {int(seen.sum())} of {n} items: a rank lost its chunks")
    return out


class HeadsModule(L.LightningModule):
    def __init__(self, heads: RetrievalHeads, schedule: Schedule, *,
                 eval_splits: dict[str, tuple[Tensor, int]] | None = None, info: dict[str, Any] | None = None,
                 teacher: Any = None, loss_weights: tuple[float, float] = (1.0, 0.0)):
        """``eval_splits``: prefix ("val"/"test") -> (caption -> clip index [N_captions], number of clips).
        ``teacher``: stage 2 (audioret.models.teachers ``BoundTeacher``), ``loss_weights``: (contrastive, distill)."""
        super().__init__()
        self.teacher, self.loss_weights = teacher, loss_weights
        self.heads = heads
        self.schedule = schedule
        self.eval_splits = dict(eval_splits or {})
        self.info = info or {}  # store identity + train config, written into every checkpoint
        self.latest_metrics: dict[str, float] = {}
        self._eval: dict[str, list[Tensor]] = {}

    # ---- training
    def configure_optimizers(self):
        opt = torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=1.0,
                                weight_decay=self.schedule.weight_decay)
        steps = max(1, int(self.trainer.estimated_stepping_batches) // max(1, self.trainer.max_epochs or 1))
        s = self.schedule
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(
            step, steps, max_lr=s.max_lr, min_lr=s.min_lr, warmup_epochs=s.warmup_epochs,
            rampdown_epochs=s.rampdown_epochs))  # base lr 1.0: the lambda is the absolute lr
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        dataset = self.trainer.train_dataloader.dataset if self.trainer.train_dataloader is not None else None
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor:
        audio = self.heads.embed_audio(batch.audio)[batch.inverse]  # [B, E], one row per caption
        text = self.heads.embed_text(batch.text)  # [B, E]
        clips = batch.caption_clip
        all_clips = all_gather_with_grad(clips)
        sim = (self.teacher.similarity(all_clips, all_gather_with_grad(batch.caption_index))
               if self.teacher is not None else None)  # [B_all, B_all] teacher cosines (stage 2)
        loss, parts = combined_loss(all_gather_with_grad(audio), all_gather_with_grad(text), all_clips, all_clips,
                                    self.heads.tau, sim, loss_weight=self.loss_weights[0],
                                    distill_weight=self.loss_weights[1])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(clips))
        for name, value in parts.items():
            if len(parts) > 1 or self.teacher is not None:
                self.log(f"train/{name}", value, batch_size=len(clips))
        self.log("train/tau", self.heads.tau.abs().detach(), batch_size=len(clips))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(clips))
        return loss

    # ---- evaluation (validation and test share the code)
    def _eval_step(self, chunk: EvalChunk) -> None:
        store = self._eval
        if chunk.audio is not None:
            store.setdefault("clip_index", []).append(chunk.clip_index)
            store.setdefault("audio", []).append(self.heads.embed_audio(chunk.audio).float())
        if chunk.text is not None:
            store.setdefault("caption_index", []).append(chunk.caption_index)
            store.setdefault("text", []).append(self.heads.embed_text(chunk.text).float())

    def _eval_end(self, prefix: str) -> dict[str, float]:
        parts, self._eval = self._eval, {}
        if prefix not in self.eval_splits:
            return {}
        caption_clip, n_clips = self.eval_splits[prefix]
        width = self.heads.config.embed_dim
        empty = {"clip_index": torch.zeros(0, dtype=torch.long), "caption_index": torch.zeros(0, dtype=torch.long),
                 "audio": torch.zeros(0, width), "text": torch.zeros(0, width)}
        # Every rank joins every gather, even one that got no chunk (more ranks than chunks).
        gathered = {k: all_gather_variable(torch.cat(parts[k]) if parts.get(k) else e.to(self.device))
                    for k, e in empty.items()}
        audio = _assemble(gathered["clip_index"], gathered["audio"], n_clips)
        text = _assemble(gathered["caption_index"], gathered["text"], len(caption_clip))
        metrics = {f"{prefix}/{k}": float(v) for k, v in split_metrics(text, audio, caption_clip).items()}
        for k, v in metrics.items():
            self.log(k, v, prog_bar=k.endswith("mAP@10"), sync_dist=True)  # equal on all ranks: mean = value
        self.latest_metrics.update(metrics)
        return metrics

    def validation_step(self, chunk: EvalChunk, batch_idx: int) -> None:
        self._eval_step(chunk)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, chunk: EvalChunk, batch_idx: int) -> None:
        self._eval_step(chunk)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch.to(device) if hasattr(batch, "to") else super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[LIGHTNING_KEY] = checkpoint_payload(self.heads, with_weights=False, metrics=self.latest_metrics,
                                                       **self.info)
