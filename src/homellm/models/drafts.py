"""Whether one model can draft for another (speculative decoding), from their files' facts.

A draft must be cheaper to run than its target, hold the target's context, and share its
tokenizer: the metadata tells most of that before anything loads, and loading compares every
token (engine/vocabulary.py).
"""

from __future__ import annotations

from homellm.models.gguf import ENCODER_ARCHITECTURES, ModelFacts

# Tokenizer metadata two models must agree on for one to draft for the other (checked again token by
# token when they load, engine/vocabulary.py).
_TOKENIZER_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
                   "tokenizer.ggml.eos_token_id")


def draft_refusal(target: ModelFacts, draft: ModelFacts, ctx: int) -> str | None:
    """Why a model with `draft`'s facts cannot draft for `target`'s at `ctx` tokens; None when it can."""
    if draft.architecture in ENCODER_ARCHITECTURES:
        return f"it is an embedding model ({draft.architecture}), which generates no tokens"
    if draft.parameters > target.parameters or (draft.parameters == target.parameters
                                                  and draft.tensor_bytes > target.tensor_bytes):
        return (f"it is larger ({draft.parameters / 1e6:,.0f}M parameters, {draft.tensor_bytes / 2**20:,.0f} MiB "
                f"against {target.parameters / 1e6:,.0f}M, {target.tensor_bytes / 2**20:,.0f} MiB): a draft "
                "must be cheaper to run than its target")
    if draft.context_length is not None and draft.context_length < ctx:
        return f"it was trained on {draft.context_length:,} tokens of context, and the target serves {ctx:,}"
    if draft.vocab_size != target.vocab_size and abs((draft.vocab_size or 0) - (target.vocab_size or 0)) > 128:
        return f"their vocabularies have {target.vocab_size} and {draft.vocab_size} tokens"
    for key in _TOKENIZER_KEYS:
        if key in target.metadata and key in draft.metadata and target.metadata[key] != draft.metadata[key]:
            return f"their {key} differ ({target.metadata[key]} against {draft.metadata[key]})"
    return None
