"""`homellm hw`, `plan` and `doctor` (registered on the app in cli.py)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from homellm.advice.advisor import PlanQuestion, advise
from homellm.advice.drafts import DraftSuggestion, suggest_drafts
from homellm.cli.options import JsonOption
from homellm.cli.output import human_bytes, new_table, out
from homellm.cli.store import open_store
from homellm.config import DEFAULT_CTX
from homellm.errors import InvalidRequestError
from homellm.hardware.detect import MachineReport, detect
from homellm.hardware.specs import devices
from homellm.planner.report import device_dict, machine_dict, plan_dict


def hw(as_json: JsonOption = False,
       list_known: Annotated[bool, typer.Option("--list", help="List the device database instead.")] = False) -> None:
    """What this machine has: CPU, RAM, GPUs, and the llama.cpp backends it was built with."""
    if list_known:
        _print_devices(as_json)
        return
    from homellm.advice.doctor import llama_build

    report = detect()
    build = llama_build()
    data = machine_dict(report) | {"llama_cpp": {"backends": list(build.backends), "gpu_offload": build.gpu_offload}}
    if as_json:
        print(json.dumps(data, indent=2))
        return
    cpu = report.cpu
    out.print(f"[bold]CPU[/] {cpu.model}: {cpu.physical_cores} cores ({cpu.logical_cores} threads)"
              f"{f', {cpu.ghz} GHz' if cpu.ghz else ''}; {', '.join(cpu.flags) or 'no SIMD flags llama.cpp uses'}")
    out.print(f"[bold]RAM[/] {human_bytes(report.ram_total_bytes)} ({human_bytes(report.ram_available_bytes)} available)")
    out.print(_device_table(report.hardware.devices))
    out.print(f"[bold]llama.cpp[/] built with {', '.join(build.backends)}"
              f"{'' if build.gpu_offload else ' (no GPU offload)'}")
    for note in report.notes:
        out.print(f"[yellow]note:[/] {note}")


def plan(
    model: Annotated[str, typer.Argument(help="A stored model, a .gguf file, or a catalog name such as llama3.1:8b.")],
    quant: Annotated[str | None, typer.Option(help="Quant to plan (Q4_K_M, Q8_0, ...) [default: the file's, or the best that fits]. With --worker: the file's, or Q4_K_M.")] = None,
    gpu: Annotated[list[str] | None, typer.Option(help="Plan for this GPU instead of this machine's (repeatable).")] = None,
    ram: Annotated[float | None, typer.Option(help="System RAM in GB [default: this machine's].")] = None,
    memory: Annotated[str | None, typer.Option(help='RAM kind for CPU speed, e.g. "DDR5-6000 dual-channel" [default: measured here].')] = None,
    ctx: Annotated[int, typer.Option(help="Context length in tokens.")] = DEFAULT_CTX,
    kv_type: Annotated[str, typer.Option(help="KV cache type: f16, q8_0, q4_0.")] = "f16",
    n_cpu_moe: Annotated[int | None, typer.Option(min=0, help="Plan with the experts of the first N layers in RAM, every layer on the GPUs [default: the smallest N that fits].")] = None,
    worker: Annotated[list[str] | None, typer.Option(
        "--worker", metavar="NAME:GB:BW",
        help="Split the model over machines (llama.cpp RPC), one --worker each: NAME, GB of memory free for the "
             "model, BW its memory bandwidth in GB/s, e.g. gpu1:24:936. The first is the machine that serves "
             "(it also holds the embeddings and output head); the others are RPC workers, in order.")] = None,
    link: Annotated[float | None, typer.Option(help="With --worker: network between the machines in Gbit/s (1 if not given).")] = None,
    as_json: JsonOption = False,
) -> None:
    """What a model needs, whether it fits, how fast it runs, and what would fit if it does not."""
    if worker or link is not None:
        _check_split_options(worker, gpu, ram, memory, n_cpu_moe)
        _plan_split(model, quant, worker or [], 1.0 if link is None else link, ctx, kv_type, as_json)
        return
    question = PlanQuestion(model, quant, tuple(gpu or ()), ram, memory, ctx, kv_type.upper(), n_cpu_moe)
    machine = None if gpu and (ram is not None) and memory else _this_machine().hardware
    store = open_store()
    result, hardware = advise(question, machine, store)
    data = plan_dict(result, hardware) | {"drafts": [_draft_dict(d) for d in suggest_drafts(question, result, hardware,
                                                                                           store)]}
    if as_json:
        print(json.dumps(data, indent=2))
        return
    _print_plan(data)


def _check_split_options(worker: list[str] | None, gpu: list[str] | None, ram: float | None, memory: str | None,
                         n_cpu_moe: int | None) -> None:
    """--worker describes every machine: the options that describe one machine do not go with it."""
    if not worker:
        raise InvalidRequestError("--link is for a split over machines", hint="describe them with --worker NAME:GB:BW",
                                  param="link")
    if gpu or ram is not None or memory or n_cpu_moe is not None:
        raise InvalidRequestError("--worker describes the machines; --gpu, --ram, --memory and --n-cpu-moe do not go "
                                  "with it", hint="give each machine's memory and bandwidth in its --worker")


def _plan_split(model: str, quant: str | None, workers: list[str], link: float, ctx: int, kv_type: str,
                as_json: bool) -> None:
    """`plan --worker`: one model split over described machines."""
    from homellm.models.resolve import resolve_shape
    from homellm.planner.split import parse_workers, plan_split, split_dict

    machines = parse_workers(workers)
    shape = resolve_shape(model, open_store())
    data = split_dict(plan_split(shape, machines, ctx, kv_type, quant, link))
    if as_json:
        print(json.dumps(data, indent=2))
        return
    _print_split(data)


def _print_split(data: dict[str, Any]) -> None:
    verdict = "[green]fits[/]" if data["fits"] else f"[red]does not fit[/] ({human_bytes(data['short_bytes'])} short)"
    out.print(f"[bold]{data['model']}[/] {data['quant']}, {data['ctx']:,} tokens, KV {data['kv_type']}, over "
              f"{len(data['machines'])} machines: {verdict}")
    table = new_table()
    for column in ("MACHINE", "LAYERS", "WEIGHTS", "KV CACHE", "TOTAL", "MEMORY", ""):
        table.add_column(column, justify="left" if column in ("MACHINE", "") else "right")
    for row in data["machines"]:
        table.add_row(row["name"] + (" (serves)" if row["serves"] else ""), str(row["layers"]),
                      human_bytes(row["weights_bytes"]), human_bytes(row["kv_cache_bytes"]),
                      human_bytes(row["total_bytes"]), human_bytes(row["memory_bytes"]),
                      "ok" if row["fits"] else "[red]short[/]")
    out.print(table)
    link = data["link"]
    out.print(f"decode about {data['decode_tps']:.1f} tokens/s at half the context, over a {link['gbit']:g} Gbit/s "
              f"link (bandwidth efficiency {data['efficiency']:.2f})")
    costs = "; ".join(f"{c['gbit']:g} Gbit/s: {c['seconds_per_token'] * 1e3:.2f} ms a token, "
                      f"{c['prefill_seconds_per_batch']:.2f} s per 512-token prompt batch" for c in data["link_costs"])
    out.print(f"network cost: {costs}")
    for suggestion in data["suggestions"]:
        out.print(f"  would fit with {suggestion}")
    out.print()
    out.print(data["explanation"])


def _this_machine() -> MachineReport:
    """This machine, with the efficiencies `homellm bench` measured on it."""
    from homellm.bench.results import this_machine
    from homellm.config import Settings

    return this_machine(Settings.from_env().home)


def _print_plan(data: dict[str, Any]) -> None:
    verdict = "[green]fits[/]" if data["fits"] else "[red]does not fit[/]"
    quality = (f"{data['quality']}, KL {data['kl_mean']:.4f} measured here" if data["kl_source"] == "measured"
               else data["quality"])
    out.print(f"[bold]{data['model']}[/] {data['quant']} ({quality}), {data['placement']['ctx']:,} tokens, "
              f"KV {data['placement']['kv_type']}: {verdict}")
    table = new_table()
    for column in ("DEVICE", "LAYERS", "WEIGHTS", "KV CACHE", "COMPUTE+OVERHEAD", "TOTAL", "AVAILABLE", ""):
        table.add_column(column, justify="left" if column in ("DEVICE", "") else "right")
    for load in data["devices"]:
        table.add_row(load["device"], str(load["layers"]), human_bytes(load["weights_bytes"]),
                      human_bytes(load["kv_cache_bytes"]), human_bytes(load["compute_bytes"] + load["overhead_bytes"]),
                      human_bytes(load["total_bytes"]), human_bytes(load["available_bytes"]),
                      "ok" if load["fits"] else "[red]short[/]")
    out.print(table)
    speeds = ", ".join(f"{s['decode_tps']:.1f} at {s['ctx']:,}" for s in data["speed_by_depth"])
    out.print(f"decode tokens/s by context depth: {speeds}; prompt processing {data['prefill_tps']:,.0f} tokens/s")
    for suggestion in data["suggestions"]:
        mark = "[green]fits[/]" if suggestion["fits"] else "still short"
        out.print(f"  with {suggestion['change']}: {mark}, {suggestion['decode_tps']:.1f} tokens/s")
    for draft in data["drafts"]:
        out.print(_draft_line(draft))
    for warning in data["warnings"]:
        out.print(f"[yellow]warning:[/] {warning}")
    out.print()
    out.print(data["explanation"])


def _draft_dict(suggestion: DraftSuggestion) -> dict[str, Any]:
    typical = suggestion.typical
    return {"model": suggestion.model, "decode_tps": round(suggestion.decode_tps, 1),
            "break_even_acceptance": suggestion.break_even, "at_acceptance": typical.acceptance,
            "draft_tokens": typical.draft_tokens, "gain": round(typical.gain, 3)}


def _draft_line(draft: dict[str, Any]) -> str:
    """One stored draft model in words: whether it pays, from what acceptance, and how much at a typical one."""
    name = f"draft model [bold]{escape(draft['model'])}[/] ({draft['decode_tps']:,.0f} tokens/s alone)"
    if draft["break_even_acceptance"] is None:
        return f"{name}: would not pay here at any acceptance"
    typical = (f"{draft['gain']:.2f}x drafting {draft['draft_tokens']} tokens" if draft["draft_tokens"]
               else "no gain")
    return (f"{name}: pays where over {draft['break_even_acceptance']:.0%} of its tokens are accepted; "
            f"at {draft['at_acceptance']:.0%}, {typical} (serve --draft {escape(draft['model'])})")


def _device_table(devices_: tuple[Any, ...]) -> Table:
    table = new_table()
    for column in ("DEVICE", "KIND", "MEMORY", "FREE", "BANDWIDTH", "EFFICIENCY", "BACKEND"):
        table.add_column(column, justify="right" if column in ("MEMORY", "FREE", "BANDWIDTH", "EFFICIENCY") else "left")
    for device in devices_:
        d = device_dict(device)
        table.add_row(d["name"], d["kind"], human_bytes(d["memory_bytes"]) if d["memory_bytes"] else "-",
                      human_bytes(d["free_bytes"]) if d["free_bytes"] is not None else "-",
                      f"{d['bandwidth_gbs']:.0f} GB/s" + (" (measured)" if d["source"] == "probe" else ""),
                      f"{d['efficiency']:.2f} {d['efficiency_source']}", d["backend"])
    return table


def _print_devices(as_json: bool) -> None:
    known = devices()
    if as_json:
        print(json.dumps([device_dict(d) for d in known], indent=2))
        return
    out.print(_device_table(known))


def doctor(as_json: JsonOption = False) -> None:
    """Check this machine's setup (GPU build of llama.cpp, drivers, RAM, disk, port, store) and say how to fix it."""
    from homellm.advice.doctor import checkup
    from homellm.config import Settings

    settings = Settings.from_env()
    found = checkup(detect(probe_seconds=0.1), settings.home, settings.host, settings.port, open_store)
    if as_json:
        print(json.dumps([asdict(c) for c in found], indent=2))
    else:
        colours = {"ok": "green", "warn": "yellow", "fail": "red"}
        for check in found:
            out.print(f"[{colours[check.status]}]{check.status:>4}[/] [bold]{check.name}[/]: {check.detail}")
            if check.fix:
                out.print(f"      fix: {check.fix}")
    if any(c.status == "fail" for c in found):
        raise typer.Exit(1)


def cost(
    watts: Annotated[float | None, typer.Option(help="Power draw in watts (overrides the model's planned power).")] = None,
    model: Annotated[str | None, typer.Option(help="Plan this model for its decode rate and power draw.")] = None,
    gpu: Annotated[list[str] | None, typer.Option(help="With --model: plan on this GPU (repeatable).")] = None,
    price: Annotated[float, typer.Option(help="Electricity price per kWh.")] = 0.16,
    hours_per_day: Annotated[float, typer.Option(help="Hours a day the machine draws that power.")] = 24.0,
    tokens_per_day: Annotated[float | None, typer.Option(help="Tokens a day (input and output) to price.")] = None,
    input_share: Annotated[float, typer.Option(help="Share of those tokens that are input (prompt).")] = 0.5,
    hardware_price: Annotated[float | None, typer.Option(help="What the hardware cost, to spread over --years.")] = None,
    years: Annotated[float | None, typer.Option(help="Years to spread the hardware price over.")] = None,
    api: Annotated[str | None, typer.Option(help="API to compare with (homellm cost --list-apis) [default: every one].")] = None,
    api_price_in: Annotated[float | None, typer.Option(help="Or the API's $ per million input tokens.")] = None,
    api_price_out: Annotated[float | None, typer.Option(help="And its $ per million output tokens.")] = None,
    list_apis: Annotated[bool, typer.Option("--list-apis", help="List the API price table and exit.")] = False,
    as_json: JsonOption = False,
) -> None:
    """What local inference costs a month in electricity (and hardware), against API prices for the same tokens."""
    from homellm.advice.advisor import CostAsk, cost_dict
    from homellm.advice.advisor import cost as compute_cost
    from homellm.bench.prices import api_prices

    if list_apis:
        rows = [asdict(p) for p in api_prices().values()]
        if as_json:
            print(json.dumps(rows, indent=2))
        else:
            _print_prices(rows)
        return
    ask = CostAsk(watts, model, tuple(gpu or ()), None, price, hours_per_day, tokens_per_day, input_share,
                  hardware_price, years, api, api_price_in, api_price_out)
    machine = _this_machine().hardware if model else None
    answer = compute_cost(ask, machine, open_store() if model else None)
    data = cost_dict(answer)
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        _print_cost(data)


def _print_cost(data: dict[str, Any]) -> None:
    out.print(f"[bold]{data['watts']:.0f} W[/] ({data['watts_source']}): {data['kwh_per_month']:.1f} kWh a month, "
              f"electricity [bold]{data['electricity_per_month']:.2f}[/] a month")
    if data["joules_per_token"] is not None:
        out.print(f"energy {data['joules_per_token']:.2f} J/token ({data['energy_source']}): "
                  f"{data['cost_per_million_tokens']:.4f} per million tokens in electricity")
    if data["amortisation_per_month"]:
        out.print(f"hardware {data['amortisation_per_month']:.2f} a month; total {data['total_per_month']:.2f} a month")
    if data["hours_needed_per_day"] is not None:
        out.print(f"generating the day's tokens takes {data['hours_needed_per_day']:.1f} h at "
                  f"{data['tokens_per_second']:.1f} tokens/s")
    table = new_table()
    for column in ("API", "IN $/M", "OUT $/M", "API A MONTH", "BREAK-EVEN TOKENS/DAY", "PRICE AS OF"):
        table.add_column(column, justify="left" if column in ("API", "PRICE AS OF") else "right")
    for row in sorted(data["apis"], key=lambda r: r["breakeven_tokens_per_day"] or 0):
        month = f"{row['cost_per_month']:.2f}" if row["cost_per_month"] is not None else "-"
        breakeven = f"{row['breakeven_tokens_per_day']:,.0f}" if row["breakeven_tokens_per_day"] else "-"
        table.add_row(row["name"], f"{row['input_per_million']:g}", f"{row['output_per_million']:g}", month,
                      breakeven, row["as_of"])
    out.print(table)
    out.print("Below the break-even tokens a day the API is cheaper than the local monthly cost; above it, local is.")


def _print_prices(rows: list[dict[str, Any]]) -> None:
    table = new_table()
    for column in ("name", "provider", "input_per_million", "output_per_million", "as_of", "source"):
        table.add_column(column.upper())
    for row in rows:
        table.add_row(*(str(row[c]) for c in ("name", "provider", "input_per_million", "output_per_million",
                                              "as_of", "source")))
    out.print(table)
