"""The process that holds a model split across RPC workers (`serve --rpc` starts it): its command line,
its check of the request, and the load plan that makes the workers llama.cpp devices of it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from typing import Any

from homellm.engine.rpc import add_worker, require_rpc
from homellm.errors import InvalidRequestError
from homellm.planner.overrides import TensorOverride
from homellm.rpc.workers import (
    Endpoint,
    parse_endpoints,
    require_reachable,
    tensor_split,
    worker_layers,
)
from homellm.scheduler import LoadPlan

OUTPUT_HEAD = r"^(output|token_embd)\.weight$"  # token_embd: the head of a model with tied embeddings


def check_split_request(rpc: str, cpu_moe: bool, n_cpu_moe: int | None, override_tensor: list[str] | None) -> list[Endpoint]:
    """The workers `serve --rpc` names, checked before anything loads."""
    endpoints = parse_endpoints(rpc)
    if cpu_moe or n_cpu_moe is not None or override_tensor:
        raise InvalidRequestError("--rpc places whole layers on the workers; it does not combine with "
                                  "--cpu-moe, --n-cpu-moe or --override-tensor",
                                  hint="leave those out, or serve without --rpc")
    require_rpc()
    require_reachable(endpoints)
    return endpoints


def split_process_args(model: str, ctx: int | None, threads: int | None, parallel: int, queue: int,
                       keep_alive: str, max_loaded: int, rpc_layers: int | None,
                       kv_type: str | None = None, speculation: str = "off",
                       reasoning_budget: int | None = None) -> list[str]:
    """The `homellm serve` options the split process is started with (address and workers come apart)."""
    args = ["--model", model, "--parallel", str(parallel), "--queue", str(queue), "--keep-alive", keep_alive,
            "--max-loaded", str(max_loaded), "--spec", speculation]
    k, _, v = (kv_type or "").partition("/")
    for flag, value in (("--ctx", ctx), ("--threads", threads), ("--rpc-layers", rpc_layers),
                        ("--kv-type-k", k or None), ("--kv-type-v", v or k or None),
                        ("--reasoning-budget", reasoning_budget)):
        if value is not None:
            args += [flag, str(value)]
    return args


def exit_with_parent() -> None:
    """End this process when the server that started it is gone, however it went (even SIGKILL)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def load_across_workers(rpc_direct: str, load_plan: LoadPlan, n_layers: int, local_free: int,
                        rpc_layers: int | None) -> tuple[LoadPlan, list[dict[str, Any]]]:
    """Make the workers llama.cpp devices of this process and the plan that puts layers on them.

    Returns the plan and the workers as /homellm/ps reports them. Only the process that `serve --rpc`
    starts calls this: a worker lost later aborts the process (llama.cpp's behaviour).
    """
    endpoints = parse_endpoints(rpc_direct)
    require_reachable(endpoints)
    by_worker = [(endpoint, add_worker(str(endpoint))) for endpoint in endpoints]
    frees = [sum(d.free_bytes for d in devices) for _, devices in by_worker]
    layers = worker_layers(n_layers, local_free, frees, rpc_layers)
    shares = tensor_split([d.free_bytes for _, devices in by_worker for d in devices])
    # llama.cpp counts the output head as one more layer and would send it to the last worker with
    # the first layer offloaded; its matrix stays here, so a token's logits (vocabulary-sized) never
    # cross the network, only its activations (embedding-sized). `plan --worker` assumes the same.
    options = replace(load_plan.options, n_gpu_layers=layers + 1 if layers else 0, tensor_split=shares,
                      tensor_overrides=(TensorOverride(OUTPUT_HEAD),) if layers else ())
    counts = _apportion(layers, [sum(shares[i] for i in _indices(by_worker, w)) for w in range(len(by_worker))])
    workers = [{"endpoint": str(endpoint), "layers": count,
                "devices": [{"name": d.name, "description": d.description, "free_bytes": d.free_bytes,
                             "total_bytes": d.total_bytes} for d in devices]}
               for (endpoint, devices), count in zip(by_worker, counts)]
    return LoadPlan(options, load_plan.memory_bytes), workers


def _indices(by_worker: list[tuple[Endpoint, list[Any]]], worker: int) -> range:
    start = sum(len(devices) for _, devices in by_worker[:worker])
    return range(start, start + len(by_worker[worker][1]))


def _apportion(total: int, shares: list[float]) -> list[int]:
    """`total` split by `shares` into whole numbers that add up (largest remainder first)."""
    raw = [total * s / (sum(shares) or 1) for s in shares]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts
