"""GET /homellm/docs and /homellm/docs/{name}/search: the document collections, as `homellm docs` shows them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from homellm.docs import DocsLibrary
from homellm.docs.search import SearchMode
from homellm.errors import HomellmError

router = APIRouter()


def library(request: Request) -> DocsLibrary:
    """The server's collections."""
    docs = request.app.state.docs
    if docs is None:
        raise HomellmError("this server has no model store, so no document collections", hint="run homellm serve")
    return docs


@router.get("/homellm/docs")
async def list_collections(request: Request) -> dict[str, Any]:
    """Every collection with its counts."""
    collections = await run_in_threadpool(library(request).list)
    return {"collections": [c.to_json() for c in collections]}


@router.get("/homellm/docs/{name}/search")
async def search_collection(request: Request, name: str, q: str = "",
                            k: Annotated[int, Query(ge=1, le=100)] = 10,
                            mode: SearchMode = "hybrid") -> dict[str, Any]:
    """The best chunks of a collection for `q`."""
    hits = await run_in_threadpool(library(request).search, name, q, k, mode)
    return {"collection": name, "query": q, "hits": [hit.to_json() for hit in hits]}
