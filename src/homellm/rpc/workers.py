"""RPC workers as `serve --rpc` names them: addresses, a reachability probe, and the layers each takes."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

from homellm.errors import InvalidRequestError, WorkerLostError

DEFAULT_WORKER_PORT = 50052  # llama.cpp's rpc-server default
PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class Endpoint:
    """A worker's address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoints(text: str) -> list[Endpoint]:
    """`HOST:PORT[,HOST:PORT...]` (IPv6 in brackets) as endpoints; a clear error for anything else."""
    endpoints: list[Endpoint] = []
    for part in (p.strip() for p in text.split(",")):
        endpoint = _parse_one(part)
        if endpoint in endpoints:
            raise InvalidRequestError(f"the worker {endpoint} is named twice", hint="name each worker once",
                                      param="rpc")
        endpoints.append(endpoint)
    return endpoints


def _parse_one(part: str) -> Endpoint:
    bad = InvalidRequestError(f"{part!r} is not a worker address",
                              hint=f"give HOST:PORT, for example 192.168.1.20:{DEFAULT_WORKER_PORT}", param="rpc")
    host, sep, port = part.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise bad
    if host.startswith("["):
        if not host.endswith("]"):
            raise bad
        host = host[1:-1]
    elif ":" in host:  # an IPv6 address must be bracketed, or its port is ambiguous
        raise bad
    if not host or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise bad
    return Endpoint(host, int(port))


def probe(endpoint: Endpoint, timeout: float = PROBE_SECONDS) -> str | None:
    """Why the worker cannot be reached now, or None when it accepts a connection.

    A bare connection that closes at once is harmless to llama.cpp's server: it fails the
    handshake and goes back to accepting.
    """
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def require_reachable(endpoints: Sequence[Endpoint]) -> None:
    """Raise for the first worker that cannot be reached (llama.cpp would abort the process on it)."""
    for endpoint in endpoints:
        if (error := probe(endpoint)) is not None:
            raise WorkerLostError(f"the RPC worker {endpoint} cannot be reached: {error}",
                                  hint=f"start `homellm worker --host ADDRESS --port {endpoint.port}` on it, "
                                       "and check that this machine may connect to it")


def worker_layers(n_layers: int, local_free: int, remote_free: Sequence[int], asked: int | None = None) -> int:
    """How many of a model's layers go to the workers: `asked`, or their share of the free memory.

    llama.cpp keeps the first layers here and gives the last ones to the workers (split between
    them by `tensor_split`); the output head stays here.
    """
    if asked is not None:
        return max(0, min(asked, n_layers))
    remote = sum(max(0, f) for f in remote_free)
    total = remote + max(0, local_free)
    return round(n_layers * remote / total) if total > 0 else 0


def tensor_split(remote_free: Sequence[int]) -> tuple[float, ...]:
    """Each worker's share of the workers' layers, by its free memory (llama.cpp's own default rule)."""
    total = sum(max(0, f) for f in remote_free)
    if total <= 0:
        return tuple(1.0 for _ in remote_free)
    return tuple(max(0, f) / total for f in remote_free)
