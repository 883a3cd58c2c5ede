"""Document collections: local files indexed for hybrid search, and answers that cite them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from homellm.docs.library import (
    CollectionInfo,
    DocsLibrary,
    IngestReport,
    check_collection_name,
)
from homellm.docs.search import Hit
from homellm.models.store import Store

if TYPE_CHECKING:
    from homellm.embed.registry import EmbeddingModels

__all__ = ["CollectionInfo", "DocsLibrary", "Hit", "IngestReport", "check_collection_name", "open_library"]


def open_library(home: Path, store: Store, models: EmbeddingModels | None = None) -> DocsLibrary:
    """The collections of a HOMELLM_HOME; the embedding model is converted and loaded on first use.

    Give `models` to share loaded embedding models with the embeddings API.
    """
    from homellm.docs.embedding import collection_embedder
    from homellm.embed.registry import EmbeddingModels

    registry = models or EmbeddingModels(store)
    return DocsLibrary(home, lambda: collection_embedder(registry))
