"""The SQLite registry: names, content-addressed blobs, atomic registration, refusals that change nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from ggufs import write_tiny_dense, write_tiny_dense_split

from homellm.errors import (
    DownloadError,
    InvalidModelFileError,
    InvalidModelNameError,
    InvalidRequestError,
    ModelExistsError,
    ModelNotFoundError,
)
from homellm.models.builtin import BUILTIN_NAME
from homellm.models.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home")


def snapshot(store: Store) -> tuple[list[str], list[str]]:
    """What a refusal must leave unchanged: the names and every file under blobs/."""
    return [m.name for m in store.list()], sorted(p.name for p in store.blobs.iterdir())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fresh_store_lists_the_builtin_model(store: Store, builtin_path: Path):
    (model,) = store.list()
    assert model.name == BUILTIN_NAME and model.builtin
    assert model.path == builtin_path and model.size == builtin_path.stat().st_size
    assert model.facts.block_count == 30 and model.facts.architecture == "llama"


def test_builtin_aliases_find_it(store: Store):
    assert store.get("smollm2").name == store.get("SmolLM2:latest").name == BUILTIN_NAME


def test_add_keeps_the_file_by_its_hash(store: Store, tiny_dense_path: Path):
    model = store.add([tiny_dense_path], "tiny:dense", "test")
    assert model.path == store.blobs / f"sha256-{sha256(tiny_dense_path)}"
    assert model.path.read_bytes() == tiny_dense_path.read_bytes()
    assert model.facts.architecture == "llama" and model.size == tiny_dense_path.stat().st_size
    assert tiny_dense_path.exists(), "an import copies; the user's file stays"
    assert store.get("tiny:dense") == model


def test_name_without_tag_means_latest(store: Store, tiny_dense_path: Path):
    assert store.add([tiny_dense_path], "Tiny", "test").name == "tiny:latest"
    assert store.get("tiny").name == "tiny:latest"


def test_two_names_share_one_blob_until_both_are_removed(store: Store, tiny_moe_path: Path):
    first = store.add([tiny_moe_path], "moe:a", "test")
    second = store.copy("moe:a", "moe:b")
    assert second.path == first.path and second.facts == first.facts
    store.remove("moe:a")
    assert first.path.exists() and store.get("moe:b")
    store.remove("moe:b")
    assert not first.path.exists()
    assert [m.name for m in store.list()] == [BUILTIN_NAME]


def test_duplicate_name_is_refused_and_nothing_changes(store: Store, tiny_dense_path: Path, tiny_moe_path: Path):
    store.add([tiny_dense_path], "tiny:x", "test")
    before = snapshot(store)
    with pytest.raises(ModelExistsError, match="tiny:x"):
        store.add([tiny_moe_path], "tiny:x", "test")
    with pytest.raises(ModelExistsError):
        store.copy(BUILTIN_NAME, "tiny:x")
    assert snapshot(store) == before
    assert store.get("tiny:x").facts.architecture == "llama"


@pytest.mark.parametrize("name", ["../evil", "../../etc/passwd", "a/b", "a\\b", "a\x00b", "x" * 300, "a..b",
                                  "", " ", "tab\tname", "emoji🙂", ":tag", "a:b:c"])
def test_bad_names_are_refused_and_nothing_changes(store: Store, tiny_dense_path: Path, name: str):
    before = snapshot(store)
    with pytest.raises(InvalidModelNameError):
        store.add([tiny_dense_path], name, "test")
    with pytest.raises(InvalidModelNameError):
        store.get(name)
    with pytest.raises(InvalidModelNameError):
        store.copy(BUILTIN_NAME, name)
    assert snapshot(store) == before


def test_builtin_model_cannot_be_removed(store: Store):
    with pytest.raises(InvalidRequestError, match="built-in"):
        store.remove("smollm2")
    assert store.get(BUILTIN_NAME).path.exists()


def test_unknown_name_suggests_close_ones(store: Store, tiny_dense_path: Path):
    store.add([tiny_dense_path], "tiny:dense", "test")
    with pytest.raises(ModelNotFoundError) as info:
        store.get("tiny:dens")
    assert "tiny:dense" in info.value.hint
    with pytest.raises(ModelNotFoundError):
        store.remove("nothing:here")


def test_non_gguf_and_truncated_files_are_refused_and_leave_nothing(store: Store, tmp_path: Path,
                                                                     builtin_path: Path):
    text = tmp_path / "readme.gguf"
    text.write_text("hello " * 100)
    truncated = tmp_path / "cut.gguf"
    with builtin_path.open("rb") as src:
        truncated.write_bytes(src.read(30_000_000))
    before = snapshot(store)
    for path in (text, truncated):
        with pytest.raises(InvalidModelFileError):
            store.add([path], "bad:file", "test")
    assert snapshot(store) == before


def test_hash_mismatch_is_refused_and_the_download_dropped(store: Store, tmp_path: Path, tiny_dense_path: Path):
    download = tmp_path / "download.gguf"
    shutil.copy(tiny_dense_path, download)
    before = snapshot(store)
    with pytest.raises(DownloadError, match="sha256"):
        store.add([download], "dl:bad", "test", move=True, expected_sha256=["0" * 64])
    assert snapshot(store) == before and not download.exists()


def test_move_with_the_right_hash_registers(store: Store, tmp_path: Path, tiny_dense_path: Path):
    download = tmp_path / "download.gguf"
    shutil.copy(tiny_dense_path, download)
    model = store.add([download], "dl:good", "test", move=True, expected_sha256=[sha256(tiny_dense_path).upper()])
    assert model.path.exists() and not download.exists()


def test_replace_swaps_the_file_and_drops_the_old_one(store: Store, tiny_dense_path: Path, tiny_moe_path: Path):
    old = store.add([tiny_dense_path], "m:x", "test")
    new = store.add([tiny_moe_path], "m:x", "test", replace=True)
    assert new.facts.architecture == "qwen3moe" and not old.path.exists()
    assert new.created == old.created and new.modified >= old.modified


def test_progress_counts_every_byte(store: Store, tiny_dense_path: Path):
    seen: list[int] = []
    store.add([tiny_dense_path], "p:x", "test", progress=seen.append)
    assert sum(seen) == tiny_dense_path.stat().st_size


def test_split_model_is_stored_as_shards_llama_cpp_can_find(store: Store, tmp_path: Path):
    shards = write_tiny_dense_split(tmp_path / "split.gguf")
    assert len(shards) == 3
    model = store.add(shards, "split:x", "test")
    assert model.facts.split_count == 3 and len(model.digests) == 3
    assert model.path.name == "model-00001-of-00003.gguf"
    assert model.path.resolve() == store.blobs / f"sha256-{sha256(shards[0])}"
    assert model.size == sum(p.stat().st_size for p in shards)
    from llama_cpp import Llama

    llm = Llama(str(model.path), n_ctx=64, verbose=False)
    assert llm.n_vocab() == 49152
    llm.close()
    store.remove("split:x")
    assert not any(store.blobs.iterdir()) and not any(store.links.iterdir())


def test_split_model_missing_a_shard_is_refused(store: Store, tmp_path: Path):
    shards = write_tiny_dense_split(tmp_path / "split.gguf")
    before = snapshot(store)
    with pytest.raises(InvalidModelFileError, match="split into 3 files but 2"):
        store.add(shards[:2], "split:x", "test")
    assert snapshot(store) == before


def test_a_dead_runs_partial_file_is_swept(tmp_path: Path):
    home = tmp_path / "home"
    Store(home)
    stale = home / "blobs" / ".partial-dead"
    fresh = home / "blobs" / ".partial-busy"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (1, 1))
    Store(home)
    assert not stale.exists() and fresh.exists(), "only old partials go; a new one may be another process at work"


@pytest.fixture
def probed_store(tmp_path: Path) -> Store:
    from homellm.engine.probe import probe_model_file

    return Store(tmp_path / "probed", probe=probe_model_file)


def test_a_file_that_crashes_llama_cpp_is_refused_and_nothing_changes(probed_store: Store, tmp_path: Path):
    crasher = write_tiny_dense(tmp_path / "dup-tokens.gguf", duplicate_token=True)
    before = snapshot(probed_store)
    with pytest.raises(InvalidModelFileError, match="llama.cpp crashed reading") as info:
        probed_store.add([crasher], "crash:me", "test")
    assert "GGML_ASSERT" in info.value.message
    assert snapshot(probed_store) == before


def test_a_file_whose_tensor_shapes_lie_is_refused_at_import(probed_store: Store, tiny_dense_path: Path,
                                                             tmp_path: Path):
    # The header says the feed-forward layers are twice as wide as the tensors are: homellm's reader has no
    # way to know, and llama.cpp finds out only when it loads the tensors, which the probe now does.
    from ggufs import copy_with_metadata

    from homellm.models.gguf import read_model_facts

    width = read_model_facts(tiny_dense_path).metadata["llama.feed_forward_length"]
    liar = copy_with_metadata(tiny_dense_path, tmp_path / "liar.gguf", {"llama.feed_forward_length": np.uint32(2 * width)})
    before = snapshot(probed_store)
    with pytest.raises(InvalidModelFileError, match="llama.cpp cannot load liar.gguf") as info:
        probed_store.add([liar], "liar:x", "test")
    assert "shape" in info.value.message
    assert snapshot(probed_store) == before


def test_probed_store_accepts_good_single_and_split_models(probed_store: Store, tmp_path: Path,
                                                           tiny_moe_path: Path):
    assert probed_store.add([tiny_moe_path], "moe:ok", "test").facts.is_moe
    shards = write_tiny_dense_split(tmp_path / "split.gguf")
    assert probed_store.add(shards, "split:ok", "test").facts.split_count == 3
    assert not list(probed_store.blobs.glob(".partial*")), "staging links are cleaned up"


def test_shards_out_of_order_are_refused(store: Store, tmp_path: Path):
    shards = write_tiny_dense_split(tmp_path / "split.gguf")
    with pytest.raises(InvalidModelFileError, match="shard 2 of 3 says it is number 2"):
        store.add([shards[0], shards[2], shards[1]], "split:x", "test")


def test_a_copy_of_the_builtin_model_is_an_ordinary_name(store: Store, builtin_path: Path):
    copy = store.copy(BUILTIN_NAME, "mine:v1")
    assert copy.path == builtin_path and not copy.builtin
    store.remove("mine:v1")
    assert builtin_path.exists() and store.get(BUILTIN_NAME)


def test_builtin_aliases_cannot_be_taken(store: Store, tiny_dense_path: Path):
    with pytest.raises(ModelExistsError):
        store.copy(BUILTIN_NAME, "smollm2:latest")
    with pytest.raises(ModelExistsError):
        store.add([tiny_dense_path], "smollm2", "test")
    assert [m.name for m in store.list()] == [BUILTIN_NAME]


def test_a_blob_left_by_a_crash_is_swept_by_the_next_write(store: Store, tiny_dense_path: Path):
    orphan = store.blobs / f"sha256-{'ab' * 32}"
    orphan.write_bytes(b"left between placing a blob and naming it")
    store.add([tiny_dense_path], "tiny:x", "test")
    assert not orphan.exists() and store.get("tiny:x").path.exists()


def test_facts_saved_by_another_version_are_read_again_from_the_file(store: Store, tiny_dense_path: Path):
    import json
    import sqlite3

    store.add([tiny_dense_path], "tiny:dense", "test")
    with sqlite3.connect(store.home / "store.db") as conn:
        (facts,) = conn.execute("SELECT facts FROM models WHERE name = 'tiny:dense'").fetchone()
        older = {**json.loads(facts), "name": "a field this version does not know"}
        del older["quant_mix"]
        conn.execute("UPDATE models SET facts = ? WHERE name = 'tiny:dense'", (json.dumps(older),))
    model = Store(store.home).get("tiny:dense")
    assert model.facts.architecture == "llama" and model.facts.quant_mix
