"""Pulls from the Hugging Face Hub: pick the GGUF file of a quant, download it resumably, check its sha256.

The Hub's API (repository listing, LFS hashes, URLs, the token) goes through
`huggingface_hub`; the file itself is fetched here with `Range` requests into
a partial file that survives an interrupted pull, because `hf_hub_download`
deletes its partial file when a call fails.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from homellm.errors import (
    DownloadError,
    InvalidRequestError,
    ModelExistsError,
    ModelNotFoundError,
)
from homellm.models.names import name_from_filename, normalize_name
from homellm.models.store import Store, StoredModel

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANT = "Q4_K_M"  # what Ollama picks when a Hugging Face reference names no quant
ATTEMPTS = 3
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO = re.compile(rf"({_PART})/({_PART})")
_HF_PREFIX = re.compile(r"^(?:https?://)?(?:hf\.co|huggingface\.co)/", re.IGNORECASE)
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT_IN_NAME = re.compile(r"(?:^|[-._])((?:i?q\d[a-z0-9_]*)|f16|bf16|f32)(?=[-._]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class HubRef:
    """What to pull: a repository, and either a quant or a file in it."""

    repo_id: str
    quant: str | None = None
    filename: str | None = None

    def __str__(self) -> str:
        return f"hf.co/{self.repo_id}/{self.filename}" if self.filename else f"hf.co/{self.repo_id}:{self.quant or 'default'}"


@dataclass(frozen=True)
class HubFile:
    """One file of a repository, with the size and LFS sha256 the Hub gives for it."""

    filename: str
    size: int
    sha256: str | None


class PullProgress(Protocol):
    """Told the total bytes of a pull (and how many a resumed pull already has), then each chunk."""

    def start(self, total: int, done: int, label: str) -> None: ...

    def advance(self, n: int) -> None: ...


def parse_ref(text: str) -> HubRef:
    """`hf.co/OWNER/REPO[:QUANT]` (Ollama's syntax) or `OWNER/REPO/FILE.gguf`."""
    ref = _HF_PREFIX.sub("", text.strip())
    if ref.lower().endswith(".gguf") and ref.count("/") >= 2:
        owner, repo, filename = ref.split("/", 2)
        if _REPO.fullmatch(f"{owner}/{repo}") and ".." not in filename.split("/") and "\\" not in filename:
            return HubRef(f"{owner}/{repo}", filename=filename)
    repo_id, _, quant = ref.partition(":")
    if _REPO.fullmatch(repo_id) and ".." not in repo_id and (not quant or re.fullmatch(r"[A-Za-z0-9_]+", quant)):
        return HubRef(repo_id, quant=quant or None)
    raise InvalidRequestError(
        f"{text!r} is not a Hugging Face model reference",
        hint="use hf.co/OWNER/REPO:QUANT (for example hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M) "
             "or OWNER/REPO/FILE.gguf")


def choose_files(ref: HubRef, files: list[HubFile]) -> list[HubFile]:
    """The file the reference names, or the quant's file; with every shard of a split model, in order."""
    ggufs = [f for f in files if f.filename.lower().endswith(".gguf") and "mmproj" not in f.filename.lower()]
    if ref.filename:
        chosen = [f for f in ggufs if f.filename == ref.filename]
        if not chosen:
            raise ModelNotFoundError(f"{ref.repo_id} has no file {ref.filename}",
                                     hint=f"its GGUF files: {_names(ggufs)}")
        return _with_shards(chosen[0], ggufs)
    quant = ref.quant or DEFAULT_QUANT
    matches = [f for f in ggufs if quant.lower() in (q.lower() for q in _quants_in(f.filename))]
    if not matches and ref.quant is None and len(ggufs) == 1:
        matches = ggufs
    if not matches:
        available = sorted({q.upper() for f in ggufs for q in _quants_in(f.filename)})
        raise ModelNotFoundError(f"{ref.repo_id} has no {quant} GGUF file",
                                 hint=f"quants there: {', '.join(available) or 'none'}")
    # The plainest name wins: M-Q4_K_M-00001-of-00003 over M-UD-Q4_K_M.
    first = min(matches, key=lambda f: (not _is_first(f.filename), len(_SPLIT.sub("", f.filename)), f.filename))
    return _with_shards(first, ggufs)


def default_name(ref: HubRef, chosen: list[HubFile]) -> str:
    """`hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M` is stored as `smollm2-135m-instruct:q4_k_m`."""
    if ref.filename:
        return name_from_filename(Path(_SPLIT.sub(".gguf", chosen[0].filename)).stem)
    found = _quants_in(chosen[0].filename)
    quant = ref.quant or (found[-1] if found else None)
    return name_from_filename(ref.repo_id.split("/")[1], tag=quant)


class HubClient:
    """The Hub at `endpoint` (HF_ENDPOINT by default), with HF_TOKEN when set."""

    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.token = token or os.environ.get("HF_TOKEN") or None

    def listing(self, repo_id: str) -> tuple[str, list[HubFile]]:
        """The repository's current commit and its files with sizes and LFS hashes."""
        from huggingface_hub import HfApi

        try:
            info = HfApi(endpoint=self.endpoint, token=self.token).model_info(
                repo_id, files_metadata=True, timeout=30)
        except Exception as exc:  # huggingface_hub raises its own HTTP errors and its HTTP library's
            raise self._listing_error(repo_id, exc) from None
        files = [HubFile(s.rfilename, (s.lfs.size if s.lfs else s.size) or 0,
                         _checked_sha256(s.lfs.sha256) if s.lfs else None)
                 for s in info.siblings or []]
        return info.sha or "main", files

    def download(self, repo_id: str, commit: str, file: HubFile, dest: Path,
                 progress: Callable[[int], None] | None = None) -> Path:
        """Fetch `file` into `dest`, continuing a partial `dest` left by an earlier attempt."""
        from huggingface_hub import hf_hub_url

        url = hf_hub_url(repo_id, file.filename, revision=commit, endpoint=self.endpoint)
        error: Exception | None = None
        with _exclusive(dest.with_name(dest.name + ".lock"), file.filename):
            for attempt in range(ATTEMPTS):
                try:
                    self._fetch(url, file, dest, progress)
                    return dest
                except httpx.TransportError as exc:  # a cut connection or a timeout: resume from what arrived
                    error = exc
                    time.sleep(0.2 * (attempt + 1))
        have = dest.stat().st_size if dest.exists() else 0
        raise DownloadError(f"the download of {file.filename} stopped at {have:,} of {file.size:,} bytes: {error}",
                            hint="run the same homellm pull again to resume")

    def _fetch(self, url: str, file: HubFile, dest: Path, progress: Callable[[int], None] | None) -> None:
        have = dest.stat().st_size if dest.exists() else 0
        if file.size and have == file.size:
            return
        if have > file.size > 0:
            dest.unlink()
            have = 0
        headers = self._headers() | ({"Range": f"bytes={have}-"} if have else {})
        with httpx.stream("GET", url, headers=headers, follow_redirects=True,
                          timeout=httpx.Timeout(30.0, read=60.0)) as response:
            if response.status_code == 416:
                dest.unlink(missing_ok=True)  # the partial is not a prefix of this file
                raise httpx.RemoteProtocolError("the partial download did not match; starting again")
            if response.status_code not in (200, 206):
                raise self._http_error(response, file.filename)
            if response.status_code == 206 and not response.headers.get("content-range", "").startswith(
                    f"bytes {have}-"):
                raise DownloadError(f"the Hub resumed {file.filename} at the wrong place "
                                    f"({response.headers.get('content-range')!r} for byte {have})",
                                    hint="delete HOMELLM_HOME/downloads and pull again")
            if response.status_code == 200 and have:
                if progress:
                    progress(-have)  # the server ignored Range: start over
                have = 0
            with dest.open("ab" if have else "wb") as out:
                # Pieces are written as they arrive, so a cut connection loses nothing already received.
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    if progress:
                        progress(len(chunk))
        got = dest.stat().st_size
        if file.size and got != file.size:
            raise httpx.RemoteProtocolError(f"got {got} of {file.size} bytes")

    def _headers(self) -> dict[str, str]:
        from huggingface_hub.utils import build_hf_headers

        # None lets huggingface_hub find the token of `hf auth login`, as its listing call does.
        return build_hf_headers(token=self.token, library_name="homellm")

    def _http_error(self, response: httpx.Response, filename: str) -> DownloadError:
        if response.status_code in (401, 403):
            return DownloadError(f"the Hub refused {filename} ({response.status_code})",
                                 hint="the repository may be private or gated: set HF_TOKEN to a token with access")
        if response.status_code == 404:
            return DownloadError(f"{filename} is gone from the Hub (404)", hint="list the repository again and retry")
        return DownloadError(f"the Hub answered {response.status_code} for {filename}", hint="try again later")

    def _listing_error(self, repo_id: str, exc: Exception) -> Exception:
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            RepositoryNotFoundError,
        )

        if isinstance(exc, GatedRepoError):
            return DownloadError(f"{repo_id} is gated", hint="accept its terms on the Hub and set HF_TOKEN")
        if isinstance(exc, RepositoryNotFoundError):
            return ModelNotFoundError(f"no repository {repo_id} on {self.endpoint}",
                                      hint="check the name; private repositories need HF_TOKEN")
        if isinstance(exc, HfHubHTTPError):
            status = exc.response.status_code if exc.response is not None else "?"
            return DownloadError(f"the Hub answered {status} for {repo_id}", hint="check HF_TOKEN, or try again later")
        return DownloadError(f"cannot reach the Hub at {self.endpoint}: {exc}",
                             hint="check the network, or set HF_ENDPOINT to a reachable mirror")


def pull(store: Store, text: str, name: str | None = None, client: HubClient | None = None,
         progress: PullProgress | None = None) -> tuple[StoredModel, bool]:
    """Pull a reference into the store; returns the model and whether anything was downloaded.

    An existing name pulled from the same repository is updated (or left alone when
    its files are unchanged); a name that holds something else is refused.
    """
    ref = parse_ref(text)
    client = client or HubClient()
    commit, files = client.listing(ref.repo_id)
    chosen = choose_files(ref, files)
    key = normalize_name(name) if name else default_name(ref, chosen)
    source = f"hf.co/{ref.repo_id}/{chosen[0].filename}@{commit}"
    replace = False
    if store.exists(key):
        current = store.get(key)
        if not current.source.startswith(f"hf.co/{ref.repo_id}/"):
            raise ModelExistsError(f"a model named {key} is already stored (from {current.source})",
                                   hint="give this pull another --name")
        if list(current.digests) == [f.sha256 for f in chosen]:
            return current, False
        replace = True
    downloads = store.home / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    paths = [downloads / f"{f.sha256 or _safe(ref.repo_id, f.filename)}.partial" for f in chosen]
    total = sum(f.size for f in chosen)
    done = sum(min(p.stat().st_size, f.size) for p, f in zip(paths, chosen, strict=True) if p.exists())
    if progress:
        progress.start(total, done, f"pulling {ref.repo_id}")
    for file, path in zip(chosen, paths, strict=True):
        client.download(ref.repo_id, commit, file, path, progress.advance if progress else None)
    model = store.add(paths, key, source, move=True, expected_sha256=[f.sha256 for f in chosen], replace=replace,
                      labels=[Path(f.filename).name for f in chosen])
    return model, True


@contextmanager
def _exclusive(lock_path: Path, filename: str) -> Iterator[None]:
    """One pull at a time appends to a partial file; a second one is refused, not interleaved."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; a clash shows up as a hash mismatch instead
        yield
        return
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError(f"another homellm pull is downloading {filename}",
                                hint="wait for it to finish, then pull again") from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)


def _with_shards(first: HubFile, files: list[HubFile]) -> list[HubFile]:
    match = _SPLIT.search(first.filename)
    if not match:
        return [first]
    if match.group(1) != "00001":
        raise InvalidRequestError(f"{first.filename} is not the first shard of its model",
                                  hint="name the -00001-of- file")
    prefix, count = first.filename[:match.start()], int(match.group(2))
    if count < 1:
        raise InvalidRequestError(f"{first.filename} claims to be one of {count} shards", hint="pick another file")
    by_name = {f.filename: f for f in files}
    wanted = [f"{prefix}-{i:05d}-of-{match.group(2)}.gguf" for i in range(1, count + 1)]
    missing = [w for w in wanted if w not in by_name]
    if missing:
        raise DownloadError(f"the split model lacks {', '.join(missing[:3])} on the Hub",
                            hint="the repository is incomplete; pick another quant")
    return [by_name[w] for w in wanted]


def _checked_sha256(value: object) -> str | None:
    """The Hub's LFS hash if it is one; it names a file under downloads/, so nothing else will do."""
    return value.lower() if isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{64}", value) else None


def _quants_in(filename: str) -> list[str]:
    stem = _SPLIT.sub("", Path(filename).name)
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    return [m.group(1) for m in _QUANT_IN_NAME.finditer(stem)]


def _is_first(filename: str) -> bool:
    match = _SPLIT.search(filename)
    return match is None or match.group(1) == "00001"


def _names(files: list[HubFile]) -> str:
    shown = [f.filename for f in files[:8]]
    return ", ".join(shown) + (" …" if len(files) > 8 else "") if shown else "none"


def _safe(repo_id: str, filename: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{repo_id}_{filename}")

