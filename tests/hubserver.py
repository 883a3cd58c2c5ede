"""A loopback stand-in for the Hugging Face Hub's HTTP API, for tests.

It speaks what `huggingface_hub` (2.x) uses to download: `HEAD`/`GET /{repo}/resolve/{rev}/{file}`,
`GET /api/models/{repo}[/revision/{rev}]` (`model_info`, `repo_info`) and `GET /api/models/{repo}/tree/{rev}`
(`list_repo_files`, `list_repo_tree`, `snapshot_download`). It sends no Xet headers, so the client always falls
back to plain HTTP downloads. Faults can be injected per file name: dropped connections, corrupted bytes, HTTP errors.

What huggingface_hub 2.4.0 does with them: after a dropped connection `hf_hub_download` retries inside the same call
(sleeping 1 s, at most 5 times in a row without progress) with `Range: bytes=N-`, where N is the last multiple of
`huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE` (10 MiB) written; set that smaller to see a Range on small files.
A failed call deletes its partial file, so the next call starts from zero. Nothing checks the sha256 of what arrives.

    with FakeHub() as hub:
        hub.add_repo("owner/name", {"model.gguf": data})
        hf_hub_download("owner/name", "model.gguf", endpoint=hub.endpoint, local_dir=tmp)
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

_CHUNK = 64 * 1024
_DATE = "2024-01-01T00:00:00.000Z"
# Suffixes the Hub's default .gitattributes stores with Git LFS; files over 10 MB always are.
LFS_SUFFIXES = frozenset({
    ".7z", ".arrow", ".bin", ".bz2", ".ckpt", ".ftz", ".gguf", ".gz", ".h5", ".joblib", ".mlmodel", ".model",
    ".msgpack", ".npy", ".npz", ".onnx", ".ot", ".parquet", ".pb", ".pickle", ".pkl", ".pt", ".pth", ".rar",
    ".safetensors", ".tar", ".tflite", ".tgz", ".wasm", ".xz", ".zip", ".zst",
})
LFS_MIN_SIZE = 10 * 1024 * 1024

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+)(?P<rest>/.*)?)?$")
_CDN = re.compile(r"^/_cdn/(?P<sha>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def git_blob_id(data: bytes) -> str:
    """The git object id (sha1) of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer file git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class HubFile:
    """One file of a repo: where its bytes are, and the hashes the Hub advertises for it."""

    name: str
    source: bytes | Path
    size: int
    sha256: str
    blob_id: str  # git oid: of the LFS pointer for an LFS file, of the content otherwise
    lfs: bool

    @classmethod
    def load(cls, name: str, source: bytes | str | Path, lfs: bool | None = None) -> HubFile:
        """Hash `source` (bytes, or a path read in chunks); LFS by suffix and size unless `lfs` says."""
        source = source if isinstance(source, bytes) else Path(source)
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        sha256, git = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
        for chunk in _read(source, 0, None):
            sha256.update(chunk)
            git.update(chunk)
        if lfs is None:
            lfs = Path(name).suffix.lower() in LFS_SUFFIXES or size > LFS_MIN_SIZE
        blob_id = git_blob_id(lfs_pointer(sha256.hexdigest(), size)) if lfs else git.hexdigest()
        return cls(name, source, size, sha256.hexdigest(), blob_id, lfs)

    @property
    def pointer(self) -> bytes:
        """The LFS pointer (empty for a regular file)."""
        return lfs_pointer(self.sha256, self.size) if self.lfs else b""

    @property
    def etag(self) -> str:
        """The Hub's ETag, unquoted: the sha256 for LFS files, the git blob id otherwise."""
        return self.sha256 if self.lfs else self.blob_id

    def lfs_info(self, sha_key: str) -> dict[str, Any] | None:
        """The `lfs` object of the API's JSON (`sha_key` is "sha256" in model info, "oid" in trees)."""
        if not self.lfs:
            return None
        return {sha_key: self.sha256, "size": self.size, "pointerSize": len(self.pointer)}


def _read(source: bytes | Path, start: int, end: int | None) -> Iterator[bytes]:
    """Chunks of `source[start:end]`."""
    if isinstance(source, bytes):
        stop = len(source) if end is None else end
        for pos in range(start, stop, _CHUNK):
            yield source[pos:min(pos + _CHUNK, stop)]
        return
    with source.open("rb") as f:
        f.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            chunk = f.read(_CHUNK if left is None else min(_CHUNK, left))
            if not chunk:
                return
            left = None if left is None else left - len(chunk)
            yield chunk


@dataclass
class FakeRepo:
    """A model repo at one commit; `refs` are the branch and tag names that resolve to it."""

    repo_id: str
    commit: str
    files: dict[str, HubFile]
    refs: frozenset[str]
    info: dict[str, Any]

    def resolves(self, revision: str) -> bool:
        """Whether `revision` names this repo's commit."""
        return revision == self.commit or revision in self.refs


class Headers(dict):
    """A dict of request headers with lower-cased keys; lookups ignore case."""

    def __init__(self, items: Mapping[str, str]) -> None:
        super().__init__((k.lower(), v) for k, v in items.items())

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass
class RecordedRequest:
    """One request the hub received; `status` is what it answered (None until it answers)."""

    method: str
    path: str  # percent-decoded, without the query
    query: str
    headers: Headers
    status: int | None = None


class RequestLog:
    """A thread-safe, append-only list of `RecordedRequest`s (iterate, index, `len`, `clear`)."""

    def __init__(self) -> None:
        self._items: list[RecordedRequest] = []
        self._lock = threading.Lock()

    def append(self, item: RecordedRequest) -> None:
        """Record one request."""
        with self._lock:
            self._items.append(item)

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[RecordedRequest]:
        """A copy of the requests recorded so far."""
        with self._lock:
            return list(self._items)

    def matching(self, method: str | None = None, path_suffix: str = "") -> list[RecordedRequest]:
        """The requests with this method (any if None) whose path ends with `path_suffix`."""
        return [r for r in self.snapshot() if method in (None, r.method) and r.path.endswith(path_suffix)]

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        return len(self.snapshot())

    def __getitem__(self, index: int) -> RecordedRequest:
        return self.snapshot()[index]


class HubError(Exception):
    """An error answer, with the headers the Hub uses to say what went wrong."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}


class FakeHub:
    """A Hugging Face Hub on 127.0.0.1 (port chosen by the OS), serving repos given as data.

    Use as a context manager, or call `start()` / `stop()`. `endpoint` is the base URL to pass as `endpoint=` or
    `HF_ENDPOINT`. With `lfs_redirect=True`, LFS files answer 302 to a CDN-like URL on `localhost` (another host
    for the client, so it drops the Authorization header there), like the real Hub does.
    """

    def __init__(self, *, lfs_redirect: bool = False) -> None:
        self.lfs_redirect = lfs_redirect
        self.requests = RequestLog()
        self._repos: dict[str, FakeRepo] = {}
        self._cuts: dict[str, list[int]] = {}  # filename -> [nbytes, times left]
        self._fails: dict[str, list[int]] = {}  # filename -> [status, times left]
        self._corrupt: dict[str, int] = {}  # filename -> offset of the flipped byte
        self._token: str | None = None
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> FakeHub:
        """Listen on a free loopback port and serve from a daemon thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        # A short poll interval keeps stop() (and every test's teardown) quick.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="FakeHub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open (keep-alive) connections."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None, "FakeHub is not started"
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        """Its base URL, e.g. http://127.0.0.1:41234."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for a process that should use this hub (huggingface_hub reads these at import)."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_ETAG_TIMEOUT": "5",
            "HF_HUB_DOWNLOAD_TIMEOUT": "5",
        }

    # Content

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | str | Path],
        commit: str | None = None,
        *,
        refs: tuple[str, ...] = ("main",),
        lfs: Mapping[str, bool] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> FakeRepo:
        """Serve `repo_id` with these files (replacing any earlier version); returns the repo.

        `commit` defaults to a hash of the content; `lfs` forces a file in or out of LFS; `info` adds fields to
        the model-info JSON (e.g. "gguf", "tags").
        """
        loaded = {name: HubFile.load(name, src, (lfs or {}).get(name)) for name, src in files.items()}
        if commit is None:
            content = json.dumps([repo_id, sorted((n, f.sha256) for n, f in loaded.items())])
            commit = hashlib.sha1(content.encode()).hexdigest()
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise ValueError(f"commit must be 40 lower-case hex digits: {commit!r}")
        repo = FakeRepo(repo_id, commit, loaded, frozenset(refs), dict(info or {}))
        with self._lock:
            self._repos[repo_id] = repo
        return repo

    def remove_repo(self, repo_id: str) -> None:
        """Stop serving `repo_id` (it answers RepoNotFound from now on)."""
        with self._lock:
            self._repos.pop(repo_id, None)

    def url(self, repo_id: str, filename: str, revision: str = "main") -> str:
        """The resolve URL of a file, as huggingface_hub builds it."""
        return f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"

    # Faults

    def cut_after(self, filename: str, nbytes: int, times: int = 1) -> None:
        """The next `times` GETs of `filename` claim their full length, send `nbytes` of body, then hang up."""
        with self._lock:
            self._cuts[filename] = [nbytes, times]

    def corrupt(self, filename: str, offset: int | None = None) -> None:
        """Serve `filename` with one byte flipped (the last unless `offset`): same length, wrong sha256."""
        with self._lock:
            self._corrupt[filename] = -1 if offset is None else offset

    def fail(self, filename: str, status: int = 503, times: int = 1) -> None:
        """The next `times` HEAD/GET resolve requests for `filename` answer `status`."""
        with self._lock:
            self._fails[filename] = [status, times]

    def require_token(self, token: str | None) -> None:
        """Answer 401 to API and resolve requests without `Authorization: Bearer <token>` (None: no auth)."""
        with self._lock:
            self._token = token

    def clear_faults(self) -> None:
        """Forget every cut, corruption, failure and required token."""
        with self._lock:
            self._cuts.clear()
            self._fails.clear()
            self._corrupt.clear()
            self._token = None

    # Used by the request handler

    def _take(self, faults: dict[str, list[int]], filename: str) -> int | None:
        """Consume one use of a counted fault; its value, or None if there is none left."""
        with self._lock:
            fault = faults.get(filename)
            if fault is None or fault[1] <= 0:
                return None
            fault[1] -= 1
            return fault[0]

    def _corrupt_offset(self, file: HubFile) -> int | None:
        """Where `file`'s served bytes differ from its real content, if they do."""
        with self._lock:
            offset = self._corrupt.get(file.name)
        if offset is None or file.size == 0:
            return None
        return file.size - 1 if offset < 0 else offset

    def _check_auth(self, headers: Headers) -> None:
        """Raise the Hub's 401 unless the required token was sent."""
        with self._lock:
            token = self._token
        if token is None:
            return
        sent = headers.get("authorization")
        if sent is None:
            raise HubError(401, "Invalid username or password.", "RepoNotFound")
        if sent != f"Bearer {token}":
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str, revision: str) -> FakeRepo:
        """The repo at `revision`, or the Hub's RepoNotFound / RevisionNotFound error."""
        with self._lock:
            repo = self._repos.get(repo_id)
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        if not repo.resolves(revision):
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo

    def _file(self, repo: FakeRepo, filename: str) -> HubFile:
        """A file of `repo`, or the Hub's EntryNotFound error."""
        file = repo.files.get(filename)
        if file is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": repo.commit})
        return file

    def _by_sha256(self, sha256: str) -> HubFile:
        """An LFS file of any repo, by content hash (for the CDN route)."""
        with self._lock:
            repos = list(self._repos.values())
        for repo in repos:
            for file in repo.files.values():
                if file.lfs and file.sha256 == sha256:
                    return file
        raise HubError(404, "Not found")


def model_info_json(repo: FakeRepo, blobs: bool) -> dict[str, Any]:
    """The JSON of `GET /api/models/{repo}`; siblings carry size, blobId and lfs when `blobs`."""
    siblings = []
    for file in repo.files.values():
        sibling: dict[str, Any] = {"rfilename": file.name}
        if blobs:
            sibling.update(blobId=file.blob_id, size=file.size)
            if file.lfs:
                sibling["lfs"] = file.lfs_info("sha256")
        siblings.append(sibling)
    author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
    return {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id, "modelId": repo.repo_id,
        "author": author, "sha": repo.commit, "lastModified": _DATE, "createdAt": _DATE, "private": False,
        "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
        "spaces": [], "usedStorage": sum(f.size for f in repo.files.values()), **repo.info,
    }


def tree_json(repo: FakeRepo, path: str, recursive: bool) -> list[dict[str, Any]]:
    """The JSON of `GET /api/models/{repo}/tree/{rev}/{path}`: files, and folders as "directory" entries."""
    prefix = f"{path}/" if path else ""
    entries: dict[str, dict[str, Any]] = {}
    for file in repo.files.values():
        if not file.name.startswith(prefix):
            continue
        parts = file.name[len(prefix):].split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            oid = hashlib.sha1(folder.encode()).hexdigest()
            entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
            if not recursive:
                break
        if recursive or len(parts) == 1:
            entry = {"type": "file", "oid": file.blob_id, "size": file.size, "path": file.name}
            if file.lfs:
                entry["lfs"] = file.lfs_info("oid")
            entries[file.name] = entry
    if path and not entries:
        raise HubError(404, f"{path} does not exist", "EntryNotFound", {"X-Repo-Commit": repo.commit})
    return list(entries.values())


def _flag(query: dict[str, list[str]], name: str) -> bool:
    """Whether a boolean query parameter is set ("true", "True" or "1")."""
    return query.get(name, ["false"])[-1].lower() in ("1", "true")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single `bytes=` range; None to serve everything; ValueError if unsatisfiable."""
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.group(0) == "bytes=-":
        return None  # absent, multi-range or malformed: ignore it, as servers may
    first, last = match.groups()
    if not first:
        start, end = max(size - int(last), 0), size
        if int(last) == 0:
            raise ValueError("empty suffix range")
    else:
        start, end = int(first), size if not last else min(int(last) + 1, size)
        if start >= size or (last and int(last) < start):
            raise ValueError("range starts past the end")
    return start, end


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that tracks connections so `stop()` can drop keep-alive ones."""

    daemon_threads = True
    hub: FakeHub

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def close_connections(self) -> None:
        """Shut down every open client connection."""
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients hanging up (and about our own injected hang-ups); report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the hub's repos; one instance per connection."""

    protocol_version = "HTTP/1.1"
    server: _Server
    record: RecordedRequest | None = None

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""

    def send_response(self, code: int, message: str | None = None) -> None:
        if self.record is not None:
            self.record.status = code
        super().send_response(code, message)

    def handle_one_request(self) -> None:
        self.record = None
        super().handle_one_request()

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # anything but GET/HEAD gets a 404

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def _dispatch(self) -> None:
        """Record the request, route it, and turn `HubError`s into the Hub's error answers."""
        split = urlsplit(self.path)
        path = split.path
        self.record = RecordedRequest(self.command, unquote(path), split.query, Headers(dict(self.headers.items())))
        self.hub.requests.append(self.record)
        self._drain_body()
        try:
            if (match := _CDN.match(path)) is not None:
                self._serve_file(self.hub._by_sha256(match["sha"]), {})
            elif (match := _RESOLVE.match(path)) is not None and not path.startswith("/api/"):
                self._resolve(unquote(match["repo"]), unquote(match["rev"]), unquote(match["file"]))
            elif (match := _API.match(path)) is not None and self.command == "GET":
                self._api(match, parse_qs(split.query))
            else:
                raise HubError(404, "Sorry, we can't find the page you are looking for.")
        except HubError as error:
            self._send_error(error)

    def _drain_body(self) -> None:
        """Read and drop a request body, so keep-alive stays in sync."""
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def _api(self, match: re.Match[str], query: dict[str, list[str]]) -> None:
        """`/api/models/{repo}[/revision/{rev}]` and `/api/models/{repo}/tree/{rev}[/{path}]`."""
        self.hub._check_auth(self.record.headers)
        repo = self.hub._repo(unquote(match["repo"]), unquote(match["rev"] or "main"))
        if match["kind"] == "tree":
            body = tree_json(repo, unquote(match["rest"] or "").strip("/"), _flag(query, "recursive"))
        elif match["rest"]:
            raise HubError(404, "Sorry, we can't find the page you are looking for.")
        else:
            body = model_info_json(repo, _flag(query, "blobs"))
        self._send_json(200, body)

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        """`/{repo}/resolve/{rev}/{file}`: the file, or a redirect to the CDN for LFS files."""
        self.hub._check_auth(self.record.headers)
        repo = self.hub._repo(repo_id, revision)
        file = self.hub._file(repo, filename)
        status = self.hub._take(self.hub._fails, filename)
        if status is not None:
            raise HubError(status, f"Injected failure {status}", None, {"X-Repo-Commit": repo.commit})
        headers = {"X-Repo-Commit": repo.commit}
        if file.lfs:
            headers.update({"X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(file.size)})
        if file.lfs and self.hub.lfs_redirect:
            location = f"http://localhost:{self.hub.port}/_cdn/{file.sha256}"
            self._send_head(302, {**headers, "ETag": f'"{file.blob_id}"', "Location": location}, 0)
            return
        self._serve_file(file, headers)

    def _serve_file(self, file: HubFile, headers: dict[str, str]) -> None:
        """The file's bytes (or the part a Range asks for), with the injected cut and corruption."""
        try:
            span = parse_range(self.headers.get("Range"), file.size)
        except ValueError as error:
            raise HubError(416, "Range Not Satisfiable", None, {"Content-Range": f"bytes */{file.size}"}) from error
        start, end = span or (0, file.size)
        headers = {**headers, "ETag": f'"{file.etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream",
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(file.name)}; filename=\"{file.name}\";"}
        if span is not None:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{file.size}"
        self._send_head(206 if span else 200, headers, end - start)
        if self.command == "GET":
            self._send_body(file, start, end)

    def _send_body(self, file: HubFile, start: int, end: int) -> None:
        """Write file[start:end], flipping the corrupted byte; hang up early if a cut is pending."""
        cut = self.hub._take(self.hub._cuts, file.name)
        flip = self.hub._corrupt_offset(file)
        sent = 0
        for chunk in _read(file.source, start, end):
            if flip is not None and start + sent <= flip < start + sent + len(chunk):
                i = flip - start - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
            if cut is not None and sent + len(chunk) >= cut:
                self.wfile.write(chunk[:cut - sent])
                self._hang_up()
                return
            self.wfile.write(chunk)
            sent += len(chunk)

    def _hang_up(self) -> None:
        """Close the connection mid-body: the client sees fewer bytes than Content-Length."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_head(self, status: int, headers: dict[str, str], length: int) -> None:
        """Status line and headers, with Content-Length."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """A JSON answer (no body for HEAD)."""
        data = json.dumps(body).encode()
        self._send_head(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, len(data))
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, error: HubError) -> None:
        """The Hub's error answer: X-Error-Code / X-Error-Message headers and {"error": message}."""
        headers = {"X-Error-Message": error.message, **error.headers}
        if error.code is not None:
            headers["X-Error-Code"] = error.code
        self._send_json(error.status, {"error": error.message}, headers)
