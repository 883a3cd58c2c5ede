"""The document collections under HOMELLM_HOME/docs: add, sync, list, remove and search them.

Ingest reads files, cuts them into chunks, embeds the chunks and writes them
in transactions of whole files, reporting progress through a callback so the
CLI can draw a bar and the server can stay quiet.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from homellm.docs.answer import Grounding
from homellm.docs.chunking import DEFAULT_CHUNK_TOKENS, chunk_blocks
from homellm.docs.index import CollectionIndex, FileRecord, IndexedFile
from homellm.docs.loaders import SkippedFile, load_file, sniff
from homellm.docs.search import MAX_PER_FILE, Hit, SearchMode, search
from homellm.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    HomellmError,
    InvalidRequestError,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SKIP_DIRS = {"node_modules", "__pycache__", "venv", ".venv", "site-packages", "dist", "build"}
_EMBED_GROUP = 64  # chunks embedded and written together: one transaction, one progress step


class TextEmbedder(Protocol):
    """What ingest and search need of an embedding model."""

    name: str
    n_embd: int

    def count_tokens(self, text: str) -> int: ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...


Progress = Callable[[int, int, str], None]  # (files done, files in all, current path)


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as `docs ls` shows it."""

    name: str
    roots: list[str]
    glob: str | None
    files: int
    chunks: int
    complete: bool
    embedding_model: str
    updated: float
    size_bytes: int
    damaged: str | None = None  # why the index cannot be read

    def to_json(self) -> dict[str, object]:
        """The shape of a collection in `docs ls --json` and `/homellm/docs`."""
        return {"name": self.name, "roots": self.roots, "glob": self.glob, "files": self.files,
                "chunks": self.chunks, "complete": self.complete, "embedding_model": self.embedding_model,
                "updated": self.updated, "size_bytes": self.size_bytes, "damaged": self.damaged}


@dataclass
class IngestReport:
    """What an add or a sync did."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, note): capped files, empty files

    def to_json(self) -> dict[str, object]:
        """The report as `--json` prints it."""
        return {"added": self.added, "changed": self.changed, "removed": self.removed,
                "unchanged": self.unchanged, "chunks": self.chunks, "seconds": round(self.seconds, 3),
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "notes": [{"path": p, "note": n} for p, n in self.notes]}


def check_collection_name(name: str) -> str:
    """A collection name is a file name: letters, digits, `.`, `_`, `-`."""
    if not _NAME.match(name or ""):
        raise InvalidRequestError(f"{name!r} is not a valid collection name",
                                  hint="use letters, digits, '.', '_' and '-' (64 at most), "
                                       "starting with a letter or digit", param="collection")
    return name


class DocsLibrary:
    """Every collection of one HOMELLM_HOME, with the embedding model they share (loaded on first use)."""

    def __init__(self, home: Path, embedder: Callable[[], TextEmbedder]) -> None:
        self.root = home / "docs"
        self._make_embedder = embedder
        self._embedder: TextEmbedder | None = None
        self._lock = threading.Lock()
        self._indexes: dict[str, CollectionIndex] = {}

    # ----- reading -----

    def names(self) -> list[str]:
        """The collections, by name (files in the folder that are not collections are left alone)."""
        if not self.root.is_dir():
            return []
        return sorted(path.stem for path in self.root.glob("*.sqlite") if _NAME.match(path.stem))

    def list(self) -> list[CollectionInfo]:
        """Every collection with its counts; a damaged one is listed with what is wrong."""
        infos = []
        for name in self.names():
            try:
                infos.append(self.info(name))
            except HomellmError as exc:
                infos.append(CollectionInfo(name, [], None, 0, 0, False, "", 0.0, 0, damaged=exc.message))
        return infos

    def info(self, name: str) -> CollectionInfo:
        """One collection with its counts."""
        index = self._index(name)
        meta = index.meta()
        files, chunks = index.counts()
        size = sum(path.stat().st_size for path in _database_files(self.root, name) if path.is_file())
        return CollectionInfo(name, list(meta.get("roots", [])), meta.get("glob"), files, chunks,  # type: ignore[arg-type]
                              bool(meta.get("complete")), str(meta.get("embedding_model", "")),
                              float(meta.get("updated", meta.get("created", 0.0))), size)  # type: ignore[arg-type]

    def search(self, name: str, query: str, k: int = 10, mode: SearchMode = "hybrid",
               max_per_file: int = MAX_PER_FILE) -> list[Hit]:
        """The best k chunks of a collection for a query, at most `max_per_file` from one file."""
        if k < 1 or k > 100:
            raise InvalidRequestError(f"k must be between 1 and 100, not {k}", param="k")
        index = self._index(name)
        if mode != "bm25":
            self._check_model(name, index)
        return search(index, query, lambda text: self.embedder().embed_texts([text])[0], k, mode, max_per_file)

    def grounding(self, names: Sequence[str], messages: list[dict[str, Any]], question: str, k: int,
                  answer_reserve: int | None) -> Grounding:
        """The best k chunks for `question` over the collections (fused scores are on one scale),
        ready to ground `messages` once the model's tokenizer and context are known."""
        hits = [hit for name in names for hit in self.search(name, question, k)]
        return Grounding(messages, sorted(hits, key=lambda hit: -hit.score)[:k], answer_reserve)

    def index(self, name: str) -> CollectionIndex:
        """A collection's database (for benchmarks and tools that read it directly)."""
        return self._index(name)

    def embedder(self) -> TextEmbedder:
        """The embedding model, loaded once."""
        with self._lock:
            if self._embedder is None:
                self._embedder = self._make_embedder()
            return self._embedder

    # ----- writing -----

    def add(self, name: str, paths: Sequence[Path], glob: str | None = None,
            progress: Progress | None = None) -> IngestReport:
        """Create a collection from files and folders, and index them."""
        roots = self.check_add(name, paths)
        embedder = self.embedder()
        index = CollectionIndex(self.root / f"{name}.sqlite")
        index.create({"roots": roots, "glob": glob, "embedding_model": embedder.name, "dim": embedder.n_embd})
        self._indexes[name] = index
        return self._ingest(index, progress)

    def check_add(self, name: str, paths: Sequence[Path]) -> list[str]:
        """The roots of a new collection, resolved; refuses a taken name or a missing path."""
        check_collection_name(name)
        if (self.root / f"{name}.sqlite").exists():
            raise CollectionExistsError(f"a collection named {name!r} exists",
                                        hint=f"homellm docs sync {name} re-indexes it; "
                                             f"homellm docs rm {name} removes it", param="collection")
        if not paths:
            raise InvalidRequestError("no files or folders to add", hint="homellm docs add NAME PATH...")
        roots = []
        for path in paths:
            if not path.exists():
                raise InvalidRequestError(f"{path} does not exist", hint="give files or folders that exist")
            roots.append(str(path.resolve()))
        return roots

    def sync(self, name: str, progress: Progress | None = None) -> IngestReport:
        """Re-index changed files, index new ones, drop deleted ones; completes an interrupted add."""
        index = self._index(name)
        self._check_model(name, index)
        return self._ingest(index, progress)

    def remove(self, name: str) -> str:
        """Delete a collection's index (the user's files stay untouched), even a damaged one."""
        self._index(name)
        self._indexes.pop(name, None)
        for path in _database_files(self.root, name):
            path.unlink(missing_ok=True)
        return name

    def _check_model(self, name: str, index: CollectionIndex) -> None:
        meta = index.meta()
        embedder = self.embedder()
        if meta.get("embedding_model") != embedder.name or meta.get("dim") != embedder.n_embd:
            raise HomellmError(f"{name} was indexed with {meta.get('embedding_model')}, not {embedder.name}",
                               hint=f"homellm docs rm {name} and add it again")

    # ----- internals -----

    def _index(self, name: str) -> CollectionIndex:
        check_collection_name(name)
        path = self.root / f"{name}.sqlite"
        if not path.is_file():
            names = self.names()
            hint = f"collections: {', '.join(names)}" if names else "homellm docs add NAME PATH... makes one"
            raise CollectionNotFoundError(f"no document collection named {name!r}", hint=hint, param="collection")
        index = self._indexes.get(name)
        if index is None:
            index = self._indexes[name] = CollectionIndex(path)
        return index

    def _ingest(self, index: CollectionIndex, progress: Progress | None) -> IngestReport:
        started = time.perf_counter()
        meta = index.meta()
        index.set_meta(complete=False)
        report = IngestReport()
        roots = [Path(root) for root in meta["roots"]]  # type: ignore[union-attr]
        missing = [str(root) for root in roots if not root.exists()]
        if missing:
            # An unmounted disk or a renamed folder is not a reason to forget its files.
            raise InvalidRequestError(f"{', '.join(missing)} no longer exists; nothing was changed",
                                      hint="mount or restore it and sync again, or docs rm the collection")
        unwalked: list[str] = []
        found = dict(walk_files(roots, meta.get("glob"), report.skipped, unwalked))  # type: ignore[arg-type]
        known = index.files()
        gone = [path for path in known if path not in found
                and not any(path.startswith(folder + os.sep) for folder in unwalked)]
        index.remove_files(gone)
        report.removed = len(gone)
        pending: list[tuple[str, os.stat_result, FileRecord | None]] = []
        for path, stat in found.items():
            record = known.get(path)
            if record is not None and record.size == stat.st_size and record.mtime == stat.st_mtime:
                report.unchanged += 1
            else:
                pending.append((path, stat, record))
        self._index_files(index, pending, report, progress)
        index.set_meta(complete=True, updated=time.time())
        report.seconds = time.perf_counter() - started
        return report

    def _index_files(self, index: CollectionIndex, pending: list[tuple[str, os.stat_result, FileRecord | None]],
                     report: IngestReport, progress: Progress | None) -> None:
        embedder = self.embedder()
        group: list[tuple[IndexedFile, bool]] = []
        group_chunks = 0
        for done, (path, stat, record) in enumerate(pending):
            if progress:
                progress(done, len(pending), path)
            item = self._read(Path(path), stat, record, report)
            if item is None:
                continue
            if record is not None and record.sha256 == item.sha256:
                index.touch(path, stat.st_mtime)  # same bytes, new mtime: nothing to re-embed
                report.unchanged += 1
                continue
            group.append((item, record is not None))
            group_chunks += len(item.chunks)
            if group_chunks >= _EMBED_GROUP:
                self._write_group(index, embedder, group, report)
                group, group_chunks = [], 0
        if group:
            self._write_group(index, embedder, group, report)
        if progress:
            progress(len(pending), len(pending), "")

    def _read(self, path: Path, stat: os.stat_result, record: FileRecord | None,
              report: IngestReport) -> IndexedFile | None:
        try:
            sniff(path)  # before hashing: a video or a model file in the folder is never read whole
            digest = _sha256(path)
            if record is not None and record.sha256 == digest:
                return IndexedFile(str(path), stat.st_size, stat.st_mtime, digest, record.kind, record.note, [],
                                   np.zeros((0, 0), np.float32))
            loaded = load_file(path)
        except SkippedFile as skipped:
            report.skipped.append((str(path), skipped.reason))
            return None
        except OSError as exc:
            report.skipped.append((str(path), f"unreadable ({exc.strerror or exc})"))
            return None
        except Exception as exc:  # noqa: BLE001 - one odd file (a PDF filter pypdf lacks) must not stop the rest
            report.skipped.append((str(path), f"unreadable ({type(exc).__name__}: {exc})"))
            return None
        chunks = chunk_blocks(loaded.blocks, self._count_tokens, DEFAULT_CHUNK_TOKENS)
        note = loaded.note or ("" if chunks else "no text")
        if note:
            report.notes.append((str(path), note))
        return IndexedFile(str(path), stat.st_size, stat.st_mtime, digest, loaded.kind, note, chunks,
                           np.zeros((0, 0), np.float32))

    def _count_tokens(self, text: str) -> int:
        return self.embedder().count_tokens(text)

    @staticmethod
    def _write_group(index: CollectionIndex, embedder: TextEmbedder, group: list[tuple[IndexedFile, bool]],
                     report: IngestReport) -> None:
        texts = [chunk.text for item, _ in group for chunk in item.chunks]
        vectors = embedder.embed_texts(texts) if texts else np.zeros((0, embedder.n_embd), np.float32)
        ready, start = [], 0
        for item, existed in group:
            end = start + len(item.chunks)
            ready.append(IndexedFile(item.path, item.size, item.mtime, item.sha256, item.kind, item.note,
                                     item.chunks, vectors[start:end]))
            start = end
            report.chunks += len(item.chunks)
            if existed:
                report.changed += 1
            else:
                report.added += 1
        index.write(ready)


def walk_files(roots: list[Path], glob: str | None, skipped: list[tuple[str, str]],
               unwalked: list[str] | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under the roots (and the roots that are files), never leaving the roots through a link.

    Folders that cannot be listed are reported in `skipped` and their real paths added to `unwalked`.
    """
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()

    def inside(real: str) -> bool:
        return any(real == str(root) or real.startswith(str(root) + os.sep) for root in real_roots)

    def accept(path: Path, base: Path) -> Iterator[tuple[str, os.stat_result]]:
        real = os.path.realpath(path)
        if not inside(real):
            skipped.append((str(path), "a link that leads outside the folders given"))
            return
        if glob and not (fnmatch.fnmatch(path.name, glob) or fnmatch.fnmatch(str(path.relative_to(base)), glob)):
            return
        try:
            stat = os.stat(real)
        except OSError as exc:
            skipped.append((str(path), f"unreadable ({exc.strerror or exc})"))
            return
        if real not in seen_files and os.path.isfile(real):
            seen_files.add(real)
            yield real, stat

    for root in real_roots:
        if root.is_file():
            yield from accept(root, root.parent)
            continue
        def unreadable(error: OSError) -> None:
            skipped.append((str(error.filename), f"folder unreadable ({error.strerror or error})"))
            if unwalked is not None and error.filename:
                unwalked.append(os.path.realpath(error.filename))

        for directory, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
            real_dir = os.path.realpath(directory)
            if not inside(real_dir):
                skipped.append((directory, "a link that leads outside the folders given"))
                dirnames[:] = []
                continue
            if real_dir in seen_dirs:  # a link loop, or a folder reached twice
                dirnames[:] = []
                continue
            seen_dirs.add(real_dir)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
            for filename in sorted(filenames):
                if not filename.startswith("."):
                    yield from accept(Path(directory) / filename, root)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()




def _database_files(root: Path, name: str) -> list[Path]:
    """A collection's database and SQLite's files beside it."""
    return [root / f"{name}.sqlite{suffix}" for suffix in ("", "-wal", "-shm", "-journal")]
