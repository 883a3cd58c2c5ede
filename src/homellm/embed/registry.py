"""The embedding models a process has loaded, by store name; the built-in one is converted on first use."""

from __future__ import annotations

import threading
from pathlib import Path

from homellm.engine.embedder import Embedder
from homellm.errors import InvalidRequestError
from homellm.models.gguf import ENCODER_ARCHITECTURES
from homellm.models.minilm import EMBEDDING_NAME, ensure_embedding_model
from homellm.models.store import Store

ALIASES = {"all-minilm": EMBEDDING_NAME, "all-minilm:latest": EMBEDDING_NAME, "all-minilm-l6-v2": EMBEDDING_NAME}


class EmbeddingModels:
    """Loaded embedding models, one instance each, shared by the API and the document collections."""

    def __init__(self, store: Store, n_threads: int | None = None) -> None:
        self.store = store
        self.n_threads = n_threads
        self._loaded: dict[str, Embedder] = {}
        self._lock = threading.Lock()

    def get(self, name: str = EMBEDDING_NAME) -> tuple[str, Embedder]:
        """The model's canonical name and the loaded model; loads (and converts) it on first use."""
        name = ALIASES.get(name, name)
        with self._lock:
            if name in self._loaded:
                return name, self._loaded[name]
            path = ensure_embedding_model(self.store) if name == EMBEDDING_NAME else self._stored(name)
            embedder = Embedder(path, n_threads=self.n_threads)
            self._loaded[name] = embedder
            return name, embedder

    def _stored(self, name: str) -> Path:
        model = self.store.get(name)
        if model.facts.architecture not in ENCODER_ARCHITECTURES:
            raise InvalidRequestError(
                f"{model.name} is a {model.facts.architecture} model that generates text, not an embedding model",
                hint=f"use {EMBEDDING_NAME}, or an embedding model such as a BERT GGUF", param="model")
        return model.path

    def close(self) -> None:
        """Free every loaded model."""
        with self._lock:
            for embedder in self._loaded.values():
                embedder.close()
            self._loaded.clear()
