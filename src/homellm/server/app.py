"""The FastAPI application: routes, error mapping and access checks around a scheduler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from homellm import __version__
from homellm.config import DEFAULT_MAX_BODY_BYTES
from homellm.docs import open_library
from homellm.embed.registry import EmbeddingModels
from homellm.models.store import Store
from homellm.rpc.backend import SplitBackend
from homellm.scheduler import Scheduler
from homellm.server import (
    anthropic,
    docs,
    embeddings,
    ollama,
    ollama_models,
    page,
    planning,
    responses,
    status,
)
from homellm.server.errors import install_error_handlers
from homellm.server.openai import router
from homellm.server.proxy import UpstreamProxy
from homellm.server.security import AccessMiddleware, AccessPolicy
from homellm.upstreams.registry import UpstreamRegistry
from homellm.upstreams.router import UpstreamRouter


@dataclass(frozen=True)
class ServerOptions:
    """What `homellm serve` was told about who may connect."""

    host: str = "127.0.0.1"
    api_key: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def create_app(scheduler: Scheduler, options: ServerOptions = ServerOptions(),
               store: Store | None = None, split: SplitBackend | None = None,
               workers: list[dict[str, Any]] | None = None) -> FastAPI:
    """An app serving the scheduler's models, and listing the store's; the caller owns and closes the scheduler.

    With `split`, the local models' requests go to the process that holds the model split across
    RPC workers; `workers` is that process's own report of them (its /homellm/ps shows it).
    """
    app = FastAPI(title="homellm", version=__version__, docs_url=None, redoc_url=None)
    app.state.scheduler = scheduler
    app.state.split = split
    app.state.workers = workers
    app.state.store = store
    # Without a store (an app built around a bare scheduler) there is nothing to embed with or search.
    app.state.embeddings = EmbeddingModels(store) if store is not None else None
    app.state.docs = open_library(store.home, store, app.state.embeddings) if store is not None else None
    app.state.responses = responses.ResponseMemory()  # kept for previous_response_id
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(embeddings.router)
    app.include_router(docs.router)
    app.include_router(status.router)
    app.include_router(anthropic.router)
    app.include_router(responses.router)
    app.include_router(ollama.router)
    app.include_router(ollama_models.router)
    planning.install(app)
    page.install(app)
    # Added before the access checks, so it runs after them: a proxied request needs the key too.
    app.state.upstreams = UpstreamRouter(UpstreamRegistry(store.home)) if store is not None else None
    if app.state.upstreams is not None:
        app.add_middleware(UpstreamProxy, router=app.state.upstreams, split=split)
    policy = AccessPolicy(options.host, options.api_key, options.allowed_hosts, options.max_body_bytes,
                          cors_origins=options.cors_origins)
    app.add_middleware(AccessMiddleware, policy=policy)
    app.add_middleware(ollama.OllamaJsonBodies)
    if options.cors_origins:
        # Added last, so it runs first: preflight requests carry no key.
        app.add_middleware(CORSMiddleware, allow_origins=list(options.cors_origins),
                           allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
                           # OpenAI's JS client sends x-stainless-* headers; the key is still checked.
                           allow_headers=["*"])
    return app
