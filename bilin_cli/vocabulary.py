"""Token ids and their text: config.json's character vocabulary or a tokenizer.json.

Only the vocabulary table of tokenizer.json is read (plain JSON, no tokenizer
package): ``--token-str`` needs one token's id, and readings need each id's text.
"""

from __future__ import annotations

import json
from pathlib import Path

from bilin_cli.errors import BilinError
from bilin_cli.model import BilinearModel

# Byte-level BPE spells a leading space "Ġ" and a newline "Ċ"; SentencePiece spells a space "▁".
_SPELLINGS = (("Ġ", " "), ("▁", " "), ("Ċ", "\n"))


def _tokenizer_table(path: str) -> dict[str, int]:
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BilinError(f"{path}: cannot read the vocabulary ({exc})") from None
    if isinstance(table, list):  # unigram tokenizers store [token, score] pairs
        return {str(entry[0]): i for i, entry in enumerate(table)}
    if not isinstance(table, dict):
        raise BilinError(f"{path}: model.vocab is neither a table nor a list")
    return {str(k): int(v) for k, v in table.items()}


def token_id(model: BilinearModel, text: str) -> int:
    """The id of ``text`` as ONE token: config.json's character vocabulary or tokenizer.json."""
    vocab = model.meta.get("vocab")
    if vocab is not None:
        if text in vocab:
            return vocab.index(text)
        raise BilinError(f"{text!r} is not a token of this model's character vocabulary")
    tok_path = model.meta.get("tokenizer")
    if tok_path is None:
        raise BilinError("this checkpoint has no tokenizer (tokenizer.json or a 'vocab' list in "
                         "config.json): use --token ID")
    table = _tokenizer_table(tok_path)
    candidates = [text] + [text.replace(plain, spelled) for spelled, plain in _SPELLINGS]
    for candidate in candidates:
        if candidate in table:
            return table[candidate]
    raise BilinError(f"{text!r} is not a single token of {tok_path}; use --token ID")


def token_texts(model: BilinearModel, n: int) -> list[str | None]:
    """Text of ids ``0..n-1`` (spaces and newlines as typed), None where unknown."""
    vocab = model.meta.get("vocab")
    if vocab is not None:
        return [vocab[i] if i < len(vocab) else None for i in range(n)]
    texts: list[str | None] = [None] * n
    tok_path = model.meta.get("tokenizer")
    if tok_path is not None:
        for text, i in _tokenizer_table(tok_path).items():
            if 0 <= i < n:
                for spelled, plain in _SPELLINGS:
                    text = text.replace(spelled, plain)
                texts[i] = text
    return texts
