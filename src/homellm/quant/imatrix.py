"""Importance matrices in llama-imatrix's GGUF format: per tensor, the mean squared activation of each column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from homellm.errors import InvalidRequestError

_SUMS, _COUNTS = ".in_sum2", ".counts"


def read_imatrix(path: Path) -> dict[str, np.ndarray]:
    """Tensor name -> importance per column (sums over counts, per expert), as llama-quantize reads them."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except FileNotFoundError:
        raise InvalidRequestError(f"{path} does not exist", hint="give the file llama-imatrix wrote",
                                  param="imatrix") from None
    except Exception as exc:  # the reader raises bare errors on files that are not GGUF
        raise InvalidRequestError(f"{path} is not a GGUF importance matrix: {exc}",
                                  hint="give a .gguf file from llama-imatrix (the legacy .dat format is not read)",
                                  param="imatrix") from None
    tensors = {t.name: np.asarray(t.data, dtype=np.float32).reshape(-1) for t in reader.tensors}
    matrix: dict[str, np.ndarray] = {}
    for name, sums in tensors.items():
        if not name.endswith(_SUMS):
            continue
        base = name.removesuffix(_SUMS)
        counts = tensors.get(base + _COUNTS)
        if counts is None or counts.size == 0 or sums.size % counts.size:
            raise InvalidRequestError(f"{path.name} has sums for {base} but no matching counts",
                                      hint="regenerate it with llama-imatrix", param="imatrix")
        per_expert = sums.reshape(counts.size, -1)
        safe = np.where(counts > 0, counts, 1.0)[:, None]
        matrix[base] = np.where(counts[:, None] > 0, per_expert / safe, 1.0).astype(np.float32).reshape(-1)
    if not matrix:
        raise InvalidRequestError(f"{path.name} holds no importance data", hint="regenerate it with llama-imatrix",
                                  param="imatrix")
    return matrix
