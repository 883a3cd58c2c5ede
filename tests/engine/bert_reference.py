"""A pure-numpy BERT sentence embedder on the original safetensors, to check llama.cpp's output against.

The tokenizer follows Hugging Face's BertTokenizer (uncased): clean the text, space
out CJK characters, lower-case and strip accents, split on whitespace and
punctuation, then WordPiece greedy longest-match-first. The forward pass is
BERT's: embeddings + LayerNorm, post-LN self-attention and erf-GELU feed-forward
blocks; then mean pooling and L2 normalisation, as sentence-transformers does.
"""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

_MAX_WORD_CHARS = 100  # longer words become [UNK], as in Hugging Face


class WordPiece:
    """BertTokenizer's uncased tokenization over a vocab.txt."""

    def __init__(self, vocab_file: Path) -> None:
        tokens = vocab_file.read_text(encoding="utf-8").split("\n")
        self.ids = {token: index for index, token in enumerate(tokens) if token}
        self.cls, self.sep, self.unk = self.ids["[CLS]"], self.ids["[SEP]"], self.ids["[UNK]"]

    def encode(self, text: str) -> list[int]:
        """[CLS] + word pieces + [SEP]."""
        pieces = [piece for word in _basic_split(text) for piece in self._word(word)]
        return [self.cls, *pieces, self.sep]

    def _word(self, word: str) -> list[int]:
        if len(word) > _MAX_WORD_CHARS:
            return [self.unk]
        out: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.ids:
                    out.append(self.ids[piece])
                    break
                end -= 1
            else:
                return [self.unk]  # one unmatched piece makes the whole word unknown
            start = end
        return out


def _basic_split(text: str) -> list[str]:
    cleaned = "".join(" " if _is_space(ch) else ch for ch in text if not _is_dropped(ch))
    spaced = "".join(f" {ch} " if _is_cjk(ord(ch)) else ch for ch in cleaned)
    words: list[str] = []
    for word in spaced.split():
        word = "".join(ch for ch in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(ch) != "Mn")
        words.extend(_split_punctuation(word))
    return words


def _split_punctuation(word: str) -> list[str]:
    parts: list[str] = []
    current = ""
    for ch in word:
        if _is_punctuation(ch):
            if current:
                parts.append(current)
            parts.append(ch)
            current = ""
        else:
            current += ch
    if current:
        parts.append(current)
    return parts


def _is_space(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_dropped(ch: str) -> bool:
    if ord(ch) in (0, 0xFFFD):
        return True
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    code = ord(ch)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(code: int) -> bool:
    return any(low <= code <= high for low, high in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class BertReference:
    """all-MiniLM-L6-v2 (or any uncased BERT folder) in float64 numpy."""

    def __init__(self, folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        self.n_layers = config["num_hidden_layers"]
        self.n_heads = config["num_attention_heads"]
        self.eps = config.get("layer_norm_eps", 1e-12)
        weights = load_file(str(folder / "model.safetensors"))
        self.w = {name.removeprefix("bert."): value.astype(np.float64) for name, value in weights.items()
                  if value.dtype.kind == "f"}
        self.tokenizer = WordPiece(folder / "vocab.txt")

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        """The unit-length sentence vector of one token sequence."""
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:len(ids)]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        for layer in range(self.n_layers):
            x = self._block(x, f"encoder.layer.{layer}.")
        pooled = x.mean(axis=0)
        return pooled / np.linalg.norm(pooled)

    def embed(self, text: str) -> np.ndarray:
        return self.embed_ids(self.tokenizer.encode(text))

    def _block(self, x: np.ndarray, p: str) -> np.ndarray:
        w = self.w

        def linear(name: str, h: np.ndarray) -> np.ndarray:
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        n, d = x.shape
        head = d // self.n_heads
        q, k, v = (linear(f"attention.self.{part}", x).reshape(n, self.n_heads, head).transpose(1, 0, 2)
                   for part in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        attn = attn.transpose(1, 0, 2).reshape(n, d)
        x = _layer_norm(x + linear("attention.output.dense", attn),
                        w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
        ffn = linear("output.dense", _gelu(linear("intermediate.dense", x)))
        return _layer_norm(x + ffn, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
