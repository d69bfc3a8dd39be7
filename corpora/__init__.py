"""audioret.corpora: clips + captions of Clotho, AudioCaps, WavCaps, a folder, or a synthetic corpus.

Public API::

    Clip(clip_id, path, captions, split, dataset, duration)       # frozen dataclass
    CorpusSplit(name, split, root, clips, removed, queries)       # removed: reason -> count
    CorpusError                                                   # missing/malformed corpus
    corpus_names() -> list[str]
    load_corpus(name, data_path, split, *, download=False, **kw) -> CorpusSplit
    synthesize(out, *, n_dev=120, n_val=40, n_eval=40, seed=0, min_duration=2.0,
               max_duration=8.0, long_fraction=0.0, ...) -> Path   # Clotho v2.1 layout
    multi_match_annotations_path(root) -> Path                    # eval query,audio_filenames CSV
    apply_dcase_exclusions(subset, clips) -> (clips, removed)     # WavCaps FreeSound/AudioSet
    import_aac_datasets()                                         # the one aac-datasets import

aac-datasets is imported lazily (about 4 s), only by the adapters that need it.
"""

from __future__ import annotations

from ._aac_compat import import_aac_datasets
from .base import Clip, CorpusError, CorpusSplit
from .registry import corpus_names, load_corpus
from .synth import SynthConfig, multi_match_annotations_path, synthesize
from .wavcaps import apply_dcase_exclusions

__all__ = ["Clip", "CorpusSplit", "CorpusError", "corpus_names", "load_corpus", "synthesize",
           "SynthConfig", "multi_match_annotations_path", "apply_dcase_exclusions", "import_aac_datasets"]
