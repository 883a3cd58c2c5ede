"""Sentence embeddings: the built-in all-MiniLM-L6-v2, converted to a BERT GGUF and run by llama.cpp."""

from homellm.engine.embedder import Embedder
from homellm.models.minilm import EMBEDDING_NAME, ensure_embedding_model

__all__ = ["EMBEDDING_NAME", "Embedder", "ensure_embedding_model"]
