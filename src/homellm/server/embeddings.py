"""POST /v1/embeddings: the built-in embedding model (and stored encoder models) in OpenAI's shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from homellm.embed.registry import EmbeddingModels
from homellm.errors import HomellmError, InvalidRequestError
from homellm.server.schemas import EmbeddingRequest, embedding_list

router = APIRouter()


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    """Embed a string or a list of strings; vectors are L2-normalised."""
    texts = body.texts()
    models: EmbeddingModels | None = request.app.state.embeddings
    if models is None:
        raise HomellmError("this server has no model store, so no embedding model", hint="run homellm serve")
    name, embedder = await run_in_threadpool(models.get, body.model)
    if body.dimensions is not None and body.dimensions != embedder.n_embd:
        raise InvalidRequestError(f"{name} gives vectors of {embedder.n_embd} dimensions, not {body.dimensions}",
                                  hint="leave dimensions out", param="dimensions")
    result = await run_in_threadpool(embedder.embed, texts, body.truncate)
    return embedding_list(name, result.vectors, result.prompt_tokens, body.encoding_format)
