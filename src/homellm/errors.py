"""The one error family of homellm.

Every error carries a message and a hint. The CLI prints both on one line and
exits non-zero; the server maps them to OpenAI's error shape with the status
below.
"""

from __future__ import annotations


class HomellmError(Exception):
    """Base of every error homellm raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, hint: str = "", param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param

    def one_line(self) -> str:
        """The message and the hint, for a terminal."""
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class InvalidRequestError(HomellmError):
    """The request is malformed or asks for something unsupported."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceededError(InvalidRequestError):
    """The prompt plus the tokens asked for do not fit the model's context."""

    code = "context_length_exceeded"


class ModelNotFoundError(HomellmError):
    """No model by that name."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class AuthenticationError(HomellmError):
    """Missing or wrong API key."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class HostNotAllowedError(HomellmError):
    """The Host header names a host this server does not serve (DNS rebinding)."""

    status = 403
    type = "invalid_request_error"
    code = "host_not_allowed"


class OriginNotAllowedError(HomellmError):
    """A browser page of another site sent the request (cross-site request forgery)."""

    status = 403
    type = "invalid_request_error"
    code = "origin_not_allowed"


class RequestTooLargeError(HomellmError):
    """The request body is larger than the server accepts."""

    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class ModelLoadError(HomellmError):
    """llama.cpp could not load a model file."""

    status = 500
    type = "server_error"
    code = "model_load_failed"


class TemplateError(HomellmError):
    """The model's chat template failed to render."""

    status = 500
    type = "server_error"
    code = "chat_template_failed"


class EngineError(HomellmError):
    """llama.cpp failed while decoding; the request fails, the model keeps serving."""

    status = 500
    type = "server_error"
    code = "decode_failed"


class ServerBusyError(HomellmError):
    """Every slot is busy and the queue is full; the client should retry later."""

    status = 503
    type = "server_error"
    code = "server_busy"

    def __init__(self, message: str, hint: str = "", retry_after: int = 1) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class PortInUseError(HomellmError):
    """The server cannot listen on a port it was given (another server holds it)."""

    code = "port_in_use"


class UnsafeBindError(HomellmError):
    """A non-loopback bind without an API key."""

    code = "unsafe_bind"



class InvalidModelFileError(InvalidRequestError):
    """A file that is not a GGUF homellm will hand to llama.cpp: corrupt, truncated or hostile."""

    code = "invalid_model_file"


class InvalidModelNameError(InvalidRequestError):
    """A model name outside the `family:tag` pattern."""

    code = "invalid_model_name"


class ModelExistsError(InvalidRequestError):
    """A name that the store already gives to another model."""

    status = 409
    code = "model_exists"


class DownloadError(HomellmError):
    """A pull from a model hub failed or delivered something else than promised."""

    status = 502
    code = "download_failed"


class StoreError(HomellmError):
    """The model store cannot be opened or written: permissions, a full disk, a damaged database."""

    code = "store_unavailable"


class DoesNotFitError(HomellmError):
    """The planner says the model does not fit this machine at the asked context."""

    status = 507
    code = "model_does_not_fit"


class CollectionNotFoundError(HomellmError):
    """No document collection by that name."""

    status = 404
    type = "invalid_request_error"
    code = "collection_not_found"


class CollectionExistsError(InvalidRequestError):
    """`docs add` with a name that is already a collection."""

    status = 409
    code = "collection_exists"


class RpcUnavailableError(HomellmError):
    """llama.cpp's RPC backend is missing from this build, or a worker cannot be used."""

    code = "rpc_unavailable"


class WorkerLostError(HomellmError):
    """An RPC worker that holds part of the model cannot be reached; the split model is not served."""

    status = 503
    code = "worker_lost"


class ResponseNotFoundError(HomellmError):
    """No stored response by that id: never made, made with `store: false`, deleted or expired."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"

    def __init__(self, message: str, hint: str = "", param: str | None = None, code: str = "not_found") -> None:
        super().__init__(message, hint, param)
        self.code = code
