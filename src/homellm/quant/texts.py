"""Texts to evaluate on: a file, or an English text that ships with every Python."""

from __future__ import annotations

from pathlib import Path

from homellm.errors import InvalidRequestError

MAX_TEXT_BYTES = 64 * 1024 * 1024


def builtin_text() -> str:
    """The standard library's documentation topics (`pydoc_data.topics`): real English, the same everywhere."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def read_text(path: Path) -> str:
    """A UTF-8 text file, refused with a clear error when it is missing, too large or not text."""
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise InvalidRequestError(f"{path} is {size / 1e6:.0f} MB; eval reads at most "
                                      f"{MAX_TEXT_BYTES // (1 << 20)} MiB", hint="give a shorter text", param="text")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequestError(f"{path} does not exist", hint="give a text file, or --builtin-text",
                                  param="text") from None
    except UnicodeDecodeError:
        raise InvalidRequestError(f"{path} is not UTF-8 text", hint="give a plain text file", param="text") from None
    except IsADirectoryError:
        raise InvalidRequestError(f"{path} is a folder", hint="give a text file", param="text") from None
