"""Token ids and their text: config.json's character vocabulary or a tokenizer.json.

tokenizer.json goes through the ``tokenizers`` package, so byte-level BPE (``Ġ``,
remapped non-ASCII bytes), SentencePiece's ``▁`` and normalizers are handled exactly
as the model saw them in training.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from bilin_cli.errors import BilinError
from bilin_cli.model import BilinearModel


def _tokenizer(path: str) -> Any:
    """The parsed tokenizer (cached while the file is unchanged: parsing a 128k vocab is slow)."""
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise BilinError(f"{path}: cannot read ({exc.strerror})") from None
    return _parse_tokenizer(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _parse_tokenizer(path: str, mtime_ns: int, size: int) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(path)
    except Exception as exc:  # noqa: BLE001 - the Rust side raises a bare Exception
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BilinError(f"{path}: not a tokenizer.json the tokenizers package can read "
                         f"({first})") from None


def token_id(model: BilinearModel, text: str) -> int:
    """The id of ``text`` as ONE token: config.json's character vocabulary or tokenizer.json.

    ``text`` is encoded as the tokenizer would encode it in running text (``" the"``
    becomes ``Ġthe``); a token's stored spelling (``"Ġthe"``) is accepted too.
    """
    vocab = model.meta.get("vocab")
    if vocab is not None:
        if text in vocab:
            return vocab.index(text)
        raise BilinError(f"{text!r} is not a token of this model's character vocabulary")
    path = model.meta.get("tokenizer")
    if path is None:
        raise BilinError("this checkpoint has no tokenizer (tokenizer.json or a 'vocab' list in "
                         "config.json): use --token ID")
    tok = _tokenizer(path)
    encoding = tok.encode(text, add_special_tokens=False)
    if len(encoding.ids) == 1:
        return int(encoding.ids[0])
    stored = tok.token_to_id(text)
    if stored is not None:
        return int(stored)
    pieces = " ".join(repr(t) for t in encoding.tokens) or "no tokens"
    raise BilinError(f"{text!r} is {len(encoding.ids)} tokens of {path} ({pieces}), not one; "
                     "use --token ID")


def token_texts(model: BilinearModel, ids: list[int]) -> dict[int, str | None]:
    """Text of each id as it reads in running text (``" the"``), None where unknown."""
    vocab = model.meta.get("vocab")
    if vocab is not None:
        return {i: vocab[i] if 0 <= i < len(vocab) else None for i in ids}
    path = model.meta.get("tokenizer")
    if path is None:
        return {i: None for i in ids}
    tok = _tokenizer(path)
    texts: dict[int, str | None] = {}
    for i in ids:
        text = tok.decode([i], skip_special_tokens=False)
        # A lone continuation byte decodes to U+FFFD; its stored spelling says more.
        if not text or "\ufffd" in text:
            text = tok.id_to_token(i)
        texts[i] = text
    return texts
