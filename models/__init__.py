"""audioret.models: model code shared by train_heads, finetune and evaluate.

- ``batch``: ``AudioFeatures`` / ``TextFeatures`` (padded stored features + masks), ``pad_ragged``.
- ``pooling``: masked mean, mean+std, the seed's segment mean, attention pooling.
- ``heads``: ``HeadConfig``, ``RetrievalHeads`` (``embed_audio`` / ``embed_text`` -> unit vectors).
- ``loss``: ``contrastive_loss`` (the baseline's, exactly).
- ``schedule``: ``lr_at`` (warmup from min_lr, cosine to min_lr, flat; per step).
- ``distributed``: ``all_gather_with_grad`` (loss negatives), ``all_gather_variable`` (metrics).
- ``checkpoint``: ``save_heads`` / ``load_heads`` / ``read_checkpoint`` (format in its docstring).
"""

from .batch import AudioFeatures, TextFeatures, pad_ragged
from .checkpoint import load_heads, read_checkpoint, save_heads
from .distributed import all_gather_variable, all_gather_with_grad
from .heads import HeadConfig, RetrievalHeads
from .loss import contrastive_loss, positive_mask
from .pooling import masked_mean, masked_mean_std, segment_mean
from .schedule import lr_at

__all__ = ["AudioFeatures", "TextFeatures", "pad_ragged", "HeadConfig", "RetrievalHeads",
           "contrastive_loss", "positive_mask", "lr_at", "masked_mean", "masked_mean_std",
           "segment_mean", "all_gather_with_grad", "all_gather_variable", "load_heads",
           "save_heads", "read_checkpoint"]
