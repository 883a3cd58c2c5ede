"""Which API a request speaks (OpenAI's, Anthropic's Messages, Ollama's), and each one's error shape.

One server answers all of them from one port; a client parses errors only in its own shape,
so every failure, from the access checks to a crash, is written in the dialect of its path.
"""

from __future__ import annotations

from typing import Any, Literal

Dialect = Literal["openai", "anthropic", "ollama"]

ANTHROPIC_PREFIX = "/v1/messages"
# Everything under /api/ is Ollama's (docs/api.md in ollama/ollama); homellm's own routes live under /homellm/.
OLLAMA_PREFIX = "/api/"
# Anthropic's error types by HTTP status (docs.anthropic.com, "Errors").
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    503: "overloaded_error", 529: "overloaded_error"}


def dialect_of(path: str) -> Dialect:
    """The dialect a request path belongs to."""
    if path == ANTHROPIC_PREFIX or path.startswith(ANTHROPIC_PREFIX + "/"):
        return "anthropic"
    if path.startswith(OLLAMA_PREFIX):
        return "ollama"
    return "openai"


def error_json(dialect: Dialect, status: int, message: str, type_: str, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """An error body as the dialect's clients parse it; `type_` and `code` are OpenAI's names."""
    if dialect == "anthropic":
        return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    if dialect == "ollama":
        return {"error": message}
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
