"""Every failure answered in the error shape of the request's dialect, with the status the client expects."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from homellm.errors import AuthenticationError, HomellmError, ServerBusyError
from homellm.server.dialects import dialect_of, error_json

log = logging.getLogger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    """Map homellm errors, validation errors, HTTP errors and crashes to the dialect's shape."""
    app.add_exception_handler(HomellmError, _homellm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def error_response(exc: HomellmError, path: str = "") -> JSONResponse:
    """The JSON response for one of our errors, in the dialect of `path`."""
    headers = None
    if isinstance(exc, AuthenticationError):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, ServerBusyError):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(error_json(dialect_of(path), exc.status, exc.one_line(), exc.type, exc.code, exc.param),
                        status_code=exc.status, headers=headers)


async def _homellm_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HomellmError)
    return error_response(exc, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI answers 422; OpenAI clients expect 400 with the offending field named.
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        param = None
        message = f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
    elif first.get("type") == "missing":
        message = f"missing required field {param!r}"
    else:
        message = f"invalid value for {param!r}: {first['msg']}" if param else first["msg"]
    return JSONResponse(error_json(dialect_of(request.url.path), 400, message, "invalid_request_error",
                                   "invalid_request", param), status_code=400)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    return JSONResponse(error_json(dialect_of(request.url.path), exc.status_code, str(exc.detail),
                                   "invalid_request_error", code), status_code=exc.status_code)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The detail (which may quote the prompt) goes to the log, not to the client.
    log.error("request failed", exc_info=exc)
    return JSONResponse(
        error_json(dialect_of(request.url.path), 500,
                   f"internal error ({type(exc).__name__}); the server log has the details",
                   "server_error", "internal_error"),
        status_code=500,
    )
