"""One collection's index: a SQLite file with its files, chunks, an FTS5 table and the chunk vectors.

Each collection has its own database, so BM25's word statistics are the
collection's own and `docs rm` is one file deleted. Files are written in
transactions of whole files: a killed ingest leaves every file either fully
indexed or absent, and the next sync completes the rest without duplicates.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from homellm.docs.chunking import Chunk
from homellm.errors import StoreError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sha256 TEXT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    indexed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id),
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    page INTEGER,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks(file_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""


@dataclass(frozen=True)
class FileRecord:
    """A file as it was when indexed."""

    id: int
    path: str
    size: int
    mtime: float
    sha256: str
    kind: str
    note: str


@dataclass(frozen=True)
class IndexedFile:
    """A file ready to write: what it is, its chunks and their vectors (one row per chunk)."""

    path: str
    size: int
    mtime: float
    sha256: str
    kind: str
    note: str
    chunks: list[Chunk]
    vectors: np.ndarray


@dataclass(frozen=True)
class StoredChunk:
    """A chunk read back for a search result."""

    id: int
    path: str
    text: str
    line_start: int
    line_end: int
    page: int | None


class CollectionIndex:
    """The database of one collection; every method opens its own short connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # ((collection uuid, generation), ids, matrix): a collection removed and made again under the
        # same name starts at generation 0 again, so the uuid tells the two apart.
        self._vectors: tuple[tuple[str, int], np.ndarray, np.ndarray] | None = None

    def create(self, meta: dict[str, object]) -> None:
        """Make the database with its settings (roots, glob, embedding model, dimension)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(immediate=True, create=True) as conn:
            fresh = {"uuid": uuid.uuid4().hex, "generation": 0, "complete": False, "created": time.time()}
            for key, value in {**meta, **fresh}.items():
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # ----- settings -----

    def meta(self) -> dict[str, object]:
        """Every setting and counter of the collection."""
        with self._connect() as conn:
            return {key: json.loads(value) for key, value in conn.execute("SELECT key, value FROM meta")}

    def set_meta(self, **values: object) -> None:
        """Change settings."""
        with self._connect(immediate=True) as conn:
            for key, value in values.items():
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # ----- files -----

    def files(self) -> dict[str, FileRecord]:
        """The indexed files by path."""
        with self._connect() as conn:
            rows = conn.execute("SELECT id, path, size, mtime, sha256, kind, note FROM files").fetchall()
        return {row[1]: FileRecord(*row) for row in rows}

    def counts(self) -> tuple[int, int]:
        """(files, chunks)."""
        with self._connect() as conn:
            files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
            chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return files, chunks

    def write(self, batch: list[IndexedFile]) -> None:
        """Replace these files' chunks, all in one transaction."""
        now = time.time()
        with self._connect(immediate=True) as conn:
            for item in batch:
                self._delete_file(conn, item.path)
                cursor = conn.execute(
                    "INSERT INTO files (path, size, mtime, sha256, kind, note, indexed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (item.path, item.size, item.mtime, item.sha256, item.kind, item.note, now))
                file_id = cursor.lastrowid
                vectors = np.ascontiguousarray(item.vectors, dtype=np.float32)
                conn.executemany(
                    "INSERT INTO chunks (file_id, ord, text, line_start, line_end, page, vector) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(file_id, order, chunk.text, chunk.line_start, chunk.line_end, chunk.page,
                      vectors[order].tobytes()) for order, chunk in enumerate(item.chunks)])
            self._bump(conn)

    def touch(self, path: str, mtime: float) -> None:
        """Record a new mtime for a file whose contents did not change."""
        with self._connect(immediate=True) as conn:
            conn.execute("UPDATE files SET mtime = ? WHERE path = ?", (mtime, path))

    def remove_files(self, paths: list[str]) -> None:
        """Drop files and their chunks, in one transaction."""
        if not paths:
            return
        with self._connect(immediate=True) as conn:
            for path in paths:
                self._delete_file(conn, path)
            self._bump(conn)

    # ----- search -----

    def bm25(self, match: str, limit: int) -> list[tuple[int, float]]:
        """(chunk id, score) of the best full-text matches; `match` must already be a safe FTS5 query."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT rowid, bm25(chunks_fts) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
                "ORDER BY score LIMIT ?", (match, limit)).fetchall()
        return [(row[0], -row[1]) for row in rows]  # FTS5's bm25 is lower for better matches

    def nearest(self, query: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """(chunk id, cosine) of the chunks closest to a normalised query vector."""
        ids, matrix = self.vectors()
        if not len(ids):
            return []
        scores = matrix @ query.astype(np.float32)
        limit = min(limit, len(ids))
        top = np.argpartition(-scores, limit - 1)[:limit]
        top = top[np.argsort(-scores[top])]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def chunks(self, ids: list[int]) -> dict[int, StoredChunk]:
        """Chunks with their file paths, by id."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT c.id, f.path, c.text, c.line_start, c.line_end, c.page FROM chunks c "
                f"JOIN files f ON f.id = c.file_id WHERE c.id IN ({marks})", ids).fetchall()
        return {row[0]: StoredChunk(*row) for row in rows}

    # ----- internals -----

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All chunk vectors, kept in memory until the collection changes."""
        with self._connect() as conn:
            rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('uuid', 'generation')").fetchall())
            version = (json.loads(rows.get("uuid", '""')), json.loads(rows.get("generation", "0")))
            if self._vectors is not None and self._vectors[0] == version:
                return self._vectors[1], self._vectors[2]
            rows = conn.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        if rows:
            matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
        else:
            matrix = np.zeros((0, 1), dtype=np.float32)
        self._vectors = (version, ids, matrix)
        return ids, matrix

    @staticmethod
    def _delete_file(conn: sqlite3.Connection, path: str) -> None:
        row = conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
        if row is not None:
            conn.execute("DELETE FROM chunks WHERE file_id = ?", (row[0],))
            conn.execute("DELETE FROM files WHERE id = ?", (row[0],))

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    @contextmanager
    def _connect(self, immediate: bool = False, create: bool = False) -> Iterator[sqlite3.Connection]:
        # Only `create` may make the file: a reader racing `docs rm` must not leave an empty database behind.
        uri = f"file:{quote(str(self.path))}?mode={'rwc' if create else 'rw'}"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode = WAL")  # the server searches while the CLI indexes
                if immediate:
                    conn.executescript(_SCHEMA)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(f"the document index {self.path.name} is busy: {exc}",
                                 hint="another homellm docs command is writing it; try again when it is done") from None
            raise self._damaged(exc) from None
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"the document index {self.path.name} cannot be used: {exc}",
                          hint=f"homellm docs rm {self.path.stem} and add the collection again")
