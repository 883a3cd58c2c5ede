"""Bytes: weights by quant, the KV cache by attention kind, compute buffers and per-device overhead.

Formulas from ../shared/research/planners.md §1 and §8.1 (llama.cpp's and
Ollama's own accounting): the KV cache of a full-attention layer holds
kv_heads x (head_dim_k + head_dim_v) values per token; sliding-window layers
hold at most the window plus one micro-batch; MLA layers (DeepSeek) hold the
compressed latent plus the rotary part; the compute buffer of the device that
holds the output is dominated by the logits, 4 x n_ubatch x (n_embd + n_vocab).
"""

from __future__ import annotations

from dataclasses import dataclass

from homellm.models.shape import ModelShape
from homellm.planner.quants import DEFAULT_QUANT, kv_bytes_per_element, kv_pair, quant

N_UBATCH = 512
CTX_ALIGN = 256  # llama.cpp pads the context to this
GIB = 1 << 30
# Backend context and scratch a GPU needs beyond model, KV and compute (Ollama: 457 MiB CUDA/ROCm, 512 Metal).
DEVICE_OVERHEAD = {"cuda": 457 << 20, "rocm": 457 << 20, "vulkan": 457 << 20, "sycl": 457 << 20,
                   "metal": 512 << 20, "cpu": 0}
# The embedding and output matrices are never more than this share of the weights (tiny models excepted).
_MAX_NON_LAYER_SHARE = 0.3


@dataclass(frozen=True)
class WeightSplit:
    """Where a model's weight bytes are: per layer, experts within them, and outside the layers."""

    total: int
    per_layer: int
    experts_per_layer: int  # part of per_layer that is routed experts
    token_embd: int  # read one row per token, kept on the host by llama.cpp
    output: int  # the output matrix (and norm), read whole for every token

    @property
    def dense_per_layer(self) -> int:
        """A layer's attention, norms, router and shared experts."""
        return self.per_layer - self.experts_per_layer


def weights_bytes(shape: ModelShape, quant_name: str | None) -> int:
    """The weights of `shape` at a quant: exact when the shape comes from a file of that quant."""
    if shape.weights_bytes is not None and (quant_name is None or _same_quant(quant_name, shape.quant)):
        return shape.weights_bytes
    bits = quant(quant_name or DEFAULT_QUANT).bits_per_weight
    return int(shape.parameters * bits / 8)


def split_weights(shape: ModelShape, quant_name: str | None) -> WeightSplit:
    """The weights of `shape` divided into layers, experts, embeddings and output."""
    total = weights_bytes(shape, quant_name)
    bits_per_param = total * 8 / max(shape.parameters, 1)
    matrix = int(shape.vocab * shape.embedding * bits_per_param / 8)
    token_embd = min(matrix, int(total * _MAX_NON_LAYER_SHARE / 2))
    output = token_embd
    per_layer = max(0, (total - token_embd - output) // max(shape.layers, 1))
    experts = _expert_bytes(shape, total, bits_per_param) // max(shape.layers, 1)
    attention = int(_attention_params(shape) * bits_per_param / 8)
    if per_layer - experts < attention // 10:
        # A published active count that leaves no room for attention (gpt-oss counts one embedding
        # less): the attention projections, at least, are not experts.
        experts = per_layer - attention
    return WeightSplit(total, per_layer, max(0, min(experts, per_layer)), token_embd, output)


def kv_bytes_per_token_layer(shape: ModelShape, kv_type: str) -> float:
    """Bytes one token adds to one full-attention layer's cache (`kv_type`: one type, or "K/V")."""
    k_type, v_type = kv_pair(kv_type)
    if shape.kv_lora_rank:  # MLA caches one compressed latent per token, in the K cache
        return (shape.kv_lora_rank + shape.rope_dim) * kv_bytes_per_element(k_type)
    return shape.kv_heads * (shape.head_dim_k * kv_bytes_per_element(k_type)
                             + shape.head_dim_v * kv_bytes_per_element(v_type))


def kv_cache_bytes(shape: ModelShape, ctx: int, kv_type: str = "F16", layers: int | None = None) -> int:
    """The KV cache for a context of `ctx` tokens over `layers` of the model (all by default)."""
    layers = shape.layers if layers is None else layers
    per_token = kv_bytes_per_token_layer(shape, kv_type)
    padded = -(-ctx // CTX_ALIGN) * CTX_ALIGN
    swa_layers = _sliding_layers(shape, layers)
    window = min(padded, shape.sliding_window + N_UBATCH) if swa_layers else 0
    return int(per_token * ((layers - swa_layers) * padded + swa_layers * window))


def kv_read_bytes(shape: ModelShape, depth: int, kv_type: str = "F16", layers: int | None = None) -> int:
    """KV bytes one new token reads at a context depth: every cached token of every layer (windowed ones capped)."""
    layers = shape.layers if layers is None else layers
    per_token = kv_bytes_per_token_layer(shape, kv_type)
    swa_layers = _sliding_layers(shape, layers)
    windowed = min(depth, shape.sliding_window) if swa_layers else 0
    return int(per_token * ((layers - swa_layers) * depth + swa_layers * windowed))


def compute_buffer_bytes(shape: ModelShape) -> int:
    """Scratch for one micro-batch on the device that holds the output (flash attention on)."""
    return 4 * N_UBATCH * (shape.embedding + shape.vocab)


def device_overhead_bytes(backend: str) -> int:
    """What a backend takes on its device before any model data."""
    return DEVICE_OVERHEAD.get(backend, 457 << 20)


def _attention_params(shape: ModelShape) -> int:
    """Q, K, V and output projections of one layer."""
    return shape.embedding * (shape.heads * (shape.head_dim_k + shape.head_dim_v)
                              + shape.kv_heads * (shape.head_dim_k + shape.head_dim_v))


def _sliding_layers(shape: ModelShape, layers: int) -> int:
    if not shape.sliding_window or not shape.swa_pattern:
        return 0
    if shape.swa_pattern == 1:
        return layers
    return layers - layers // shape.swa_pattern


def _expert_bytes(shape: ModelShape, total: int, bits_per_param: float) -> int:
    if not shape.is_moe:
        return 0
    if shape.expert_bytes is not None and shape.weights_bytes == total:
        return shape.expert_bytes
    # active = non-expert + (used / experts) x expert parameters, total = non-expert + expert parameters
    unused_share = 1 - shape.experts_used / shape.experts
    expert_params = (shape.parameters - shape.active_parameters) / unused_share if unused_share > 0 else 0
    return int(min(expert_params, shape.parameters) * bits_per_param / 8)


def _same_quant(a: str, b: str | None) -> bool:
    return b is not None and a.strip().upper().replace("-", "_") == b.upper()
