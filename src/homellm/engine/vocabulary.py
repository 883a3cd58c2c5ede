"""Whether two loaded models share a vocabulary: a draft model's tokens must mean the target's.

As llama-server checks a draft (common/speculative.cpp): the same tokenizer kind, the same
BOS and EOS, vocabularies of about the same size (families pad theirs by up to 128 ids), and
the same text for every id both have.
"""

from __future__ import annotations

from homellm.engine.llama import LlamaEngine

MAX_SIZE_DIFFERENCE = 128


def vocabulary_difference(target: LlamaEngine, draft: LlamaEngine) -> str | None:
    """How the draft's vocabulary differs from the target's, in a few words; None when they agree."""
    if target.vocab_type != draft.vocab_type:
        return "their tokenizers are of different kinds"
    if abs(target.n_vocab - draft.n_vocab) > MAX_SIZE_DIFFERENCE:
        return f"their vocabularies have {target.n_vocab} and {draft.n_vocab} tokens"
    if (target.bos_token, target.eos_token) != (draft.bos_token, draft.eos_token):
        return (f"their BOS and EOS tokens differ ({target.bos_token}, {target.eos_token} against "
                f"{draft.bos_token}, {draft.eos_token})")
    for token in range(min(target.n_vocab, draft.n_vocab)):
        if target.token_text(token) != draft.token_text(token):
            return (f"token {token} is {target.token_text(token)!r} in one and {draft.token_text(token)!r} "
                    "in the other")
    return None
