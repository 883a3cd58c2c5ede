"""RPC workers as `serve --rpc` names them: addresses, a reachability probe, and the layers each takes."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from homellm.errors import InvalidRequestError, WorkerLostError

DEFAULT_WORKER_PORT = 50052  # llama.cpp's rpc-server default
PROBE_SECONDS = 2.0
STALL_SECONDS = 120.0  # a decode step this long means a worker vanished without closing its connection


@dataclass(frozen=True)
class Endpoint:
    """A worker's address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoints(text: str) -> list[Endpoint]:
    """`HOST:PORT[,HOST:PORT...]` as endpoints; a clear error for anything else.

    llama.cpp's RPC client speaks IPv4 only (a name is looked up with gethostbyname), and it
    aborts on an address it cannot parse, so IPv6 is refused here.
    """
    endpoints: list[Endpoint] = []
    for part in (p.strip() for p in text.split(",")):
        endpoint = _parse_one(part)
        if endpoint in endpoints:
            raise InvalidRequestError(f"the worker {endpoint} is named twice", hint="name each worker once",
                                      param="rpc")
        endpoints.append(endpoint)
    return endpoints


def _parse_one(part: str) -> Endpoint:
    if part.startswith("[") or part.count(":") > 1:
        raise InvalidRequestError(f"{part!r} is an IPv6 address; llama.cpp's RPC speaks IPv4 only",
                                  hint="give the worker's IPv4 address or host name", param="rpc")
    host, sep, port = part.partition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise InvalidRequestError(f"{part!r} is not a worker address",
                                  hint=f"give HOST:PORT, for example 192.168.1.20:{DEFAULT_WORKER_PORT}", param="rpc")
    return Endpoint(host, int(port))


def worker_address(host: str) -> str:
    """The IPv4 address a worker listens on: llama.cpp's server takes nothing else (not even a name)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        raise InvalidRequestError(f"{host!r} is not an IPv4 address", param="host",
                                  hint="llama.cpp's RPC server listens on an IPv4 address, e.g. 192.168.1.20 "
                                       "or 0.0.0.0 for every interface") from None


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


def unreachable(endpoints: Sequence[Endpoint]) -> dict[Endpoint, str]:
    """The workers that cannot be reached now, with why; probed together, so a few dead ones cost one timeout."""
    if not endpoints:
        return {}
    with ThreadPoolExecutor(len(endpoints)) as pool:
        errors = list(pool.map(probe, endpoints))
    return {endpoint: error for endpoint, error in zip(endpoints, errors) if error is not None}


def require_reachable(endpoints: Sequence[Endpoint]) -> None:
    """Raise for a worker that cannot be reached (llama.cpp would abort the process on it)."""
    for endpoint, error in unreachable(endpoints).items():
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
