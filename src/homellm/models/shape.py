"""A model's shape as the planner needs it, from a GGUF file's facts or from the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a data type only: the planner reads no files
    from homellm.models.gguf import ModelFacts

# Repeating groups of layers in which all but the last use a sliding window (llama.cpp's own
# per-architecture patterns); other architectures with a window use it on every layer.
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "gpt-oss": 2, "cohere2": 4}


@dataclass(frozen=True)
class ModelShape:
    """Sizes that decide memory and speed; byte counts are exact when read from a file."""

    name: str
    architecture: str
    parameters: int
    active_parameters: int  # read per token: all for dense models, the used experts' share for MoE
    layers: int
    embedding: int
    heads: int
    kv_heads: int
    head_dim_k: int
    head_dim_v: int
    vocab: int
    context_train: int
    experts: int = 0
    experts_used: int = 0
    sliding_window: int = 0
    swa_pattern: int = 0  # 0: no sliding window; 1: every layer; n: n-1 sliding layers then one global
    kv_lora_rank: int = 0  # MLA: cached width per token and layer is kv_lora_rank + rope_dim
    rope_dim: int = 0
    quant: str | None = None  # the file's type, when planned from a file
    weights_bytes: int | None = None  # exact, from a file
    expert_bytes: int | None = None  # exact, from a file

    @property
    def is_moe(self) -> bool:
        """Whether each token uses only some of the experts."""
        return self.experts > 1


def shape_from_facts(name: str, facts: ModelFacts) -> ModelShape:
    """The shape of a GGUF file, with its exact tensor bytes."""
    layers = facts.block_count or 1
    heads = facts.head_count or 1
    embedding = facts.embedding_length or 0
    head_dim = facts.key_length or (embedding // heads if heads else 0)
    active = facts.parameters
    if facts.is_moe and facts.expert_count and facts.expert_used_count and facts.tensor_bytes:
        expert_share = facts.expert_bytes / facts.tensor_bytes
        unused = 1 - facts.expert_used_count / facts.expert_count
        active = int(facts.parameters * (1 - expert_share * unused))
    window = facts.sliding_window or 0
    return ModelShape(
        name=name, architecture=facts.architecture, parameters=facts.parameters, active_parameters=active,
        layers=layers, embedding=embedding, heads=heads, kv_heads=facts.head_count_kv or heads,
        head_dim_k=head_dim, head_dim_v=facts.value_length or head_dim, vocab=facts.vocab_size or 0,
        context_train=facts.context_length or 0, experts=facts.expert_count or 0,
        experts_used=facts.expert_used_count or 0, sliding_window=window,
        swa_pattern=SWA_PATTERNS.get(facts.architecture, 1) if window else 0,
        kv_lora_rank=facts.kv_lora_rank or 0,
        rope_dim=facts.rope_dimension_count or 0 if facts.kv_lora_rank else 0,
        quant=facts.file_type, weights_bytes=facts.tensor_bytes, expert_bytes=facts.expert_bytes or None)
