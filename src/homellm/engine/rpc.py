"""llama.cpp's RPC backend, reached through the libraries llama-cpp-python ships.

The client side (devices on other machines) and the worker side (`rpc-server`'s loop) are both
in `libggml-rpc`, present when llama-cpp-python was built with `-DGGML_RPC=on`. Using the
same library on both sides keeps the protocol versions equal: llama.cpp refuses a worker of
another version.

llama.cpp aborts the whole process when a worker's connection fails, so a process that uses
these calls must be one that may die (see `homellm.rpc.backend`), and every worker is probed
with a plain TCP connection before llama.cpp is let near it.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import llama_cpp

from homellm.errors import RpcUnavailableError

INSTALL_HINT = ('reinstall the binding with RPC: CMAKE_ARGS="-DGGML_RPC=on" pip install --force-reinstall '
                '--no-cache-dir --no-deps llama-cpp-python==0.3.36 (`make run` and `make test` install it so)')
_DEVICE_TYPE_CPU = 0
_DEVICE_TYPE_GPU = 1


@dataclass(frozen=True)
class RemoteDevice:
    """One device a worker offers: its llama.cpp name, what it is, and its memory."""

    endpoint: str
    name: str
    description: str
    free_bytes: int
    total_bytes: int


def require_rpc() -> None:
    """Raise unless this llama-cpp-python was built with the RPC backend."""
    if not llama_cpp.llama_supports_rpc():
        raise RpcUnavailableError("this llama-cpp-python was built without llama.cpp's RPC backend",
                                  hint=INSTALL_HINT)


@cache
def _libraries() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """libggml (the device registry) and libggml-rpc, with the signatures used here."""
    require_rpc()
    folder = Path(llama_cpp.__file__).parent / "lib"
    ggml = ctypes.CDLL(str(_library(folder, "ggml")))
    rpc = ctypes.CDLL(str(_library(folder, "ggml-rpc")))
    pointer, size = ctypes.c_void_p, ctypes.c_size_t
    ggml.ggml_backend_register.argtypes = [pointer]
    ggml.ggml_backend_register.restype = None
    ggml.ggml_backend_reg_dev_count.argtypes = [pointer]
    ggml.ggml_backend_reg_dev_count.restype = size
    ggml.ggml_backend_reg_dev_get.argtypes = [pointer, size]
    ggml.ggml_backend_reg_dev_get.restype = pointer
    ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    ggml.ggml_backend_dev_by_type.restype = pointer
    for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
        getattr(ggml, name).argtypes = [pointer]
        getattr(ggml, name).restype = ctypes.c_char_p
    ggml.ggml_backend_dev_memory.argtypes = [pointer, ctypes.POINTER(size), ctypes.POINTER(size)]
    ggml.ggml_backend_dev_memory.restype = None
    rpc.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
    rpc.ggml_backend_rpc_add_server.restype = pointer
    rpc.ggml_backend_rpc_start_server.argtypes = [ctypes.c_char_p, ctypes.c_char_p, size, size,
                                                  ctypes.POINTER(pointer)]
    rpc.ggml_backend_rpc_start_server.restype = None
    return ggml, rpc


def _library(folder: Path, stem: str) -> Path:
    """The file libllama itself loaded: by another name, the dynamic loader would map a second copy,
    with a device registry of its own that llama.cpp never reads."""
    if sys.platform == "darwin":
        names = [f"lib{stem}.0.dylib", f"lib{stem}.dylib"]
    elif sys.platform == "win32":
        names = [f"{stem}.dll"]
    else:
        names = [f"lib{stem}.so.0", f"lib{stem}.so"]
    return next((folder / n for n in names if (folder / n).exists()), folder / names[-1])


def add_worker(endpoint: str) -> list[RemoteDevice]:
    """Make a worker's devices llama.cpp devices of this process, for the next model loaded.

    llama.cpp aborts the process if the worker cannot be reached: probe it first.
    """
    ggml, rpc = _libraries()
    registry = rpc.ggml_backend_rpc_add_server(endpoint.encode())
    if not registry:
        raise RpcUnavailableError(f"llama.cpp could not add the RPC worker {endpoint}",
                                  hint="check that it runs `homellm worker` of the same homellm version")
    ggml.ggml_backend_register(registry)
    devices = (ggml.ggml_backend_reg_dev_get(registry, i) for i in range(ggml.ggml_backend_reg_dev_count(registry)))
    return [RemoteDevice(endpoint, *_describe(ggml, device)) for device in devices]


def _describe(ggml: ctypes.CDLL, device: int) -> tuple[str, str, int, int]:
    """A device's name, description, free and total bytes."""
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    ggml.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
    return (ggml.ggml_backend_dev_name(device).decode(), ggml.ggml_backend_dev_description(device).decode(),
            free.value, total.value)


def _main_device(ggml: ctypes.CDLL) -> int:
    """The device a worker here offers: the first GPU, else the CPU (as llama.cpp's rpc-server picks)."""
    return ggml.ggml_backend_dev_by_type(_DEVICE_TYPE_GPU) or ggml.ggml_backend_dev_by_type(_DEVICE_TYPE_CPU)


def serve_worker(endpoint: str, threads: int, cache_dir: Path | None = None) -> None:
    """Run llama.cpp's RPC server loop on this machine's main device until the process is stopped."""
    ggml, rpc = _libraries()
    devices = (ctypes.c_void_p * 1)(_main_device(ggml))
    rpc.ggml_backend_rpc_start_server(endpoint.encode(), str(cache_dir).encode() if cache_dir else None,
                                      threads, 1, devices)
    # The loop returns only when the socket could not be made or a connection could not be accepted.
    raise RpcUnavailableError(f"the RPC server could not listen on {endpoint}",
                              hint="another process may hold the port; pick another with --port")


def main_device() -> tuple[str, str, int, int]:
    """The device a worker here would offer: name, description, free and total bytes."""
    ggml, _ = _libraries()
    return _describe(ggml, _main_device(ggml))
