"""The embedding model that collections use, taken from the store (converted there on first use)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from homellm.embed import Embedder
from homellm.embed.registry import EmbeddingModels
from homellm.models.minilm import EMBEDDING_NAME


class CollectionEmbedder:
    """An `Embedder` with its store name, as ingest and search use it."""

    def __init__(self, embedder: Embedder, name: str) -> None:
        self.embedder = embedder
        self.name = name
        self.n_embd = embedder.n_embd

    def count_tokens(self, text: str) -> int:
        """Tokens of a text without the two the model adds around every input."""
        return max(0, self.embedder.count_tokens(text) - 2)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised vectors, one row per text; texts past the model's context are truncated."""
        return self.embedder.embed(list(texts), truncate=True).vectors


def collection_embedder(models: EmbeddingModels) -> CollectionEmbedder:
    """The built-in embedding model, loaded (once per registry)."""
    name, embedder = models.get(EMBEDDING_NAME)
    return CollectionEmbedder(embedder, name)
