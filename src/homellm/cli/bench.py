"""`homellm bench` (registered on the app in cli.py)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from homellm.cli.options import (
    CpuMoeOption,
    NCpuMoeOption,
    OverrideTensorOption,
    tensor_overrides,
)
from homellm.cli.output import console, human_bytes, new_table, out
from homellm.cli.store import open_store
from homellm.config import Settings
from homellm.errors import InvalidRequestError


def bench(
    model: Annotated[str | None, typer.Argument(help="A stored model or a .gguf file [default: the built-in model].")] = None,
    depths: Annotated[str, typer.Option(help="Context depths to measure at, comma-separated.")] = "0,512,2048",
    n_prompt: Annotated[int, typer.Option(help="Prompt tokens per prefill measurement.")] = 512,
    n_gen: Annotated[int, typer.Option(help="Decode steps per decode measurement.")] = 128,
    repeat: Annotated[int, typer.Option(help="Measurements per depth; medians are reported.")] = 3,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads [default: every core].")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also draw tokens/s against depth, measured and predicted, to this PNG.")] = None,
    history: Annotated[bool, typer.Option("--history", help="List earlier runs instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    cpu_moe: CpuMoeOption = False,
    n_cpu_moe: NCpuMoeOption = None,
    override_tensor: OverrideTensorOption = None,
) -> None:
    """Measure prefill and decode tokens/s at several context depths, beside the planner's prediction.

    The measured efficiency is kept under HOMELLM_HOME, and plans for this machine use it from then on.
    """
    from homellm.bench.results import BenchResults, this_machine
    from homellm.bench.runner import BenchSettings, check_settings, run_bench
    from homellm.models.resolve import facts_of, resolve_model
    from homellm.models.shape import shape_from_facts

    home = Settings.from_env().home
    results = BenchResults(home)
    if history:
        _print_history(results.history(), as_json)
        return
    settings = BenchSettings(_depths(depths), n_prompt, n_gen, repeat, threads,
                             tensor_overrides(cpu_moe, n_cpu_moe, override_tensor) or ())
    check_settings(settings)
    if plot is not None and plot.suffix.lower() != ".png":
        raise InvalidRequestError(f"{plot.name} is not a .png file", hint="give --plot NAME.png", param="plot")
    store = open_store()
    ref = resolve_model(model, store)
    facts, digest = facts_of(ref, store)
    report = this_machine(home)
    steps = len(settings.depths) * settings.repeat * 2
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"benchmarking {ref.name}", total=steps)
        result = run_bench(ref.path, ref.name, digest, shape_from_facts(ref.name, facts), report, settings,
                           lambda label: progress.update(task, advance=1, description=f"{ref.name}: {label}"))
    results.add(result)
    if plot is not None:
        from homellm.bench.report import plot_bench

        plot_bench(asdict(result), plot)
        console.print(f"plot written to {plot}", highlight=False)
    if as_json:
        print(json.dumps(asdict(result), indent=2))
    else:
        _print_result(asdict(result))


def _depths(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidRequestError(f"depths {text!r} are not numbers", hint="give them like 0,512,2048",
                                  param="depths") from None
    return values


def _print_result(data: dict[str, Any]) -> None:
    out.print(f"[bold]{data['model']}[/] on {data['device']} ({data['llama_cpp_version']}): loaded in "
              f"{data['load_seconds']:.2f} s, peak memory {human_bytes(data['peak_rss_bytes'])}")
    table = new_table()
    for column in ("DEPTH", "PREFILL TOK/S", "PREDICTED", "RATIO", "DECODE TOK/S", "PREDICTED", "RATIO"):
        table.add_column(column, justify="right")
    for row in data["depths"]:
        low, high = row["prefill_range"]
        dlow, dhigh = row["decode_range"]
        table.add_row(f"{row['depth']:,}", f"{row['prefill_tps']:.1f} ({low:.0f}-{high:.0f})",
                      f"{row['predicted_prefill_tps']:.1f}", f"{row['predicted_prefill_tps'] / row['prefill_tps']:.2f}",
                      f"{row['decode_tps']:.1f} ({dlow:.0f}-{dhigh:.0f})", f"{row['predicted_decode_tps']:.1f}",
                      f"{row['predicted_decode_tps'] / row['decode_tps']:.2f}")
    out.print(table)
    out.print(f"bandwidth efficiency of {data['device']}: measured {data['measured_efficiency']:.3f} "
              f"(the prediction used {data['planned_efficiency']:.3f}); plans for this machine use the measured one")
    first = data["depths"][0]
    if first["decode_joules_per_token"] is not None:
        per_depth = ", ".join(f"{d['decode_joules_per_token']:.3f} J/token at {d['depth']:,}" for d in data["depths"])
        out.print(f"energy ({data['energy_source']}): {per_depth}")
    else:
        estimate = data["estimated_watts"] / first["decode_tps"]
        out.print(f"energy: about {estimate:.2f} J/token decoding, an estimate ({data['energy_source']})")


def _print_history(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = new_table()
    for column in ("WHEN", "MODEL", "DEVICE", "DECODE TOK/S @0", "PREFILL TOK/S @0", "EFFICIENCY", "LLAMA.CPP"):
        table.add_column(column)
    from datetime import datetime

    for row in rows:
        first = row["depths"][0]
        table.add_row(datetime.fromtimestamp(row["created"]).strftime("%Y-%m-%d %H:%M"), row["model"], row["device"],
                      f"{first['decode_tps']:.1f}", f"{first['prefill_tps']:.1f}", f"{row['measured_efficiency']:.3f}",
                      row["llama_cpp_version"])
    out.print(table)
