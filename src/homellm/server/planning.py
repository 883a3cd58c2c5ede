"""GET /homellm/hardware, /homellm/plan and /homellm/cost: what `homellm hw`, `plan` and `cost` print with --json."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from homellm.advice.advisor import CostAsk, PlanQuestion, advise, cost_dict
from homellm.advice.advisor import cost as compute_cost
from homellm.bench.results import BenchResults, this_machine
from homellm.config import DEFAULT_CTX
from homellm.hardware.detect import MachineReport, detect
from homellm.planner.report import machine_dict, plan_dict

router = APIRouter()


@router.get("/homellm/hardware")
async def hardware(request: Request) -> dict[str, Any]:
    """This machine's devices as the planner sees them."""
    return machine_dict(await _machine(request))


@router.get("/homellm/plan")
async def plan(request: Request, model: str, quant: str | None = None,
               gpu: Annotated[list[str] | None, Query()] = None, ram: float | None = None,
               memory: str | None = None, ctx: int = DEFAULT_CTX, kv_type: str = "F16",
               n_cpu_moe: Annotated[int | None, Query(ge=0)] = None) -> dict[str, Any]:
    """The plan for a stored or catalog model (never a path: clients do not name files)."""
    report = await _machine(request)
    question = PlanQuestion(model, quant, tuple(gpu or ()), ram, memory, ctx, kv_type.upper(), n_cpu_moe)
    result, hardware = await run_in_threadpool(advise, question, report.hardware, request.app.state.store, False)
    return plan_dict(result, hardware)


async def _machine(request: Request) -> MachineReport:
    """Detected once per server: the bandwidth probe takes a fraction of a second."""
    state = request.app.state
    async with state.machine_lock:
        if state.machine is None:
            store = state.store
            state.machine = await run_in_threadpool(this_machine, store.home) if store else \
                await run_in_threadpool(detect)
        return state.machine


def install(app: Any) -> None:
    """Add the routes and the state they share."""
    app.state.machine = None
    app.state.machine_lock = asyncio.Lock()
    app.include_router(router)


@router.get("/homellm/bench")
async def bench_history(request: Request) -> list[dict[str, Any]]:
    """As `homellm bench --history --json`: every bench run kept under HOMELLM_HOME, newest first."""
    store = request.app.state.store
    return await run_in_threadpool(lambda: BenchResults(store.home).history()) if store else []


@router.get("/homellm/cost")
async def cost(request: Request, watts: float | None = None, model: str | None = None,
               gpu: Annotated[list[str] | None, Query()] = None, price: float = 0.16, hours_per_day: float = 24.0,
               tokens_per_day: float | None = None, input_share: float = 0.5, hardware_price: float | None = None,
               years: float | None = None, api: str | None = None, api_price_in: float | None = None,
               api_price_out: float | None = None) -> dict[str, Any]:
    """As `homellm cost --json`: electricity and hardware a month against API prices."""
    report = await _machine(request) if model else None
    ask = CostAsk(watts, model, tuple(gpu or ()), None, price, hours_per_day, tokens_per_day, input_share,
                  hardware_price, years, api, api_price_in, api_price_out)
    answer = await run_in_threadpool(compute_cost, ask, report.hardware if report else None,
                                     request.app.state.store, False)
    return cost_dict(answer)
