"""One `llama_batch`: tokens from many sequences, decoded together in one `llama_decode` call."""

from __future__ import annotations

import llama_cpp


class TokenBatch:
    """A reusable batch of up to `capacity` tokens, each in one sequence; owns its llama.cpp memory."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._batch: llama_cpp.llama_batch | None = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.n_tokens = 0
        self.runs: list[tuple[int, int]] = []  # (sequence, tokens) as added: what the step's cost depends on
        self.n_outputs = 0  # tokens whose logits are asked for

    @property
    def raw(self) -> llama_cpp.llama_batch:
        """The struct to pass to `llama_decode`, with its token count set."""
        assert self._batch is not None, "batch used after close"
        self._batch.n_tokens = self.n_tokens
        return self._batch

    @property
    def room(self) -> int:
        """How many more tokens fit."""
        return self.capacity - self.n_tokens

    def clear(self) -> None:
        """Empty the batch for the next step."""
        self.n_tokens = 0
        self.runs = []
        self.n_outputs = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append a token at `pos` of sequence `seq`; returns its index (where its logits will be)."""
        batch = self._batch
        assert batch is not None and self.n_tokens < self.capacity
        i = self.n_tokens
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits
        self.n_tokens = i + 1
        self.runs.append((seq, 1))
        self.n_outputs += logits
        return i

    def add_run(self, tokens: list[int], start: int, seq: int, logits_last: bool, logits_all: bool = False) -> int:
        """Append consecutive tokens of one sequence from position `start`; returns the last index.
        Logits for the last token (`logits_last`) or for every one (`logits_all`: a draft to verify)."""
        batch = self._batch
        assert batch is not None and self.n_tokens + len(tokens) <= self.capacity and tokens
        token, pos, n_seq, seq_ids, logits = batch.token, batch.pos, batch.n_seq_id, batch.seq_id, batch.logits
        i = self.n_tokens
        for offset, value in enumerate(tokens):
            token[i] = value
            pos[i] = start + offset
            n_seq[i] = 1
            seq_ids[i][0] = seq
            logits[i] = logits_all
            i += 1
        logits[i - 1] = logits_last or logits_all
        self.n_tokens = i
        self.runs.append((seq, len(tokens)))
        self.n_outputs += len(tokens) if logits_all else int(logits_last)
        return i - 1

    def close(self) -> None:
        """Free the batch's arrays."""
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
