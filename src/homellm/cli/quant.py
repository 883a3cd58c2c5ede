"""The quant lab's commands: quantize, eval, quant sweep (registered on the app in cli.py)."""

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
    JsonOption,
    KvTypeKOption,
    KvTypeOption,
    KvTypeVOption,
    ThreadsOption,
    kv_cache_type,
)
from homellm.cli.output import console, human_bytes, new_table, out
from homellm.cli.store import open_store
from homellm.errors import InvalidRequestError

quant_app = typer.Typer(help="Measure quants of a model.", no_args_is_help=True, rich_markup_mode=None)
CtxOption = Annotated[int, typer.Option("--ctx", min=16, help="Tokens per evaluated chunk; the second half is scored.")]
TextOption = Annotated[Path | None, typer.Option("--text", help="A UTF-8 text file to evaluate on.")]
BuiltinTextOption = Annotated[bool, typer.Option(
    "--builtin-text", help="Evaluate on Python's own documentation topics (pydoc_data), the same on every machine.")]


def quantize(
    source: Annotated[str | None, typer.Argument(help="A stored model or a .gguf file.", show_default=False)] = None,
    to: Annotated[str | None, typer.Option("--to", help="The type to write: Q4_K_M, Q8_0, ... (--list shows all).")] = None,
    name: Annotated[str | None, typer.Option(help="Store it under this name [default: SOURCE-TYPE].")] = None,
    allow_requantize: Annotated[bool, typer.Option(
        "--allow-requantize", help="Quantize a source that is already quantized (costs quality).")] = False,
    imatrix: Annotated[Path | None, typer.Option(help="An importance matrix from llama-imatrix (GGUF); IQ1-IQ3 types need one.")] = None,
    list_types: Annotated[bool, typer.Option("--list", help="List the types and exit.")] = False,
    threads: ThreadsOption = None,
) -> None:
    """Quantize a model with llama.cpp and store the result; an interrupted run leaves nothing behind."""
    from homellm.models.resolve import facts_of, resolve_model
    from homellm.quant.quantize import quantize_model, supported_types

    if list_types:
        print("\n".join(supported_types()))
        return
    if source is None or to is None:
        raise InvalidRequestError("give a SOURCE and --to TYPE", hint="homellm quantize smollm2:135m --to Q8_0",
                                  param="to")
    store = open_store()
    ref = resolve_model(source, store)
    facts, _ = facts_of(ref, store)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"quantizing {ref.name} to {to.upper()}", total=None)
        done = quantize_model(store, ref, facts, to, name, allow_requantize, threads,
                              lambda i, n: progress.update(task, completed=i, total=n), imatrix)
    fallbacks = (f"; {done.report.fallbacks} of {done.report.tensors} tensors fell back to another type "
                 "(their rows do not fit the type's blocks)") if done.report.fallbacks else ""
    out.print(f"stored {done.model.name}: {human_bytes(done.model.size)} (predicted "
              f"{human_bytes(done.predicted_bytes)}){fallbacks}")


def evaluate_command(
    model: Annotated[str | None, typer.Argument(help="A stored model or a .gguf file [default: the built-in model].")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="A reference model (the same model at higher precision) for KL divergence.")] = None,
    text: TextOption = None,
    builtin_text: BuiltinTextOption = False,
    ctx: CtxOption = 512,
    chunks: Annotated[int | None, typer.Option(min=1, help="Evaluate at most this many chunks [default: all].")] = None,
    threads: ThreadsOption = None,
    kv_type: KvTypeOption = None,
    kv_type_k: KvTypeKOption = None,
    kv_type_v: KvTypeVOption = None,
    as_json: JsonOption = False,
) -> None:
    """Perplexity of a model on a text; with --ref, KL divergence from the reference and top-token agreement.
    With --kv-type and no --ref: the KL of that KV cache type against an F16 cache, on the same model."""
    from homellm.models.resolve import resolve_model
    from homellm.quant.evaluate import evaluate

    cache = kv_cache_type(kv_type, kv_type_k, kv_type_v) or "F16"
    corpus = _text(text, builtin_text)
    store = open_store()
    target = resolve_model(model, store)
    reference = resolve_model(ref, store) if ref else None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"evaluating {target.name}", total=None)
        result = evaluate(target.path, corpus, ctx, chunks, reference.path if reference else None, threads,
                          lambda i, n: progress.update(task, completed=i, total=n), cache)
    data = asdict(result)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    kv = f" with a {cache} KV cache" if cache != "F16" else ""
    line = f"{target.name}{kv}: perplexity {result.ppl:.3f} over {result.tokens:,} tokens ({result.chunks} chunks of {ctx})"
    if result.kl_mean is not None:  # against --ref, or against this model with an F16 cache
        against = reference.name if reference is not None else f"{target.name} with an F16 KV cache"
        line += (f"; {against} {result.ref_ppl:.3f}. KL divergence mean {result.kl_mean:.5f}, "
                 f"p99 {result.kl_p99:.5f}, max {result.kl_max:.4f}; same top token {result.top1_agreement:.1%}")
    out.print(line)


@quant_app.command("sweep")
def sweep_command(
    model: Annotated[str | None, typer.Argument(help="A stored model or a .gguf file [default: the built-in model].")] = None,
    types: Annotated[str, typer.Option(help="Types to measure, comma-separated.")] = "Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K",
    text: TextOption = None,
    builtin_text: BuiltinTextOption = True,
    ctx: CtxOption = 512,
    chunks: Annotated[int, typer.Option(min=1, help="Chunks of the text each quant is measured on.")] = 8,
    threads: ThreadsOption = None,
    plot: Annotated[Path | None, typer.Option(help="Also draw quality against size to this PNG.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Quantize a model to several types and measure each against a 16-bit reference; the planner uses the KL."""
    from homellm.models.resolve import facts_of, resolve_model
    from homellm.quant.quantize import check_type
    from homellm.quant.results import QuantResults
    from homellm.quant.sweep import sweep

    chosen = tuple(check_type(t) for t in types.split(",") if t.strip())
    if not chosen:
        raise InvalidRequestError("--types is empty", hint="give types like Q8_0,Q4_K_M", param="types")
    if plot is not None and plot.suffix.lower() != ".png":
        raise InvalidRequestError(f"{plot.name} is not a .png file", hint="give --plot NAME.png", param="plot")
    corpus = _text(text, builtin_text and text is None)
    store = open_store()
    ref = resolve_model(model, store)
    facts, _ = facts_of(ref, store)
    with console.status(f"sweeping {ref.name}") as status:
        result = sweep(ref, facts, chosen, corpus, store.home / "tmp", ctx, chunks, threads,
                       lambda message: status.update(f"{ref.name}: {message}"))
    QuantResults(store.home).save(result)
    if plot is not None:
        from homellm.quant.report import plot_sweep

        plot_sweep(result, plot)
        console.print(f"plot written to {plot}", highlight=False)
    if as_json:
        print(json.dumps(asdict(result), indent=2))
        return
    _print_sweep(asdict(result))


def _print_sweep(data: dict[str, Any]) -> None:
    made = " (made from the source by requantizing)" if data["reference_requantized"] else ""
    out.print(f"[bold]{data['model']}[/]: each quant against {data['reference']}{made}, perplexity "
              f"{data['ref_ppl']:.3f}; {data['tokens']:,} tokens scored in chunks of {data['ctx']}")
    table = new_table()
    for column in ("QUANT", "SIZE", "BPW", "PPL", "KL MEAN", "KL P99", "SAME TOP", "DECODE TOK/S"):
        table.add_column(column, justify="left" if column == "QUANT" else "right")
    for row in data["rows"]:
        table.add_row(row["quant"], human_bytes(row["size_bytes"]), f"{row['bits_per_weight']:.2f}",
                      f"{row['ppl']:.3f}", f"{row['kl_mean']:.5f}", f"{row['kl_p99']:.4f}",
                      f"{row['top1_agreement']:.1%}", f"{row['decode_tps']:.1f}")
    out.print(table)


def _text(path: Path | None, builtin: bool) -> str:
    from homellm.quant.texts import builtin_text, read_text

    if path is not None and builtin:
        raise InvalidRequestError("give --text or --builtin-text, not both", hint="pick one", param="text")
    if path is not None:
        return read_text(path)
    if builtin:
        return builtin_text()
    raise InvalidRequestError("give a text to evaluate on", hint="--text FILE, or --builtin-text", param="text")
