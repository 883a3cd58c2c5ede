"""Ollama's model routes (docs/api.md in ollama/ollama): /api/tags, /api/show, /api/ps, /api/version,
/api/pull, /api/delete and /api/copy, answered from homellm's store and scheduler in the shapes Ollama's
clients parse (ollama-python's `_types.py`; Zed's Rust structs, which want every string present).

A pull runs the store's own Hugging Face pull on a thread; its progress reaches the response through the
event loop as Ollama's status lines. Errors leave in Ollama's `{"error": "..."}` shape through errors.py.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from homellm import __version__
from homellm.errors import (
    HomellmError,
    InvalidRequestError,
    ModelNotFoundError,
    StoreError,
)
from homellm.models.gguf import (
    ENCODER_ARCHITECTURES,
    ArrayInfo,
    ModelFacts,
    read_header,
    read_model_facts,
)
from homellm.models.hub import HubClient, HubFile, choose_files, parse_ref
from homellm.models.hub import pull as hub_pull
from homellm.models.sampling import recommended_sampling
from homellm.models.store import Store, StoredModel
from homellm.reasoning import thinking_style_of
from homellm.scheduler import ModelStatus
from homellm.server.generate import (
    CLIENT_CLOSED_REQUEST,
    scheduler_of,
    stream_error,
    streamed,
)
from homellm.server.ollama import NDJSON, ndjson_line, rfc3339
from homellm.server.security import wait_for_disconnect
from homellm.server.status import speculation_dict

router = APIRouter()

# What /api/version reports. VS Code Copilot's Ollama provider refuses servers below 0.6.4
# (MINIMUM_OLLAMA_VERSION in microsoft/vscode-copilot-chat, src/extension/byok/vscode-node/ollamaProvider.ts);
# Open WebUI, Continue, Zed, n8n and the ollama SDKs read the field without a minimum. So the lowest
# version that passes, and homellm's own beside it (clients ignore the extra field).
OLLAMA_VERSION = "0.6.4"
# Ollama sends arrays of more than 5 items (the vocabulary, merges) as [] unless `verbose` asks for them.
SHORT_ARRAY = 5
# What Ollama's Copilot Chat special case looks for: it names the model by `general.basename`.
COPILOT_AGENT = "GitHubCopilotChat/"
# How often a pull reports progress at most; the last line of each file is always sent.
PROGRESS_SECONDS = 0.1
# Ollama's expires_at for a model kept loaded: now plus Go's longest duration (2^63 ns, about 292 years).
FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)


# Request bodies (unknown fields are ignored; Ollama's older `name` is read as `model`)

class _Named(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = Field(default=None, validation_alias=AliasChoices("model", "name"))

    def model_name(self) -> str:
        """The model asked for; a 400 when there is none."""
        if not self.model:
            raise InvalidRequestError("model is required", hint='name a model, e.g. "model": "smollm2:135m"',
                                      param="model")
        return self.model


class ShowRequest(_Named):
    """POST /api/show."""

    verbose: bool = False


class PullRequest(_Named):
    """POST /api/pull; `insecure` has no meaning here (the Hub is reached over HTTPS or HF_ENDPOINT)."""

    stream: bool | None = None  # absent or null: stream, as Ollama does
    insecure: bool = False


class DeleteRequest(_Named):
    """DELETE /api/delete."""


class CopyRequest(BaseModel):
    """POST /api/copy."""

    model_config = ConfigDict(extra="ignore")
    source: str
    destination: str


# Routes

# HEAD answers as GET does (clients probe with it); its own operation id keeps the schema's ids unique.
@router.get("/api/version")
@router.head("/api/version", operation_id="version_head")
async def version() -> dict[str, str]:
    """The Ollama version clients check, and homellm's own."""
    return {"version": OLLAMA_VERSION, "homellm": __version__}


@router.get("/api/tags")
@router.head("/api/tags", operation_id="tags_head")
async def tags(request: Request) -> dict[str, Any]:
    """Every stored model, and any model served from a file rather than the store."""
    store = _store(request)
    statuses = scheduler_of(request).statuses()
    models = await asyncio.to_thread(_listed_models, store, statuses)
    models.sort(key=lambda m: m.modified, reverse=True)  # the newest first, as Ollama lists them
    return {"models": [_tag(m) for m in models]}


@router.post("/api/show")
async def show(body: ShowRequest, request: Request) -> dict[str, Any]:
    """A model's metadata as Ollama names it, its details, capabilities, chat template and sampling."""
    name = body.model_name()
    with _ollama_not_found(name):
        model = await asyncio.to_thread(_find_model, request, name)
    header = await asyncio.to_thread(read_header, model.path)
    info = _model_info(header.metadata, model.facts, body.verbose)
    if request.headers.get("user-agent", "").startswith(COPILOT_AGENT):
        # As Ollama does: Copilot names models by general.basename, which several files share.
        info["general.basename"] = name
    template = header.metadata.get("tokenizer.chat_template")
    license_text = header.metadata.get("general.license")
    shown: dict[str, Any] = {
        "modelfile": "",
        "parameters": _parameters(model.facts),
        "template": template if isinstance(template, str) else "",
        "details": _details(model.facts),
        "model_info": info,
        "capabilities": _capabilities(model.facts, template if isinstance(template, str) else None),
        "modified_at": _time(model.modified),
    }
    if isinstance(license_text, str):
        shown["license"] = license_text
    return shown


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    """The models loaded (or loading) now, the longest to stay first."""
    store = _store(request)
    statuses = [s for s in scheduler_of(request).statuses() if s.state != "failed"]
    running = await asyncio.to_thread(_running_models, store, statuses)
    return {"models": running}


@router.post("/api/pull")
async def pull(body: PullRequest, request: Request) -> Any:
    """Pull `hf.co/OWNER/REPO[:QUANT]` from the Hugging Face Hub into the store, with Ollama's progress lines.

    An error before the first line (a bad reference, no such repository or quant) is answered with its
    own status; one after it is the stream's last line.
    """
    store = _store(request)
    reference, name = await asyncio.to_thread(_pull_target, store, body.model_name())
    job = _PullJob(asyncio.get_running_loop(), store, reference, name)
    job.run_in_background()
    try:
        first = await job.next()  # the listing went well, or its error is raised here
    except BaseException:
        job.cancel()
        raise
    if body.stream is False:
        return await _pull_result(request, job, first)
    return streamed(_pull_lines(job, first), NDJSON, job.cancel)


@router.delete("/api/delete")
async def delete(body: DeleteRequest, request: Request) -> Response:
    """Remove a model from the store (the built-in one cannot be); a loaded one is let go once idle."""
    store = _store(request)
    name = body.model_name()
    with _ollama_not_found(name):
        removed = await asyncio.to_thread(store.remove, name)
    # Removed first, so no request can load it again by name in between.
    scheduler_of(request).unload(removed.name)
    return Response(status_code=200)


@router.post("/api/copy")
async def copy(body: CopyRequest, request: Request) -> Response:
    """Give a stored model a second name; the file is shared, not copied."""
    store = _store(request)
    with _ollama_not_found(body.source):
        await asyncio.to_thread(store.copy, body.source, body.destination)
    return Response(status_code=200)


# Models as Ollama describes them

@dataclass(frozen=True)
class _Model:
    """A model this server can name: stored, or served from a file given at start."""

    name: str
    path: Path
    size: int
    modified: float
    digest: str
    facts: ModelFacts


def _store(request: Request) -> Store:
    store: Store | None = request.app.state.store
    if store is None:
        raise StoreError("this server has no model store", hint="start it with homellm serve")
    return store


@contextmanager
def _ollama_not_found(name: str) -> Iterator[None]:
    """An unknown model in Ollama's words ("model 'x' not found": clients look for "not found"), with the store's hint."""
    try:
        yield
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"model {name!r} not found", hint=exc.hint, param="model") from None


def _stored(model: StoredModel) -> _Model:
    # The built-in model stays where pip put it, so it has no blob digest: its file's hash stands in.
    digest = model.digests[0] if model.digests else _file_digest(str(model.path), model.size, model.modified)
    return _Model(model.name, model.path, model.size, model.modified, digest, model.facts)


def _from_file(status: ModelStatus) -> _Model:
    """A model served from a .gguf path: its facts from the file; hashing gigabytes for a digest is not worth it."""
    stat = status.path.stat()
    return _Model(status.name, status.path, stat.st_size, stat.st_mtime, "", read_model_facts(status.path))


def _listed_models(store: Store, statuses: list[ModelStatus]) -> list[_Model]:
    models = [_stored(m) for m in store.list()]
    names = {m.name for m in models}
    return models + [_from_file(s) for s in statuses if s.name not in names and s.path.is_file()]


def _find_model(request: Request, name: str) -> _Model:
    """A stored model by name, else a model served from a file under that name; else 404."""
    try:
        return _stored(_store(request).get(name))
    except ModelNotFoundError:
        for status in scheduler_of(request).statuses():
            if status.name == name and status.path.is_file():
                return _from_file(status)
        raise


def _running_models(store: Store, statuses: list[ModelStatus]) -> list[dict[str, Any]]:
    running = []
    # The longest to stay loaded first, as Ollama lists them.
    for status in sorted(statuses, key=lambda s: math.inf if s.expires_at is None else s.expires_at, reverse=True):
        model = _loaded_model(store, status)
        expires = (datetime.fromtimestamp(status.expires_at, timezone.utc) if status.expires_at is not None
                   else datetime.now(timezone.utc) + FOREVER)
        running.append({
            "name": status.name, "model": status.name, "size": status.memory_bytes or (model.size if model else 0),
            "digest": model.digest if model else "", "details": _details(model.facts if model else None),
            "expires_at": rfc3339(expires),
            # Where the weights sit is not in a model's status yet: 0 is exact on CPU-only machines only.
            "size_vram": 0, "context_length": status.n_ctx,
            "speculation": speculation_dict(status),  # homellm's own: Ollama has no speculative decoding
        })
    return running


def _loaded_model(store: Store, status: ModelStatus) -> _Model | None:
    """What a loaded model is: the stored model of its name, else its file; None once deleted from the store."""
    try:
        stored = store.get(status.name)
        if stored.name == status.name:
            return _stored(stored)
    except (ModelNotFoundError, InvalidRequestError):  # served from a file, or removed since it loaded
        pass
    try:
        return _from_file(status)
    except (OSError, HomellmError):  # its file went with it; it is let go once idle
        return None


def _tag(model: _Model) -> dict[str, Any]:
    return {"name": model.name, "model": model.name, "modified_at": _time(model.modified), "size": model.size,
            "digest": model.digest, "details": _details(model.facts)}


def _details(facts: ModelFacts | None) -> dict[str, Any]:
    """Ollama's `details`: every field a string (Zed's client requires them), empty when unknown."""
    if facts is None:
        return {"parent_model": "", "format": "gguf", "family": "", "families": [], "parameter_size": "",
                "quantization_level": ""}
    return {"parent_model": "", "format": "gguf", "family": facts.architecture, "families": [facts.architecture],
            "parameter_size": parameter_size(facts.parameters), "quantization_level": facts.file_type or "unknown"}


def parameter_size(count: int) -> str:
    """A parameter count as Ollama prints it (format.HumanNumber): 134.52M, 7.6B, 8B."""
    for unit, scale, decimals in (("B", 1e9, 1), ("M", 1e6, 2)):
        if count >= scale:
            number = count / scale
            return f"{number:.0f}{unit}" if number == int(number) else f"{number:.{decimals}f}{unit}"
    return f"{count / 1e3:.0f}K" if count >= 1000 else str(count)


def _capabilities(facts: ModelFacts, template: str | None = None) -> list[str]:
    """An encoder embeds; every other model completes, and calls tools through the grammar; a model whose
    chat template thinks also lists "thinking" (clients offer Ollama's `think` switch for it)."""
    if facts.architecture in ENCODER_ARCHITECTURES:
        return ["embedding"]
    return ["completion", "tools", "thinking"] if thinking_style_of(template) else ["completion", "tools"]


def _model_info(metadata: dict[str, Any], facts: ModelFacts, verbose: bool) -> dict[str, Any]:
    """The GGUF's keys as Ollama lists them: its name and chat template left out, the parameter count added."""
    info: dict[str, Any] = {}
    for key, value in metadata.items():
        if key in ("general.name", "tokenizer.chat_template"):
            continue
        if isinstance(value, ArrayInfo):  # too long to have been kept: Ollama's non-verbose answer
            value = []
        elif isinstance(value, list):
            value = [_json_value(v) for v in value] if verbose or len(value) <= SHORT_ARRAY else []
        info[key] = _json_value(value)
    info["general.parameter_count"] = facts.parameters
    return dict(sorted(info.items()))


def _json_value(value: Any) -> Any:
    """A metadata value JSON can carry: a file's NaN or infinity becomes null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _parameters(facts: ModelFacts) -> str:
    """The sampling a request gets by default, in Ollama's `parameters` lines (name padded to 30, then the value)."""
    sampling = recommended_sampling(facts.metadata)
    values = {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
              "min_p": sampling.min_p, "repeat_penalty": sampling.repeat_penalty,
              "repeat_last_n": sampling.repeat_last_n}
    return "\n".join(f"{name:<30} {value:g}" for name, value in values.items())


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, size: int, modified: float) -> str:
    """The sha256 of a file, once per version of it (size and time are part of the key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _time(timestamp: float) -> str:
    return rfc3339(datetime.fromtimestamp(timestamp, timezone.utc))


# Pulls

def _pull_target(store: Store, text: str) -> tuple[str, str | None]:
    """What to pull (a reference the store's pull takes), and the name to store it under (None: its default).

    A Hugging Face reference as `homellm pull` takes it; or the name of a stored model pulled from the
    Hub, which is updated from where it came from. Ollama's library names are refused with the syntax.
    """
    reference = text.strip()
    if reference.lower().endswith(":latest") and "/" in reference:
        reference = reference[: -len(":latest")]  # Ollama's default tag: the default quant here
    try:
        parse_ref(reference)
        return reference, None
    except InvalidRequestError:
        pass
    try:
        stored = store.get(reference)
    except (ModelNotFoundError, InvalidRequestError):
        stored = None
    if stored is not None and stored.source.startswith("hf.co/"):
        return stored.source.split("@", 1)[0], stored.name  # hf.co/OWNER/REPO/FILE.gguf
    raise InvalidRequestError(
        f"{text!r} is not a Hugging Face model reference: homellm pulls GGUF models from the Hugging Face Hub, "
        "not from Ollama's library",
        hint="ask for hf.co/OWNER/REPO:QUANT, for example hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M",
        param="model")


class _Cancelled(Exception):
    """The client hung up: the download stops at the next chunk, its partial file kept for a resume."""


class _ListingClient(HubClient):
    """The Hub client, keeping the listing it fetched so progress can name the files being pulled."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[HubFile] = []

    def listing(self, repo_id: str) -> tuple[str, list[HubFile]]:
        commit, files = super().listing(repo_id)
        self.files = files
        return commit, files


class _PullJob:
    """One pull on its own thread; its status lines (or its error) go to the event loop through a queue.

    It is also the pull's `PullProgress`: told the total, then each chunk, on the pulling thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, store: Store, reference: str, name: str | None) -> None:
        self._loop = loop
        self._store = store
        self._reference = reference
        self._ref = parse_ref(reference)
        self._name = name
        self._client = _ListingClient()
        self._lines: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._files: list[HubFile] = []
        self._total = 0
        self._completed = 0
        self._current = 0  # index of the file being downloaded
        self._last_sent = 0.0
        self._verifying = False

    def run_in_background(self) -> None:
        """Pull on a thread of its own: a download may take hours, and must not hold the executor's threads."""
        threading.Thread(target=self._run, name=f"pull:{self._reference}", daemon=True).start()

    def cancel(self) -> None:
        """Stop downloading at the next chunk (the partial file stays, and the next pull resumes it)."""
        self._cancelled.set()

    async def next(self) -> dict[str, Any] | None:
        """The next status line; None once the pull is done; raises the pull's error."""
        item = await self._lines.get()
        if isinstance(item, BaseException):
            raise item
        return item

    # PullProgress, called on the pulling thread

    def start(self, total: int, done: int, label: str) -> None:
        """The pull's size is known: which files it fetches, and how much of them a resumed pull already has."""
        self._files = choose_files(self._ref, self._client.files)
        self._total, self._completed = total, done
        self._report(force=True)

    def advance(self, n: int) -> None:
        """`n` more bytes arrived; a cancelled pull stops here."""
        if self._cancelled.is_set():
            raise _Cancelled()
        self._completed += n
        self._report()

    # The thread

    def _run(self) -> None:
        try:
            model, _ = hub_pull(self._store, self._reference, self._name, client=self._client, progress=self)
            if self._verifying:  # something was downloaded; the store has checked and named it
                self._send({"status": "writing manifest"})
            self._send({"status": "success", "model": model.name})
            self._send(None)
        except BaseException as exc:  # every failure goes to the client, as its error (or the stream's last line)
            self._send(exc)

    def _report(self, force: bool = False) -> None:
        if not self._files:
            return
        offset = sum(f.size for f in self._files[:self._current])
        # Moving on to the next file: its predecessor's last line first, complete.
        while self._current < len(self._files) - 1 and self._completed >= offset + self._files[self._current].size:
            self._send(self._file_line(self._current, self._files[self._current].size))
            offset += self._files[self._current].size
            self._current += 1
            force = True
        now = time.monotonic()
        done = self._completed >= self._total
        if force or done or now - self._last_sent >= PROGRESS_SECONDS:
            self._last_sent = now
            file = self._files[self._current]
            self._send(self._file_line(self._current, min(max(self._completed - offset, 0), file.size)))
        if done and not self._verifying:
            self._verifying = True
            self._send({"status": "verifying sha256 digest"})

    def _file_line(self, index: int, completed: int) -> dict[str, Any]:
        file = self._files[index]
        digest = file.sha256 or ""
        return {"status": f"pulling {digest[:12] or file.filename}", "digest": f"sha256:{digest}" if digest else "",
                "total": file.size, "completed": completed}

    def _send(self, item: dict[str, Any] | BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._lines.put_nowait, item)
        except RuntimeError:  # the event loop is closed: the server is stopping
            self._cancelled.set()


async def _pull_lines(job: _PullJob, first: dict[str, Any] | None) -> AsyncIterator[bytes]:
    """NDJSON: "pulling manifest", the progress, "success"; an error is the last line."""
    try:
        yield ndjson_line({"status": "pulling manifest"})
        line = first
        while line is not None:
            yield ndjson_line(line)
            line = await job.next()
    except Exception as exc:  # headers are gone: the error is the stream's last line, as Ollama sends it
        yield ndjson_line(stream_error("ollama", exc))


async def _pull_result(request: Request, job: _PullJob, first: dict[str, Any] | None) -> Any:
    """`stream: false`: the last status line once the pull is done (or its error); a hang-up cancels it."""
    async def last_line() -> dict[str, Any] | None:
        latest, line = first, first
        while line is not None:
            latest, line = line, await job.next()
        return latest

    result = asyncio.ensure_future(last_line())
    hangup = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({result, hangup}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hangup.cancel()
        if not result.done():
            job.cancel()
            result.cancel()
    if not result.done() or result.cancelled():
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return result.result() or {"status": "success"}
