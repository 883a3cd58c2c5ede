"""The quant lab on the built-in model: quantize, perplexity and KL, sweeps, and what they refuse."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import HOMELLM

from homellm.engine.llama import LlamaEngine
from homellm.errors import (
    EngineError,
    InvalidRequestError,
    ModelExistsError,
    ModelNotFoundError,
)
from homellm.models.builtin import BUILTIN_NAME, builtin_model_path
from homellm.models.gguf import read_header
from homellm.models.resolve import ModelRef, facts_of, resolve_model
from homellm.models.store import Store
from homellm.quant.evaluate import evaluate
from homellm.quant.quantize import quantize_model
from homellm.quant.results import QuantResults
from homellm.quant.sweep import sweep
from homellm.quant.texts import builtin_text


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("quant-home"))


@pytest.fixture(scope="module")
def reference(store: Store) -> ModelRef:
    """The built-in Q4_1 model requantized to F16: the reference the quants are measured against."""
    builtin = resolve_model(None, store)
    facts, _ = facts_of(builtin, store)
    done = quantize_model(store, builtin, facts, "F16", "smollm2:135m-f16", allow_requantize=True)
    assert done.model.facts.file_type == "F16" and done.report.tensors == 272
    return ModelRef(done.model.name, done.model.path)


def test_quants_lose_quality_in_order_and_the_reference_matches_itself(store: Store, reference: ModelRef):
    facts, _ = facts_of(reference, store)
    result = sweep(reference, facts, ("Q8_0", "Q4_K_M", "Q2_K"), builtin_text(), store.home / "tmp", 256, 1)
    kl = {row.quant: row.kl_mean for row in result.rows}
    assert 0 < kl["Q8_0"] < kl["Q4_K_M"] < kl["Q2_K"]
    assert [row.quant for row in result.rows] == ["Q8_0", "Q4_K_M", "Q2_K"]
    sizes = [row.size_bytes for row in result.rows]
    assert sizes == sorted(sizes, reverse=True)
    assert result.reference == "F16" and not result.reference_requantized
    assert list((store.home / "tmp").iterdir()) == []  # only the figures are kept
    itself = evaluate(reference.path, builtin_text(), 256, 1, ref=reference.path)
    assert itself.kl_mean == 0 and itself.kl_max == 0 and itself.top1_agreement == 1 and itself.ppl == itself.ref_ppl


def test_a_quantized_model_is_stored_and_serves(store: Store, reference: ModelRef):
    facts, _ = facts_of(reference, store)
    done = quantize_model(store, reference, facts, "q8_0")
    assert done.model.name == "smollm2:135m-f16-q8_0" and done.model.facts.file_type == "Q8_0"
    assert abs(done.model.size - done.predicted_bytes) / done.model.size < 0.1
    result = evaluate(done.model.path, builtin_text(), 256, 1)
    assert 5 < result.ppl < 40 and result.kl_mean is None


def test_requantizing_is_refused_without_leave_and_nothing_changes(store: Store):
    builtin = resolve_model(None, store)
    facts, _ = facts_of(builtin, store)
    before = [m.name for m in store.list()]
    with pytest.raises(InvalidRequestError, match="already quantized"):
        quantize_model(store, builtin, facts, "Q4_K_M")
    with pytest.raises(InvalidRequestError, match="already Q4_1"):
        quantize_model(store, builtin, facts, "Q4_1", allow_requantize=True)
    with pytest.raises(InvalidRequestError, match="not a type llama.cpp can quantize to") as info:
        quantize_model(store, builtin, facts, "Q4_K_X")
    assert "Q4_K_M" in info.value.hint
    assert [m.name for m in store.list()] == before


def test_a_name_in_use_is_refused_before_any_work(store: Store, reference: ModelRef):
    facts, _ = facts_of(reference, store)
    with pytest.raises(ModelExistsError):
        quantize_model(store, reference, facts, "Q6_K", name=BUILTIN_NAME)


def test_a_quantization_llama_cpp_refuses_leaves_no_model_and_no_file(store: Store, reference: ModelRef):
    facts, _ = facts_of(reference, store)
    before = [m.name for m in store.list()]
    with pytest.raises(EngineError, match="could not quantize"):
        quantize_model(store, reference, facts, "IQ2_XXS")  # needs an importance matrix
    assert [m.name for m in store.list()] == before
    assert list((store.home / "tmp").iterdir()) == []


def test_a_few_chunks_tokenize_the_beginning_of_a_long_text_as_the_whole_text_would(engine: LlamaEngine):
    from homellm.quant.evaluate import _text_tokens

    text = builtin_text()
    whole = _text_tokens(engine, text)
    for needed in (16, 256, 512 * 8, 12_345):  # each cut of the text falls wherever it falls, mid-word or not
        assert _text_tokens(engine, text, needed) == whole[:needed]
    short = "Just a few words."  # shorter than asked for: all of it, as without a count
    assert _text_tokens(engine, short, 512) == _text_tokens(engine, short)


def test_eval_refuses_zero_chunks_before_loading():
    with pytest.raises(InvalidRequestError, match="at least one chunk"):
        evaluate(builtin_model_path(), builtin_text(), 512, chunks=0)


def test_eval_refuses_a_text_shorter_than_one_window(tmp_path: Path):
    with pytest.raises(InvalidRequestError, match="fewer than one context window of 512"):
        evaluate(builtin_model_path(), "Just a few words.", 512)


def test_a_missing_source_is_a_clear_error(store: Store):
    with pytest.raises(ModelNotFoundError):
        resolve_model("no-such:model", store)


def test_measured_kl_replaces_the_published_one_in_plans(store: Store, reference: ModelRef):
    from homellm.advice.advisor import PlanQuestion, advise
    from homellm.quant.sweep import Sweep, SweepRow

    row = SweepRow("Q4_K_M", 1, 4.8, 10.0, 0.123, 0.5, 1.0, 0.9, 100.0)
    QuantResults(store.home).save(Sweep(BUILTIN_NAME, "F16", True, 9.0, 512, 2, 512, (row,)))
    result, _ = advise(PlanQuestion(BUILTIN_NAME, quant="Q4_K_M", gpus=("RTX 3060 12GB",), ram_gb=16,
                                    memory="DDR4-3200 dual-channel"), None, store)
    assert (result.kl_mean, result.kl_source) == (0.123, "measured")
    other, _ = advise(PlanQuestion(BUILTIN_NAME, quant="Q8_0", gpus=("RTX 3060 12GB",), ram_gb=16,
                                   memory="DDR4-3200 dual-channel"), None, store)
    assert other.kl_source == "published"


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([HOMELLM, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOMELLM_HOME": str(home)})


def test_sweep_command_prints_json_and_writes_the_plot(tmp_path: Path):
    result = run(tmp_path / "home", "quant", "sweep", "--types", "Q8_0,Q2_K", "--chunks", "1", "--ctx", "256",
                 "--json", "--plot", str(tmp_path / "sweep.png"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [row["quant"] for row in data["rows"]] == ["Q8_0", "Q2_K"] and data["reference_requantized"]
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    plan = run(tmp_path / "home", "plan", BUILTIN_NAME, "--quant", "Q2_K", "--json")
    assert json.loads(plan.stdout)["kl_source"] == "measured"


def test_eval_and_quantize_commands_and_their_errors(tmp_path: Path):
    home = tmp_path / "home"
    evaluated = run(home, "eval", "--builtin-text", "--chunks", "1", "--ctx", "256", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert {"ppl", "tokens", "kl_mean", "ref_ppl", "kl_p99", "kl_max", "top1_agreement"} <= set(json.loads(evaluated.stdout))
    short = tmp_path / "short.txt"
    short.write_text("Too short to evaluate.")
    for args, message in [
        (("eval", "--text", str(short)), "fewer than one context window"),
        (("eval", "--text", str(tmp_path / "missing.txt")), "does not exist"),
        (("eval",), "give a text to evaluate on"),
        (("eval", "--builtin-text", "--kv-type", "q3_k"), "'q3_k' is not a KV cache type"),
        (("eval", "--builtin-text", "--kv-type-v", "f8"), "'f8' is not a KV cache type"),
        (("quantize", BUILTIN_NAME, "--to", "Q9_Z"), "not a type llama.cpp can quantize to"),
        (("quantize", "missing:model", "--to", "Q8_0"), "no model named"),
        (("quantize", BUILTIN_NAME, "--to", "Q4_1"), "already Q4_1"),
        (("quantize", BUILTIN_NAME, "--to", "Q8_0"), "already quantized"),
    ]:
        result = run(home, *args)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    listed = run(home, "quantize", "--list")
    assert listed.returncode == 0 and "Q4_K_M" in listed.stdout.split()


def test_eval_with_a_quantized_kv_cache_measures_it_against_an_f16_cache(tmp_path: Path):
    def kl(kv_type: str) -> dict:
        result = run(tmp_path / "home", "eval", "--builtin-text", "--chunks", "2", "--ctx", "256", "--kv-type", kv_type,
                     "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    q8, q4 = kl("q8_0"), kl("q4_0")
    assert (q8["kv_type"], q4["kv_type"]) == ("Q8_0", "Q4_0")
    assert 0 < q8["kl_mean"] < q4["kl_mean"]  # a 4-bit cache loses more than an 8-bit one
    assert q8["kl_mean"] < 0.02 and q8["top1_agreement"] > 0.9
    assert q8["ref_ppl"] == q4["ref_ppl"]  # both against the same model with an F16 cache


def test_an_importance_matrix_lets_the_iq2_types_quantize(store: Store, tmp_path: Path):
    # A tiny model with rows of 256, as the i-quants need: the same llama.cpp quantizer as for the built-in
    # model, in a second rather than twenty.
    from ggufs import write_imatrix, write_tiny_dense

    source = write_tiny_dense(tmp_path / "wide.gguf", embd=256, ff=512)
    model = ModelRef("tiny-wide", source)
    facts, _ = facts_of(model, store)
    with pytest.raises(EngineError, match="could not quantize"):
        quantize_model(store, model, facts, "IQ2_XXS", allow_requantize=True)  # no importance matrix
    done = quantize_model(store, model, facts, "IQ2_XXS", allow_requantize=True,
                          imatrix=write_imatrix(tmp_path / "m.gguf", source))
    assert done.model.facts.file_type == "IQ2_XXS" and done.report.fallbacks == 0
    layers = [t for t in read_header(done.model.path).tensors if t.name.startswith("blk.") and len(t.shape) == 2]
    types = {t.ggml_type for t in layers}
    assert "IQ2_XXS" in types and types <= {"IQ2_XXS", "Q2_K"}, types  # every layer matrix at about 2 bits
    assert sum(t.nbytes for t in layers) < sum(t.nbytes for t in read_header(source).tensors
                                               if t.name.startswith("blk.") and len(t.shape) == 2) / 3
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not gguf" * 64)
    with pytest.raises(InvalidRequestError, match="not a GGUF importance matrix"):
        quantize_model(store, model, facts, "IQ2_XS", allow_requantize=True, imatrix=bogus)
