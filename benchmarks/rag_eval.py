"""Retrieval quality and speed of `homellm docs` on a corpus nobody here wrote.

The corpus is the Python standard library's module docs (benchmarks/rag_corpus.py):
each query is a module's one-line summary with the module's name removed, and the
answer is that module's document, from which the summary was taken out.

Prints, for BM25 alone, dense alone and hybrid (reciprocal rank fusion):
recall@5 and MRR@10 at the document level; then ingest speed (chunks/s, files/s)
and query latency p50/p95 of hybrid search over 10,000 chunks.

Targets: hybrid recall@5 and MRR@10 above BM25 alone; p50 query < 50 ms at 10,000 chunks.

    .venv/bin/python benchmarks/rag_eval.py [--queries 60] [--json] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from rag_corpus import build_corpus  # noqa: E402

from homellm.docs import open_library  # noqa: E402
from homellm.docs.chunking import Chunk  # noqa: E402
from homellm.docs.index import CollectionIndex, IndexedFile  # noqa: E402
from homellm.models.store import Store  # noqa: E402

MODES = ("bm25", "dense", "hybrid")
LATENCY_CHUNKS = 10_000
LATENCY_QUERIES = 200


def document_ranks(library, name: str, queries, corpus_root: Path, mode: str) -> list[int | None]:
    """For each query, the rank (1-based) of its answer among distinct documents, or None past 10."""
    ranks: list[int | None] = []
    for query in queries:
        hits = library.search(name, query.text, k=10, mode=mode, max_per_file=1)
        paths = [Path(hit.path).relative_to(corpus_root).as_posix() for hit in hits]
        ranks.append(paths.index(query.answer) + 1 if query.answer in paths else None)
    return ranks


def quality(ranks: list[int | None]) -> dict[str, float]:
    """recall@5 and MRR@10 of a list of answer ranks."""
    n = len(ranks)
    return {
        "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / n,
        "mrr@10": sum(1.0 / r for r in ranks if r is not None and r <= 10) / n,
    }


def latency_index(library, source: str, target: Path, chunks: int) -> CollectionIndex:
    """A collection of `chunks` chunks: the corpus's files, chunks and vectors, copied under new folders."""
    rows = library.index(source)
    ids, matrix = rows.vectors()
    stored = rows.chunks([int(i) for i in ids])
    by_file: dict[str, list[int]] = {}
    for row, chunk_id in enumerate(ids):
        by_file.setdefault(stored[int(chunk_id)].path, []).append(row)
    meta = rows.meta()
    index = CollectionIndex(target)
    index.create({"roots": [], "glob": None, "embedding_model": meta["embedding_model"], "dim": meta["dim"]})
    batch: list[IndexedFile] = []
    made, copy = 0, 0
    while made < chunks:
        for path, positions in by_file.items():
            take = positions[: chunks - made]
            if not take:
                break
            group = [stored[int(ids[i])] for i in take]
            batch.append(IndexedFile(f"/copy{copy}{path}", 0, 0.0, f"{copy}{path}", "text", "",
                                     [Chunk(c.text, c.line_start, c.line_end) for c in group], matrix[take]))
            made += len(take)
        copy += 1
    index.write(batch)
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--home", type=Path, help="HOMELLM_HOME to use (default: a temporary one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "home"
        corpus = build_corpus(Path(tmp) / "corpus", n_queries=args.queries)
        words = sum(len(p.read_text().split()) for p in corpus.documents)
        console.print(f"corpus: {len(corpus.documents)} documents, {words:,} words, {len(corpus.queries)} queries "
                      f"(Python {platform.python_version()})")
        store = Store(home)
        library = open_library(home, store)
        started = time.perf_counter()
        library.embedder()
        load_seconds = time.perf_counter() - started
        name = f"rageval{int(time.time())}"
        report = library.add(name, [corpus.root])
        ingest = {"files": report.added, "chunks": report.chunks, "seconds": report.seconds,
                  "chunks_per_s": report.chunks / report.seconds, "files_per_s": report.added / report.seconds,
                  "embedder_load_s": load_seconds}
        console.print(f"ingest: {report.added} files, {report.chunks} chunks in {report.seconds:.1f} s")
        results = {mode: quality(document_ranks(library, name, corpus.queries, corpus.root, mode)) for mode in MODES}

        index = latency_index(library, name, home / "docs" / "latency.sqlite", LATENCY_CHUNKS)
        queries = [q.text for q in corpus.queries]
        library.search("latency", queries[0], k=10)  # the first search reads the vectors into memory
        times = []
        for i in range(LATENCY_QUERIES):
            start = time.perf_counter()
            library.search("latency", queries[i % len(queries)], k=10)
            times.append(time.perf_counter() - start)
        files, chunk_count = index.counts()
        latency = {"chunks": chunk_count, "queries": LATENCY_QUERIES,
                   "p50_ms": statistics.median(times) * 1000,
                   "p95_ms": float(np.percentile(times, 95)) * 1000}
        library.remove(name)
    out = {"corpus": {"documents": len(corpus.documents), "words": words, "queries": len(corpus.queries),
                      "python": platform.python_version()},
           "quality": results, "ingest": ingest, "latency": latency}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    table = Table(title="retrieval quality (document level)", header_style="bold")
    for column in ("retriever", "recall@5", "MRR@10", "vs BM25 (MRR)"):
        table.add_column(column, justify="left" if column == "retriever" else "right")
    base = results["bm25"]["mrr@10"]
    for mode in MODES:
        r = results[mode]
        table.add_row(mode, f"{r['recall@5']:.3f}", f"{r['mrr@10']:.3f}", f"{r['mrr@10'] / base:.2f}x" if base else "-")
    Console().print(table)
    Console().print(f"ingest: {ingest['chunks_per_s']:.1f} chunks/s, {ingest['files_per_s']:.1f} files/s "
                    f"({ingest['chunks']} chunks, {ingest['seconds']:.1f} s; embedding model loaded in "
                    f"{load_seconds:.1f} s)")
    Console().print(f"query latency at {latency['chunks']:,} chunks: p50 {latency['p50_ms']:.1f} ms, "
                    f"p95 {latency['p95_ms']:.1f} ms (target p50 < 50 ms)")


if __name__ == "__main__":
    main()
