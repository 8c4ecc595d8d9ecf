r"""Turn texts into the fixed-length ``input_ids`` / ``attention_mask`` arrays the bundle's model takes.

Texts with lone UTF-16 surrogates (``"\ud800"``: not valid Unicode, but a Python ``str`` can hold them, e.g.
after ``surrogateescape`` decoding or a JSON ``"\ud800"`` escape) are not rejected: a valid surrogate pair is
joined into its character and each lone surrogate becomes U+FFFD, so such text still gets an answer instead
of a crash. (BERT's normalizer then drops U+FFFD like any invalid character.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeopt_runtime.errors import BundleInvalid, InputError
from edgeopt_runtime.manifest import Manifest, safe_bundle_path

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["Encoded", "TextTokenizer", "clean_text"]

_PAD_TOKEN = "[PAD]"
# A text longer than this many characters per sequence position is first tokenized by its head only (see
# TextTokenizer._encode). In the default data set's 5,870 emails, 99.9% of the texts longer than 128 tokens fill
# 128 tokens within 5.9 characters per token; a head that falls short is grown _HEAD_GROWTH times and tried again.
_HEAD_CHARS_PER_TOKEN = 6
_HEAD_MIN_CHARS = 256
_HEAD_GROWTH = 4


def _head(text: str, limit: int) -> str:
    """Return ``text`` cut at the last space or newline before ``limit`` characters (itself if short)."""
    if len(text) <= limit:
        return text
    # Cut between words: BERT normalization and pre-tokenization act per character and split at whitespace,
    # so the tokens of the head are exactly the first tokens of the whole text.
    cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
    return text[:cut] if cut > 0 else text


@dataclass(frozen=True)
class Encoded:
    """A tokenized batch.

    Attributes:
        input_ids: int64 array ``[n, max_seq_len]``.
        attention_mask: int64 array ``[n, max_seq_len]``; 1 for real tokens, 0 for padding.
        truncated: Per text, True when tokens beyond ``max_seq_len`` were dropped.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    truncated: tuple[bool, ...]


def clean_text(text: Any, *, index: int | None = None) -> str:
    """Validate one input text and repair invalid Unicode.

    Args:
        text: The value to check.
        index: Position in a batch, named in the error message.

    Returns:
        The text, with each lone surrogate replaced by U+FFFD.

    Raises:
        InputError: ``text`` is not a ``str``, or is empty or whitespace only.
    """
    where = "" if index is None else f"texts[{index}]: "
    if not isinstance(text, str):
        raise InputError(f"{where}expected str, got {type(text).__name__}")
    if not text.strip():
        raise InputError(f"{where}text is empty or whitespace only; pass at least one word")
    if text.isascii():  # O(1) in CPython: a flag of the str object
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Round-tripping through UTF-16 joins well-formed surrogate pairs and turns lone ones into U+FFFD.
        repaired: str = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return repaired
    return text


def clean_texts(texts: Any, single: str) -> list[str]:
    """Validate a batch of input texts with :func:`clean_text`.

    Args:
        texts: A list (or other iterable) of str.
        single: The method to name when one str was passed instead of a list (``encode()``, ``predict()``).

    Raises:
        InputError: ``texts`` is a plain str, not iterable, or empty, or one text is invalid (named by its index).
    """
    if isinstance(texts, str | bytes):
        kind = type(texts).__name__
        raise InputError(f"expected a list of str, got a single {kind}; use {single} or wrap it in a list")
    try:
        items = list(texts)
    except TypeError:
        raise InputError(f"expected a list of str, got {type(texts).__name__}") from None
    if not items:
        raise InputError("texts is empty; pass at least one text")
    return [clean_text(t, index=i) for i, t in enumerate(items)]


class TextTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer fixed to the bundle's sequence length.

    Args:
        tokenizer: A loaded ``tokenizers.Tokenizer``; its own padding/truncation settings are replaced.
        max_seq_len: Length every encoding is truncated or padded to.
        source: Where the tokenizer came from, for error messages.
    """

    def __init__(self, tokenizer: Tokenizer, max_seq_len: int, source: str = "tokenizer") -> None:
        pad_id = tokenizer.token_to_id(_PAD_TOKEN)
        if pad_id is None:
            raise BundleInvalid(
                f"{source} has no {_PAD_TOKEN} token; rebuild the bundle with a BERT WordPiece tokenizer"
            )
        # Tokens an input with no readable character still gets ([CLS] [SEP]); counted before padding is set.
        self._special_tokens = int(sum(tokenizer.encode("").attention_mask))
        tokenizer.enable_truncation(max_length=max_seq_len)
        tokenizer.enable_padding(length=max_seq_len, pad_id=pad_id, pad_token=_PAD_TOKEN)
        self._tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.pad_id = pad_id
        self._head_limit = max(_HEAD_MIN_CHARS, _HEAD_CHARS_PER_TOKEN * max_seq_len)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], max_seq_len: int) -> TextTokenizer:
        """Load a ``tokenizer.json`` file.

        Raises:
            BundleInvalid: The file cannot be parsed by ``tokenizers``.
        """
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BundleInvalid(f"{path} is not a valid tokenizers file ({first}); rebuild the bundle") from exc
        return cls(tok, max_seq_len, source=str(path))

    @classmethod
    def from_bundle(cls, manifest: Manifest, bundle_dir: str | os.PathLike[str]) -> TextTokenizer:
        """Load the tokenizer named by the manifest, with the manifest's ``max_seq_len``."""
        return cls.from_file(safe_bundle_path(Path(bundle_dir), manifest.tokenizer_file), manifest.max_seq_len)

    def encode(self, text: str) -> Encoded:
        """Tokenize one text into arrays of shape ``[1, max_seq_len]``.

        Raises:
            InputError: See :func:`clean_text`.
        """
        return self._encode([clean_text(text)])

    def encode_batch(self, texts: Sequence[str]) -> Encoded:
        """Tokenize texts into arrays of shape ``[len(texts), max_seq_len]``.

        Raises:
            InputError: ``texts`` is a plain string or empty, or one text is invalid (named by its index).
        """
        return self._encode(clean_texts(texts, "encode()"))

    def encode_cleaned(self, texts: list[str]) -> Encoded:
        """Tokenize texts that :func:`clean_text` already returned (not checked again), as ``encode_batch``."""
        return self._encode(texts)

    def encode_positions(self, texts: list[str], positions: Sequence[int]) -> Encoded:
        """:meth:`encode_cleaned` for some texts of a caller's batch (the cache misses, say).

        A text the model cannot read is named by its position in the caller's batch (``positions[i]`` for
        ``texts[i]``), not by its place among ``texts``.
        """
        try:
            return self._encode(texts)
        except InputError:
            for text, position in zip(texts, positions, strict=True):
                try:
                    self._encode([text])
                except InputError as exc:
                    raise InputError(f"texts[{position}]: {exc}") from None
            raise

    def _encode(self, texts: list[str]) -> Encoded:
        # Only max_seq_len tokens are kept, but the tokenizers library tokenizes the whole text and builds
        # its overflowing windows: a 1 kB email costs ~360 us, a 1 MB text ~0.8 s. Tokenize the head of a
        # long text instead; when the head alone overflows max_seq_len the result is that of the whole text
        # (see _head); otherwise (a head of long words, whitespace or dropped characters) grow it and retry.
        limit = self._head_limit
        heads = [_head(t, limit) for t in texts]
        encodings = self._tokenizer.encode_batch(heads)
        redo = [i for i, (t, h) in enumerate(zip(texts, heads, strict=True)) if h is not t]
        while redo := [i for i in redo if not encodings[i].overflowing]:
            limit *= _HEAD_GROWTH
            heads = [_head(texts[i], limit) for i in redo]
            for i, encoding in zip(redo, self._tokenizer.encode_batch(heads), strict=True):
                encodings[i] = encoding
            redo = [i for i, h in zip(redo, heads, strict=True) if h is not texts[i]]
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        # A text of only control, format or zero-width characters passes clean_text, but the normalizer deletes
        # them all and the model would see what it sees for an empty text, which is refused.
        unread = np.flatnonzero(mask.sum(axis=1) <= self._special_tokens)
        if unread.size:
            where = f"texts[{int(unread[0])}]: " if len(texts) > 1 else ""
            raise InputError(
                f"{where}text has no character the model reads (only control, format or zero-width characters); "
                "pass at least one word"
            )
        # With truncation on, tokenizers keeps the dropped tokens in `overflowing`.
        truncated = tuple(bool(e.overflowing) for e in encodings)
        return Encoded(input_ids=ids, attention_mask=mask, truncated=truncated)
