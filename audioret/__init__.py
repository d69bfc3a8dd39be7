"""audioret: language-based audio retrieval (DCASE 2025 Task 6), in stages.

corpus -> extract -> store -> train_heads / finetune -> evaluate. Each stage lives in
its own subpackage (``audioret.<stage>``) and talks to the next only through a documented
artifact (a store, a checkpoint, a predictions file).
"""

__version__ = "0.1.0"
