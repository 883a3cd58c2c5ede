"""Pulls from a loopback server that speaks the Hugging Face Hub's HTTP: quants, shards, resume, hashes, errors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from ggufs import write_tiny_dense_split
from hubserver import FakeHub

from homellm.errors import (
    DownloadError,
    InvalidRequestError,
    ModelExistsError,
    ModelNotFoundError,
)
from homellm.models.hub import (
    ATTEMPTS,
    HubClient,
    HubFile,
    HubRef,
    choose_files,
    parse_ref,
    pull,
)
from homellm.models.store import Store

REPO = "tester/Tiny-GGUF"
SPLIT_REPO = "tester/Split-GGUF"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def split_shards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_tiny_dense_split(tmp_path_factory.mktemp("split") / "Split-Q8_0.gguf")


@pytest.fixture
def hub(tiny_dense_path: Path, tiny_moe_path: Path, split_shards: list[Path],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no developer token leaks in
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub() as server:
        server.add_repo(REPO, {"Tiny-Q8_0.gguf": tiny_dense_path, "Tiny-Q4_K_M.gguf": tiny_moe_path,
                               "mmproj-Tiny-Q8_0.gguf": b"not a model", "README.md": b"# tiny\n"})
        server.add_repo(SPLIT_REPO, {p.name: p for p in split_shards})
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "home")


@pytest.fixture
def client(hub: FakeHub) -> HubClient:
    return HubClient(hub.endpoint)


def state(store: Store) -> tuple[list[str], list[str]]:
    return [m.name for m in store.list()], sorted(p.name for p in store.blobs.iterdir())


def file_gets(hub: FakeHub, filename: str) -> list:
    return [r for r in hub.requests if r.method == "GET" and r.path.endswith("/" + filename)]


@pytest.mark.parametrize("text, expected", [
    ("hf.co/bartowski/SmolLM2-GGUF:Q4_K_M", HubRef("bartowski/SmolLM2-GGUF", quant="Q4_K_M")),
    ("huggingface.co/a/b", HubRef("a/b")),
    ("https://huggingface.co/a/b:q8_0", HubRef("a/b", quant="q8_0")),
    ("a/b/sub/model-Q8_0.gguf", HubRef("a/b", filename="sub/model-Q8_0.gguf")),
])
def test_references_parse(text: str, expected: HubRef):
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["", "justaname", "a/../b:Q4", "a/b:Q4/x", "a/b/../../etc/x.gguf",
                                  "hf.co/a b/c", "a/b:Q4_K_M;rm"])
def test_bad_references_are_refused(text: str):
    with pytest.raises(InvalidRequestError):
        parse_ref(text)


def test_choosing_a_quant_takes_every_shard_in_order():
    files = [HubFile(f"M-Q4_K_M-{i:05d}-of-00003.gguf", 10, None) for i in (3, 1, 2)]
    files += [HubFile("M-Q8_0.gguf", 10, None), HubFile("M-UD-Q4_K_M.gguf", 10, None)]
    chosen = choose_files(HubRef("a/b", quant="q4_k_m"), files)
    assert [f.filename for f in chosen] == [f"M-Q4_K_M-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]


def test_missing_quant_lists_the_ones_there():
    with pytest.raises(ModelNotFoundError) as info:
        choose_files(HubRef("a/b", quant="Q2_K"), [HubFile("M-Q8_0.gguf", 1, None), HubFile("M-F16.gguf", 1, None)])
    assert "Q8_0" in info.value.hint and "F16" in info.value.hint


def test_pull_by_quant_stores_the_file_under_a_name(store: Store, client: HubClient, hub: FakeHub,
                                                    tiny_dense_path: Path):
    model, downloaded = pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert downloaded and model.name == "tiny:q8_0"
    assert model.digests == (sha256(tiny_dense_path),)
    assert model.path.read_bytes() == tiny_dense_path.read_bytes()
    assert model.source.startswith(f"hf.co/{REPO}/Tiny-Q8_0.gguf@")
    assert model.facts.architecture == "llama"
    assert not list((store.home / "downloads").iterdir()), "the download was moved into blobs/"


def test_pull_without_quant_takes_q4_k_m(store: Store, client: HubClient):
    model, _ = pull(store, f"hf.co/{REPO}", client=client)
    assert model.name == "tiny:q4_k_m" and model.facts.architecture == "qwen3moe"


def test_pull_by_file_with_a_name(store: Store, client: HubClient):
    model, _ = pull(store, f"{REPO}/Tiny-Q8_0.gguf", name="mine:dense", client=client)
    assert model.name == "mine:dense"


def test_pulling_again_downloads_nothing(store: Store, client: HubClient, hub: FakeHub):
    pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    hub.requests.clear()
    model, downloaded = pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert not downloaded and model.name == "tiny:q8_0"
    assert file_gets(hub, "Tiny-Q8_0.gguf") == []


def test_split_model_is_pulled_with_all_its_shards(store: Store, client: HubClient, split_shards: list[Path]):
    model, _ = pull(store, f"hf.co/{SPLIT_REPO}:Q8_0", client=client)
    assert model.name == "split:q8_0" and model.facts.split_count == 3
    assert model.digests == tuple(sha256(p) for p in split_shards)
    assert model.path.resolve().exists()


def test_a_cut_connection_resumes_within_the_pull(store: Store, client: HubClient, hub: FakeHub,
                                                  tiny_dense_path: Path):
    hub.cut_after("Tiny-Q8_0.gguf", 1_000_000, times=1)
    model, _ = pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    gets = file_gets(hub, "Tiny-Q8_0.gguf")
    assert [g.headers.get("range") for g in gets] == [None, "bytes=1000000-"]
    assert gets[1].status == 206 and model.digests == (sha256(tiny_dense_path),)


def test_an_interrupted_pull_resumes_on_the_next_one(store: Store, client: HubClient, hub: FakeHub,
                                                     tiny_dense_path: Path):
    hub.cut_after("Tiny-Q8_0.gguf", 1_000_000, times=ATTEMPTS)  # each retry gains a million bytes, then fails
    received = 1_000_000 * ATTEMPTS
    before = state(store)
    with pytest.raises(DownloadError, match=f"stopped at {received:,} of") as info:
        pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert "again to resume" in info.value.hint
    assert state(store) == before, "nothing is listed or kept in blobs/ from a broken pull"
    hub.requests.clear()
    model, _ = pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert [g.headers.get("range") for g in file_gets(hub, "Tiny-Q8_0.gguf")] == [f"bytes={received}-"]
    assert model.digests == (sha256(tiny_dense_path),)


def test_a_hash_mismatch_is_refused_and_nothing_registered(store: Store, client: HubClient, hub: FakeHub):
    hub.corrupt("Tiny-Q8_0.gguf")
    before = state(store)
    with pytest.raises(DownloadError, match="sha256"):
        pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert state(store) == before
    assert not list((store.home / "downloads").iterdir()), "corrupt bytes are not kept to resume from"
    hub.clear_faults()
    assert pull(store, f"hf.co/{REPO}:Q8_0", client=client)[0].name == "tiny:q8_0"


def test_an_unknown_repository_is_a_clear_error(store: Store, client: HubClient):
    before = state(store)
    with pytest.raises(ModelNotFoundError, match="no repository nobody/nothing"):
        pull(store, "hf.co/nobody/nothing:Q4_K_M", client=client)
    assert state(store) == before


def test_an_unknown_quant_is_a_clear_error(store: Store, client: HubClient):
    with pytest.raises(ModelNotFoundError, match="no Q2_K GGUF") as info:
        pull(store, f"hf.co/{REPO}:Q2_K", client=client)
    assert "Q8_0" in info.value.hint


def test_an_unreachable_hub_is_a_clear_error(store: Store):
    with pytest.raises(DownloadError, match="cannot reach the Hub"):
        pull(store, f"hf.co/{REPO}:Q8_0", client=HubClient("http://127.0.0.1:9"))


def test_a_private_repository_needs_the_token(store: Store, hub: FakeHub, monkeypatch: pytest.MonkeyPatch):
    hub.require_token("hf_secret")
    with pytest.raises(ModelNotFoundError) as info:
        pull(store, f"hf.co/{REPO}:Q8_0", client=HubClient(hub.endpoint))
    assert "HF_TOKEN" in info.value.hint
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    model, _ = pull(store, f"hf.co/{REPO}:Q8_0", client=HubClient(hub.endpoint))
    assert model.name == "tiny:q8_0"
    assert file_gets(hub, "Tiny-Q8_0.gguf")[-1].headers["authorization"] == "Bearer hf_secret"


def test_a_name_holding_another_model_is_not_replaced(store: Store, client: HubClient, tiny_moe_path: Path):
    store.add([tiny_moe_path], "tiny:q8_0", "import:elsewhere")
    with pytest.raises(ModelExistsError, match="import:elsewhere") as info:
        pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert "another --name" in info.value.hint
    assert store.get("tiny:q8_0").source == "import:elsewhere"


def test_an_updated_repository_replaces_the_pulled_model(store: Store, client: HubClient, hub: FakeHub,
                                                         tiny_dense_path: Path, tiny_moe_path: Path):
    old, _ = pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    hub.add_repo(REPO, {"Tiny-Q8_0.gguf": tiny_moe_path})
    new, downloaded = pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert downloaded and new.name == old.name and new.digests == (sha256(tiny_moe_path),)
    assert not old.path.exists()


def test_a_second_pull_of_the_same_file_at_once_is_refused(store: Store, client: HubClient, hub: FakeHub):
    import fcntl

    _, files = client.listing(REPO)
    (file,) = [f for f in files if f.filename == "Tiny-Q8_0.gguf"]
    downloads = store.home / "downloads"
    downloads.mkdir()
    with (downloads / f"{file.sha256}.partial.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running pull holds it
        with pytest.raises(DownloadError, match="another homellm pull"):
            pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert pull(store, f"hf.co/{REPO}:Q8_0", client=client)[0].name == "tiny:q8_0"


def test_a_download_with_a_broken_header_is_dropped_so_the_next_pull_starts_clean(
        store: Store, client: HubClient, hub: FakeHub, tiny_dense_path: Path):
    hub.corrupt("Tiny-Q8_0.gguf", offset=0)  # the magic itself is wrong
    with pytest.raises(DownloadError):
        pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert not list((store.home / "downloads").iterdir())
    hub.clear_faults()
    hub.requests.clear()
    model, _ = pull(store, f"hf.co/{REPO}:Q8_0", client=client)
    assert [g.headers.get("range") for g in file_gets(hub, "Tiny-Q8_0.gguf")] == [None]
    assert model.digests == (sha256(tiny_dense_path),)


def test_a_shard_count_of_zero_is_refused():
    with pytest.raises(InvalidRequestError, match="one of 0 shards"):
        choose_files(HubRef("a/b", filename="m-00001-of-00000.gguf"), [HubFile("m-00001-of-00000.gguf", 1, None)])
