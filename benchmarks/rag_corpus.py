"""A retrieval evaluation corpus built from the Python standard library's own documentation.

Documents: one text file per importable standard-library module (`root/modules/<name>.txt`):
the module's docstring without its summary sentence, followed by the one-paragraph summaries
of its public functions, classes and methods; plus, as distractors, the language reference
topics that `pydoc` ships (`root/topics/<key>.txt`).

Queries: a module's docstring summary sentence (e.g. "Heap queue algorithm (a.k.a. priority
queue).") with the module's name and its dotted parts removed; the answer is that module's
document. Every module document is written without its summary, and a query is kept only
when no document contains it verbatim (so it never matches its answer word for word) and no
other module's summary contains all its content words (so its answer is unambiguous).

Modules are imported in a child interpreter (`python -I -S`), so the caller's process is
untouched, third-party packages cannot shadow the standard library, and anything a module
prints on import is discarded. The output depends only on the Python version and the seed.

    .venv/bin/python benchmarks/rag_corpus.py [--root DIR] [--queries 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Top-level modules never imported: side effects on import, GUI toolkits, test suites, data-only
# packages, deprecated packages that write caches, test extension modules.
EXCLUDED_TOP = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "lib2to3",
    "pydoc_data", "xxlimited", "xxlimited_35", "xxsubtype", "__main__",
})
# Packages whose submodules are skipped (machine-generated near-duplicates: ~100 codec tables).
NO_SUBMODULES = frozenset({"encodings"})
# Submodule name parts never imported.
EXCLUDED_PARTS = frozenset({"test", "tests", "idle_test", "__main__"})

MIN_DOC_CHARS = 200         # a document's body (without its title) must be at least this long
MIN_ANSWER_WORDS = 150      # a query's answer document must have at least this many words
MAX_DOC_WORDS = 3000        # member summaries stop being added past this many words
MAX_MEMBER_WORDS = 60       # one member summary is cut to this many words
MAX_METHODS = 15            # public methods summarised per class
MIN_QUERY_CONTENT_WORDS = 3  # content words (3+ letters, not a stop word) a query needs
MAX_QUERY_WORDS = 40

STOP_WORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "that", "the", "this", "to", "with",
    "module", "modules", "package", "implementation", "support", "python",
))
ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "a.k.a.", "vs.", "cf.", "approx.", "no.")
SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)\s*(->.*)?$")
URL = re.compile(r"<?\bhttps?://\S+>?")
# Summaries that do not describe their module.
NOT_A_SUMMARY = re.compile(r"^(here'?s|this will be)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Query:
    text: str    # the question
    answer: str  # the relative file name (posix) of the document that answers it


@dataclass(frozen=True)
class Corpus:
    root: Path
    documents: list[Path]
    queries: list[Query]


@dataclass(frozen=True)
class _ModuleDoc:
    name: str
    summary: str        # first sentence of the docstring, removed from the document
    body: str           # the rest of the docstring
    members: list[str]  # "name: summary" lines


# --- extraction (runs in the child interpreter) ---------------------------------------------


def _paragraphs(doc: str) -> list[str]:
    """Blank-line separated paragraphs of a cleaned docstring, indentation kept."""
    text = inspect.cleandoc(doc).replace("\x0c", "")
    return [p.rstrip().lstrip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]


def _one_line(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")


def _split_first_sentence(paragraph: str) -> tuple[str, str]:
    """(first sentence, rest) of a paragraph, whitespace collapsed in the sentence.

    A sentence ends at . ! or ? before a capital (not after an abbreviation), or at a colon
    that ends a line (the start of a list or an example).
    """
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s+[A-Z0-9\"'(\[])", paragraph)
            if not paragraph[:m.end()].lower().endswith(ABBREVIATIONS)]
    ends += [m.start() + 1 for m in re.finditer(r":[ \t]*\n", paragraph)]
    if not ends:
        return " ".join(paragraph.split()), ""
    end = min(ends)
    return " ".join(paragraph[:end].split()), paragraph[end:].strip()


def _member_summary(obj: object) -> str:
    doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    while lines and (not lines[0].strip() or SIGNATURE_LINE.match(lines[0].strip())):
        lines.pop(0)  # "name(args) -> result" lines of C functions
    paragraphs = _paragraphs("\n".join(lines)) if lines else []
    return _one_line(paragraphs[0], MAX_MEMBER_WORDS) if paragraphs else ""


def _members(module: object, name: str) -> list[str]:
    """'name: summary' lines for the module's public functions and classes (and their methods)."""
    exported = getattr(module, "__all__", None)
    explicit = isinstance(exported, (list, tuple)) and all(isinstance(n, str) for n in exported)
    names = sorted(set(exported)) if explicit else [n for n in dir(module) if not n.startswith("_")]
    lines: list[str] = []
    for member_name in names:
        obj = getattr(module, member_name, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if not explicit and getattr(obj, "__module__", None) != name:
            continue  # imported from elsewhere
        summary = _member_summary(obj)
        if summary:
            lines.append(f"{member_name}: {summary}")
        if inspect.isclass(obj):
            methods = 0
            for attr, value in vars(obj).items():
                if attr.startswith("_") or methods >= MAX_METHODS:
                    continue
                value = getattr(value, "__func__", value)  # classmethod, staticmethod
                if not inspect.isroutine(value):
                    continue
                summary = _member_summary(value)
                if summary:
                    lines.append(f"{member_name}.{attr}: {summary}")
                    methods += 1
    return lines


def _module_names() -> list[str]:
    """Importable standard-library module names (submodules included), sorted."""
    import importlib
    import pkgutil

    found: list[str] = []

    def visit(name: str) -> None:
        try:
            module = importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - ImportError, platform errors, SystemExit: skip it
            return
        if getattr(module, "__name__", None) != name:
            return  # an alias such as os.path
        found.append(name)
        path = getattr(module, "__path__", None)
        if path is None or name.split(".")[0] in NO_SUBMODULES:
            return
        for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
            if info.name.startswith("_") or info.name in EXCLUDED_PARTS:
                continue
            visit(f"{name}.{info.name}")

    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in EXCLUDED_TOP:
            continue
        visit(top)
    return sorted(found)


def _extract(out: Path) -> None:
    """Write every module's docstring parts to `out` as JSON (child interpreter entry point)."""
    import warnings

    warnings.simplefilter("ignore")
    records = []
    for name in _module_names():
        module = sys.modules[name]
        doc = module.__doc__ if isinstance(module.__doc__, str) else ""
        paragraphs = _paragraphs(doc) if doc.strip() else []
        summary, rest = _split_first_sentence(paragraphs[0]) if paragraphs else ("", "")
        body = "\n\n".join(([rest] if rest else []) + paragraphs[1:])
        try:
            members = _members(module, name)
        except Exception:  # noqa: BLE001 - odd attributes (lazy loaders, descriptors): no members
            members = []
        records.append({"name": name, "summary": summary, "body": body, "members": members})
    out.write_text(json.dumps(records), encoding="utf-8")


def _load_modules() -> list[_ModuleDoc]:
    """Run `_extract` in a fresh isolated interpreter and read its records."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "modules.json"
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-W", "ignore", str(Path(__file__).resolve()),
             "--extract", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=tmp, timeout=600, check=False,
        )
        if proc.returncode != 0 or not out.exists():
            tail = proc.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"module extraction failed (rc {proc.returncode}): {tail}")
        records = json.loads(out.read_text(encoding="utf-8"))
    return [_ModuleDoc(r["name"], r["summary"], r["body"], list(r["members"])) for r in records]


# --- corpus -------------------------------------------------------------------------------


def _document_text(module: _ModuleDoc) -> str:
    """Title, docstring body, then member summaries up to MAX_DOC_WORDS words."""
    parts = [module.name]
    if module.body:
        parts.append(module.body)
    words = sum(len(p.split()) for p in parts)
    members: list[str] = []
    for line in module.members:
        if words >= MAX_DOC_WORDS:
            break
        members.append(line)
        words += len(line.split())
    if members:
        parts.append("Functions and classes:\n" + "\n".join(members))
    return "\n\n".join(parts) + "\n"


def _query_text(summary: str, module_name: str) -> str:
    """The summary with URLs and the module's name (full, dotted parts, plural) removed."""
    text = URL.sub(" ", summary)
    variants = sorted({module_name, *module_name.split(".")}, key=len, reverse=True)
    for variant in variants:
        text = re.sub(rf"(?<![\w.]){re.escape(variant)}(?:\.py|s)?(?!\w)", " ", text,
                      flags=re.IGNORECASE)
    text = re.sub(r"[`'\"]{2,}", " ", text)            # emptied ``x`` / '' quotes
    text = re.sub(r"\(\s*[^\w\s]*\s*\)", " ", text)    # emptied ( ) brackets
    text = " ".join(text.split())
    text = re.sub(r"\s+([.,;:!?)])", r"\1", text)
    text = re.sub(r"^(the\s+)?module\b", "", text, flags=re.IGNORECASE)  # "The json module -- ..."
    text = re.sub(r"^[^\w(\"']+", "", text)            # leading punctuation
    text = re.sub(r"\s*:$", "", text)                  # "... based on:" before a list
    return text.strip()


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _content_words(text: str) -> set[str]:
    """Tokens of 3+ characters that are neither numbers nor stop words."""
    return {t for t in _tokens(text) if len(t) >= 3 and not t.isdigit() and t not in STOP_WORDS}


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name) + ".txt"


def _write(root: Path, folder: str, texts: dict[str, str]) -> list[Path]:
    """Write `texts` (file name -> text) under root/folder, removing stale .txt files there."""
    directory = root / folder
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.txt"):
        if stale.name not in texts:
            stale.unlink()
    paths = []
    for file_name, text in sorted(texts.items()):
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def build_corpus(root: Path, min_documents: int = 200, n_queries: int = 60, seed: int = 0,
                 include_topics: bool = True) -> Corpus:
    """Write the documents under `root` and pick `n_queries` queries (fewer only if too few qualify).

    Raises RuntimeError when fewer than `min_documents` documents qualify.
    """
    from pydoc_data.topics import topics

    root = Path(root)
    modules = _load_modules()

    module_texts: dict[str, str] = {}
    by_file: dict[str, _ModuleDoc] = {}
    seen_docs: set[str] = set()
    for module in modules:
        text = _document_text(module)
        body = text[len(module.name):].strip()
        if len(body) < MIN_DOC_CHARS:
            continue
        key = module.summary + "\n" + module.body
        if module.body and key in seen_docs:
            continue  # same docstring as a module already written (a re-export)
        seen_docs.add(key)
        file_name = _file_name(module.name)
        module_texts[file_name] = text
        by_file[file_name] = module

    topic_texts: dict[str, str] = {}
    if include_topics:
        for key in sorted(topics):
            text = topics[key].strip()
            if len(text) >= MIN_DOC_CHARS:
                topic_texts[_file_name(key)] = text + "\n"

    documents = _write(root, "modules", module_texts)
    documents += _write(root, "topics", topic_texts) if include_topics else []
    if len(documents) < min_documents:
        raise RuntimeError(f"only {len(documents)} documents qualify, {min_documents} required")

    # Every document's token stream, padded so that a substring test matches whole tokens only.
    haystacks = [" " + " ".join(_tokens(t)) + " " for t in [*module_texts.values(), *topic_texts.values()]]
    summary_words = {f: set(_tokens(m.summary)) for f, m in by_file.items()}
    candidates: list[Query] = []
    for file_name, module in sorted(by_file.items()):
        if len(module_texts[file_name].split()) < MIN_ANSWER_WORDS or NOT_A_SUMMARY.match(module.summary):
            continue
        text = _query_text(module.summary, module.name)
        words = _content_words(text)
        if len(text.split()) > MAX_QUERY_WORDS or len(words) < MIN_QUERY_CONTENT_WORDS:
            continue
        needle = " " + " ".join(_tokens(text)) + " "
        if any(needle in hay for hay in haystacks):
            continue  # trivial: a document contains the query word for word
        if any(words <= other for f, other in summary_words.items() if f != file_name):
            continue  # ambiguous: another module's summary says the same ("Stuff to parse files.")
        candidates.append(Query(text=text, answer=f"modules/{file_name}"))

    rng = random.Random(seed)
    queries = rng.sample(candidates, min(n_queries, len(candidates)))
    return Corpus(root=root, documents=documents, queries=queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="write here instead of a temporary directory")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--extract", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.extract is not None:
        _extract(args.extract)
        return

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        corpus = build_corpus(root, n_queries=args.queries, seed=args.seed)
        counts: dict[str, int] = {}
        words = 0
        for path in corpus.documents:
            counts[path.parent.name] = counts.get(path.parent.name, 0) + 1
            words += len(path.read_text(encoding="utf-8").split())
        per_folder = ", ".join(f"{n} {folder}" for folder, n in sorted(counts.items()))
        print(f"Python {sys.version.split()[0]}, root {root}")
        print(f"documents: {len(corpus.documents)} ({per_folder})")
        print(f"total words: {words} (mean {words / max(1, len(corpus.documents)):.0f} per document)")
        print(f"queries: {len(corpus.queries)} (seed {args.seed})")
        for query in corpus.queries[:args.examples]:
            print(f"  {query.text!r}\n      -> {query.answer}")


if __name__ == "__main__":
    main()
