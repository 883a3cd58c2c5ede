"""Hybrid search: BM25 over words and cosine over meaning, fused by reciprocal rank.

Any text a user types is a safe query: it is cut into words here and every word
is quoted, so quotes, `AND (`, `NEAR`, `*` and `-` never reach FTS5 as syntax.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from homellm.docs.index import CollectionIndex
from homellm.errors import InvalidRequestError

SearchMode = Literal["hybrid", "bm25", "dense"]
SEARCH_MODES: tuple[str, ...] = ("hybrid", "bm25", "dense")
RRF_K = 60  # the constant of Cormack et al.; ranks past it weigh little
CANDIDATES = 50  # from each retriever, before fusing
MAX_PER_FILE = 2  # so one long document does not fill the top k
MAX_QUERY_TERMS = 64
MAX_QUERY_CHARS = 2000  # a pasted document as a query is searched by its start
MAX_WIDENINGS = 4
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have how i in is it its of on or that the this to was what "
    "when where which who why will with you your do does can".split())


@dataclass(frozen=True)
class Hit:
    """One search result, as `--json` and the API show it."""

    chunk_id: int
    path: str
    score: float
    text: str
    line_start: int
    line_end: int
    page: int | None

    def where(self) -> str:
        """`path:12-30`, or `path (page 4)` for a PDF."""
        if self.page is not None:
            return f"{self.path} (page {self.page})"
        if self.line_start == self.line_end:
            return f"{self.path}:{self.line_start}"
        return f"{self.path}:{self.line_start}-{self.line_end}"

    def to_json(self) -> dict[str, object]:
        """The shape of a hit in `--json` and `/homellm/docs/{name}/search`."""
        out: dict[str, object] = {"path": self.path, "score": round(self.score, 6), "text": self.text,
                                  "chunk_id": self.chunk_id}
        if self.page is not None:
            out["page"] = self.page
        else:
            out["lines"] = [self.line_start, self.line_end]
        return out


def check_query(text: str) -> str:
    """The query, stripped; an empty one is a clear error."""
    stripped = text.strip() if isinstance(text, str) else ""
    if not stripped:
        raise InvalidRequestError("the search query is empty", hint="type some words to search for", param="query")
    return stripped


def fts_match(text: str) -> str | None:
    """An FTS5 query that matches any of the text's words, each quoted; None when it has no words.

    Common English words are left out unless nothing else is left: BM25 gives them almost no
    weight, yet matching them makes FTS5 score nearly every chunk (the slow tail of queries).
    """
    words: dict[str, None] = {}
    for match in _WORD.finditer(text.lower()):
        words.setdefault(match.group(), None)
        if len(words) == MAX_QUERY_TERMS:
            break
    if not words:
        return None
    kept = [word for word in words if word not in STOPWORDS] or list(words)
    return " OR ".join(f'"{word}"' for word in kept)


def search(index: CollectionIndex, query: str, embed: Callable[[str], np.ndarray], k: int = 10,
           mode: SearchMode = "hybrid", max_per_file: int = MAX_PER_FILE) -> list[Hit]:
    """The k best chunks for `query`; at most `max_per_file` from any one file."""
    query = check_query(query)[:MAX_QUERY_CHARS]
    if mode not in SEARCH_MODES:
        raise InvalidRequestError(f"unknown search mode {mode!r}", hint=f"use one of {', '.join(SEARCH_MODES)}")
    match = fts_match(query) if mode in ("hybrid", "bm25") else None
    vector = embed(query) if mode in ("hybrid", "dense") else None
    candidates = max(CANDIDATES, k * 4)
    for _ in range(MAX_WIDENINGS):
        ranked: list[list[tuple[int, float]]] = []
        if mode in ("hybrid", "bm25"):
            ranked.append(index.bm25(match, candidates) if match else [])
        if vector is not None:
            ranked.append(index.nearest(vector, candidates))
        fused = ranked[0] if len(ranked) == 1 else reciprocal_rank_fusion(ranked)
        hits = _top_per_file(index, fused, k, max_per_file)
        # A few long files can fill the candidates; look deeper while a retriever had more to give.
        if len(hits) == k or all(len(r) < candidates for r in ranked):
            return hits
        candidates *= 4
    return hits


def reciprocal_rank_fusion(rankings: list[list[tuple[int, float]]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Items of several rankings ordered by the sum of 1 / (k + rank)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (item, _) in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def _top_per_file(index: CollectionIndex, ranked: list[tuple[int, float]], k: int,
                  max_per_file: int) -> list[Hit]:
    chunks = index.chunks([chunk_id for chunk_id, _ in ranked])
    taken: dict[str, int] = {}
    hits: list[Hit] = []
    for chunk_id, score in ranked:
        chunk = chunks.get(chunk_id)
        if chunk is None:  # deleted by a sync between the two reads
            continue
        if taken.get(chunk.path, 0) >= max_per_file:
            continue
        taken[chunk.path] = taken.get(chunk.path, 0) + 1
        hits.append(Hit(chunk.id, chunk.path, score, chunk.text, chunk.line_start, chunk.line_end, chunk.page))
        if len(hits) == k:
            break
    return hits
