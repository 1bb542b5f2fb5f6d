"""Token ids and their text: config.json's character vocabulary or a tokenizer.json.

tokenizer.json goes through the ``tokenizers`` package, so byte-level BPE (``Ġ``,
remapped non-ASCII bytes), SentencePiece's ``▁`` and normalizers are handled exactly
as the model saw them in training.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from bilin_cli.core.errors import BilinError, option
from bilin_cli.core.printable import printable
from bilin_cli.model.bilinear import BilinearModel
from bilin_cli.storage.files import regular_file

# The largest tokenizer.json files shipped (256k-token vocabularies with merges) are
# some tens of MB; anything past this is not a tokenizer.
MAX_TOKENIZER_BYTES = 512 * 1024 * 1024


@contextmanager
def _native_stderr_held() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null for the block.

    A Rust panic inside ``tokenizers`` prints its message and a backtrace straight to the
    process's stderr before Python sees the exception; bilin reports the exception itself
    as one line, so the native text is held back.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no descriptor 2: nothing to hold back
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tokenizer(path: str) -> Any:
    """The parsed tokenizer (cached while the file is unchanged: parsing a 128k vocab is slow)."""
    p = regular_file(path, "tokenizer.json")
    try:
        st = p.stat()
    except OSError as exc:
        raise BilinError(f"{printable(path)}: cannot read ({exc.strerror})") from None
    if st.st_size > MAX_TOKENIZER_BYTES:
        raise BilinError(f"{printable(path)}: {st.st_size} bytes is too large for a "
                         f"tokenizer.json (at most {MAX_TOKENIZER_BYTES})")
    return _parse_tokenizer(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4)
def _parse_tokenizer(path: str, mtime_ns: int, size: int) -> Any:
    from tokenizers import Tokenizer

    try:
        with _native_stderr_held():
            return Tokenizer.from_file(path)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a bare Exception, or a Rust panic
        # (pyo3's PanicException derives from BaseException, not Exception)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BilinError(f"{printable(path)}: not a tokenizer.json the tokenizers package can "
                         f"read ({printable(first, 160)})") from None


def _vocab(model: BilinearModel) -> list | None:
    vocab = model.meta.get("vocab")
    return vocab if isinstance(vocab, list) else None


def _call(what: str, path: str, fn, *args):
    """A call into the tokenizer; its failures (a Rust panic included) are one error line."""
    try:
        with _native_stderr_held():
            return fn(*args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - see _parse_tokenizer
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BilinError(f"{printable(path)}: the tokenizer failed to {what} "
                         f"({printable(first, 160)})") from None


@lru_cache(maxsize=1)
def _byte_level_map() -> dict[int, str]:
    """GPT-2's byte -> printable character map (byte-level BPE stores ``" the"`` as ``Ġthe``)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def _is_byte_level(tok: Any) -> bool:
    """Whether ``tok`` stores text byte-level (GPT-2 style): its pre-tokenizer or decoder is
    (or holds) ``ByteLevel``."""
    for part in (tok.pre_tokenizer, tok.decoder):
        if part is None:
            continue
        try:
            state = part.__getstate__()  # the component's own JSON (small)
        except Exception:  # noqa: BLE001 - a component without a serialized form
            continue
        if b'"ByteLevel"' in (state if isinstance(state, bytes) else str(state).encode()):
            return True
    return False


def stored_spellings(text: str, byte_level: bool = True) -> list[str]:
    """How a vocabulary may store ``text`` as one token, most likely first, no duplicates.

    ``byte_level``: byte-level BPE's spelling (``" the"`` -> ``Ġthe``, ``"é"`` -> ``Ã©``)
    comes before the text as written (there ``"é"`` alone is the lone byte 0xE9). Then
    the text as written, then SentencePiece's spelling (``" the"`` -> ``▁the``).
    """
    out: list[str] = []
    if byte_level:
        out.append("".join(_byte_level_map()[b] for b in text.encode("utf-8", "surrogatepass")))
    for cand in (text, text.replace(" ", "\u2581")):
        if cand not in out:
            out.append(cand)
    return out


def _unknown_ids(tok: Any, path: str) -> dict[int, str]:
    """The tokenizer's unknown token(s): its model's ``unk_token`` / ``unk_id``, and
    ``<unk>`` / ``[UNK]`` where the vocabulary has them. ``{id: spelling}``."""
    found: dict[int, str] = {}
    unk = getattr(tok.model, "unk_token", None)
    names = [unk] if isinstance(unk, str) else []
    if type(tok.model).__name__ == "Unigram":  # unk_id is only in the serialized form
        import json

        try:
            uid = json.loads(tok.to_str()).get("model", {}).get("unk_id")
        except (ValueError, AttributeError):
            uid = None
        if isinstance(uid, int) and not isinstance(uid, bool):
            text = _call("look up a token", path, tok.id_to_token, uid)
            found[uid] = text if isinstance(text, str) else f"#{uid}"
    for name in (*names, "<unk>", "[UNK]"):
        tid = _call("look up a token", path, tok.token_to_id, name)
        if tid is not None:
            found.setdefault(int(tid), name)
    return found


def token_id(model: BilinearModel, text: str) -> int:
    """The id of ``text`` as ONE token: config.json's character vocabulary or tokenizer.json.

    With a tokenizer.json, ``text`` is first looked up as a token's stored spelling (a
    byte-level tokenizer's ``Ġ``/``Ċ``/``Ã©`` spelling first, then as written, then
    SentencePiece's ``▁``, so ``" the"`` finds ``Ġthe``), then encoded as the tokenizer
    would encode it in running text. An encoding that holds the unknown token
    (``<unk>``, ``[UNK]``, the model's ``unk_token``) is an error: ``text`` is not in the
    vocabulary. The unknown token's own spelling is found by the first step, so it can
    still be asked for.
    """
    vocab = _vocab(model)
    if vocab is not None:
        if text in vocab:
            return vocab.index(text)
        raise BilinError(f"{printable(repr(text), 80)} is not a token of this model's "
                         "character vocabulary")
    path = model.meta.get("tokenizer")
    if path is None:
        raise BilinError("this checkpoint has no tokenizer (tokenizer.json or a 'vocab' list in "
                         f"config.json): use {option('--token ID', 'token=ID')}")
    tok = _tokenizer(path)
    for spelling in stored_spellings(text, _is_byte_level(tok)):
        stored = _call("look up a token", path, tok.token_to_id, spelling)
        if stored is not None:
            return int(stored)
    encoding = _call("encode", path, lambda: tok.encode(text, add_special_tokens=False))
    unknown = _unknown_ids(tok, path)
    hits = [int(i) for i in encoding.ids if int(i) in unknown]
    if hits:
        part = "" if len(encoding.ids) == 1 else f" (in {len(encoding.ids)} tokens)"
        raise BilinError(f"{printable(repr(text), 80)} is not in the vocabulary of "
                         f"{printable(path)}: the tokenizer encodes it to the unknown token "
                         f"{printable(repr(unknown[hits[0]]), 40)} (id {hits[0]}){part}; "
                         f"give a token's stored spelling, or {option('--token ID', 'token=ID')}")
    if len(encoding.ids) == 1:
        return int(encoding.ids[0])
    pieces = " ".join(repr(t) for t in encoding.tokens[:20]) or "no tokens"
    raise BilinError(f"{printable(repr(text), 80)} is {len(encoding.ids)} tokens of "
                     f"{printable(path)} ({printable(pieces, 200)}), not one; use "
                     f"{option('--token ID', 'token=ID')}")


def token_texts(model: BilinearModel, ids: list[int]) -> dict[int, str | None]:
    """Text of each id as it reads in running text (``" the"``), None where unknown."""
    vocab = _vocab(model)
    if vocab is not None:
        return {i: vocab[i] if 0 <= i < len(vocab) and isinstance(vocab[i], str) else None
                for i in ids}
    path = model.meta.get("tokenizer")
    if path is None:
        return {i: None for i in ids}
    tok = _tokenizer(path)
    texts: dict[int, str | None] = {}
    for i in ids:
        text = _call("decode", path, tok.decode, [i], False)
        # A lone continuation byte decodes to U+FFFD; its stored spelling says more.
        if not text or "\ufffd" in text:
            text = _call("decode", path, tok.id_to_token, i)
        texts[i] = text if isinstance(text, str) else None
    return texts
