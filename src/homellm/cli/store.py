"""The store's commands: ls, show, import, pull, rm, cp (registered on the app in cli.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from homellm.cli.options import JsonOption
from homellm.cli.output import ago, console, human_bytes, human_count, new_table, out
from homellm.config import Settings
from homellm.errors import InvalidRequestError
from homellm.generation import SAMPLING_FIELDS, SamplingDefaults
from homellm.models.gguf import ModelFacts, read_model_facts
from homellm.models.names import name_from_filename
from homellm.models.sampling import recommended_sampling
from homellm.models.store import Store, StoredModel
from homellm.scheduler.placement import checked_store

_FIRST_SHARD = re.compile(r"(.+)-00001-of-(\d{5})\.gguf", re.IGNORECASE)


def open_store() -> Store:
    """The store under HOMELLM_HOME; llama.cpp must open a file (in a child process) before it is stored."""
    return checked_store(Settings.from_env().home)


def ls(as_json: JsonOption = False) -> None:
    """List the stored models."""
    models = open_store().list()
    if as_json:
        print(json.dumps([_summary(m) for m in models], indent=2))
        return
    table = new_table()
    for column in ("NAME", "SIZE", "PARAMS", "QUANT", "ARCH", "MODIFIED"):
        table.add_column(column, justify="right" if column in ("SIZE", "PARAMS") else "left")
    for m in models:
        table.add_row(m.name, human_bytes(m.size), human_count(m.facts.parameters), m.facts.file_type or "?",
                      m.facts.architecture, ago(m.modified))
    out.print(table)


def show(name: Annotated[str, typer.Argument(help="A stored model's name, or a .gguf file.")],
         as_json: JsonOption = False) -> None:
    """Show what is inside a model: architecture, size, layers, attention, experts, quant mix."""
    if name.lower().endswith(".gguf") and Path(name).expanduser().is_file():
        facts, header = read_model_facts(Path(name).expanduser()), {"path": str(Path(name).expanduser().resolve())}
    else:
        model = open_store().get(name)
        facts, header = model.facts, {"name": model.name, "path": str(model.path), "source": model.source}
    details = {**header, **_facts_dict(facts)}
    sampling = recommended_sampling(facts.metadata)
    if as_json:
        details["sampling"] = {name: {"value": getattr(sampling, name), "source": sampling.source(name)}
                               for name in SAMPLING_FIELDS}
        print(json.dumps(details, indent=2))
        return
    table = new_table(show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in details.items():
        if key in ("quant_mix", "expert_tensors") or value is None:
            continue
        table.add_row(key, _human_field(key, value))
    mix = ", ".join(f"{t} {human_bytes(b)}" for t, b in sorted(facts.quant_mix.items(), key=lambda kv: -kv[1]))
    table.add_row("quant mix", mix)
    table.add_row("sampling", _sampling_line(sampling))
    out.print(table)


def _sampling_line(sampling: SamplingDefaults) -> str:
    """The defaults a request gets, each marked when the model file chose it rather than homellm."""
    last_n = "the whole context" if sampling.repeat_last_n < 0 else f"the last {sampling.repeat_last_n} tokens"
    values = {"temperature": f"temperature {sampling.temperature:g}", "top_k": f"top_k {sampling.top_k}",
              "top_p": f"top_p {sampling.top_p:g}", "min_p": f"min_p {sampling.min_p:g}",
              "repeat_penalty": f"repeat_penalty {sampling.repeat_penalty:g}", "repeat_last_n": f"over {last_n}"}
    marked = [text + (" (model file)" if sampling.source(name) == "model file" else "") for name, text in values.items()]
    origin = "from the model file" if len(sampling.from_model) == len(values) else \
        "homellm's defaults" if not sampling.from_model else "homellm's defaults where the file names none"
    return f"{', '.join(marked)}: {origin}; a request's own values win"


def import_(path: Annotated[Path, typer.Argument(help="A GGUF file (the first shard of a split model).")],
            name: Annotated[str | None, typer.Option(help="Name to store it under [default: from the file name].")] = None) -> None:
    """Check, hash and store a local GGUF file under a name."""
    path = path.expanduser()
    if not path.is_file():
        raise InvalidRequestError(f"no file at {path}", hint="give the path of a .gguf file")
    shards = _shards_of(path)
    store = open_store()
    with byte_progress(sum(p.stat().st_size for p in shards), f"importing {path.name}") as advance:
        model = store.add(shards, name or name_from_filename(path.stem), f"import:{path.resolve()}",
                          progress=advance)
    console.print(f"stored [bold]{model.name}[/] ({human_bytes(model.size)}, {model.digests[0][:12]})",
                  highlight=False)


def pull(ref: Annotated[str, typer.Argument(help="hf.co/OWNER/REPO:QUANT or OWNER/REPO/FILE.gguf")],
         name: Annotated[str | None, typer.Option(help="Name to store it under [default: from the repository and quant].")] = None) -> None:
    """Download a GGUF model from the Hugging Face Hub (HF_ENDPOINT, HF_TOKEN honoured); an interrupted pull resumes."""
    from homellm.models.hub import pull as pull_model

    progress = _RichPull()
    try:
        model, downloaded = pull_model(open_store(), ref, name, progress=progress)
    finally:
        progress.stop()
    verb = "pulled" if downloaded else "already up to date:"
    console.print(f"{verb} [bold]{model.name}[/] ({human_bytes(model.size)}, sha256 {model.digests[0][:12]}…)",
                  highlight=False)


class _RichPull:
    """A byte progress bar for `homellm pull`, started once the size is known."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, total: int, done: int, label: str) -> None:
        self._progress = _byte_bar()
        self._progress.start()
        self._task = self._progress.add_task(label + (" (resuming)" if done else ""), total=total, completed=done)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def rm(names: Annotated[list[str], typer.Argument(help="Stored model names.")]) -> None:
    """Remove models from the store; a file is deleted once no name uses it."""
    store = open_store()
    for name in names:
        console.print(f"removed [bold]{store.remove(name).name}[/]", highlight=False)


def cp(src: Annotated[str, typer.Argument(help="A stored model.")],
       dst: Annotated[str, typer.Argument(help="The new name.")]) -> None:
    """Give a stored model another name (the file is shared, not copied)."""
    model = open_store().copy(src, dst)
    console.print(f"copied to [bold]{model.name}[/]", highlight=False)


@contextmanager
def byte_progress(total: int, label: str) -> Iterator[Any]:
    """A Rich progress bar over bytes; yields the function that advances it."""
    progress = _byte_bar()
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


def _byte_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)


def _shards_of(path: Path) -> list[Path]:
    """A split model's shards beside its first file (`-00001-of-00003.gguf`), or just the file."""
    match = _FIRST_SHARD.fullmatch(path.name)
    if not match:
        return [path]
    prefix, count = match.group(1), match.group(2)
    if int(count) < 1:
        raise InvalidRequestError(f"{path.name} claims to be one of {count} shards", hint="import another file")
    shards = [path.with_name(f"{prefix}-{i:05d}-of-{count}.gguf") for i in range(1, int(count) + 1)]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise InvalidRequestError(f"the split model lacks {', '.join(missing[:3])}",
                                  hint="put every shard in the same folder")
    return shards


def _summary(model: StoredModel) -> dict[str, Any]:
    return {
        "name": model.name, "path": str(model.path), "size": model.size, "digest": model.digests[0] if model.digests else None,
        "parameters": model.facts.parameters, "quant": model.facts.file_type, "architecture": model.facts.architecture,
        "modified": datetime.fromtimestamp(model.modified, timezone.utc).isoformat(), "source": model.source,
        "builtin": model.builtin,
    }


def _facts_dict(facts: ModelFacts) -> dict[str, Any]:
    data = asdict(facts)
    data.pop("metadata")
    data["expert_tensors"] = list(facts.expert_tensors)
    return data


def _human_field(key: str, value: Any) -> str:
    if key in ("file_size", "tensor_bytes", "expert_bytes"):
        return human_bytes(value)
    if key == "parameters":
        return f"{human_count(value)} ({value:,})"
    return str(value)
