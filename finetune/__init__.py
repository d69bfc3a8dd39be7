"""audioret.finetune: end-to-end baseline training (BEATs + RoBERTa, contrastive) with the seed's
``d25_t6.train`` command line.

- ``config.FinetuneConfig``: every flag (baseline names and defaults + audioret's).
- ``run.run(config) -> dict``: train, select by val/mAP@10, test best and last; see run.py for outputs.
- ``module.FinetuneModule``: the LightningModule (``.model`` is an ``audioret.models.DualEncoder``).
- ``data``: flat-caption training pairs, per-clip eval items, raw audio or ``--audio-store`` window
  means, decode-failure replacement, resumable rank-sharded batch order.
- Inference without Lightning: ``audioret.models.dual_encoder.load_finetuned(path)``.
"""
