"""Sentence embeddings for semantic dedup (GRA step 4a): all-MiniLM-L6-v2 run in numpy.

Kept out of gra_local.core: the engine only sees the `Embedder` protocol of core.dedup.
`MiniLMEmbedder` is imported on first use, so `gra_local.embed.minilm_files` (the download)
stays free of numpy and tokenizers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gra_local.embed.minilm_files import embedder_path, is_present, pull_embedder

if TYPE_CHECKING:
    from gra_local.embed.minilm import MiniLMEmbedder

__all__ = ["MiniLMEmbedder", "embedder_path", "is_present", "pull_embedder"]


def __getattr__(name: str) -> Any:
    if name == "MiniLMEmbedder":
        from gra_local.embed.minilm import MiniLMEmbedder

        return MiniLMEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
