"""`eig --tokens`: each LM eigenvector read through the token embedding (direct path)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_image, write_llama, write_tokenizer, write_transformer
from safetensors.numpy import load_file


def expected_reading(X: np.ndarray, v: np.ndarray, n: int) -> tuple[list, list]:
    """Independent reference: token ids of the n largest positive and n most negative X v."""
    s = X @ v
    pos = [int(t) for t in np.argsort(-s)[:n] if s[t] > 0]
    neg = [int(t) for t in np.argsort(s)[:n] if s[t] < 0]
    return pos, neg, s


def rms_rows(E: np.ndarray) -> np.ndarray:
    return E / np.sqrt((E**2).mean(axis=1, keepdims=True))


def test_transformer_tokens_equal_reference(cli, tmp_path):
    write_transformer(tmp_path / "lm", d=8, h=16, vocab=11, n_layer=3)
    code, out, err = cli("eig", tmp_path / "lm", "--layer", "1", "--token", "3", "--top", "4",
                         "--tokens", "3", "--json", "--float64")
    assert code == 0, err
    doc = json.loads(out)
    wte = load_file(str(tmp_path / "lm" / "model.safetensors"))["transformer.wte.weight"]
    X = rms_rows(wte.astype(np.float64))
    assert len(doc["tokens"]) == 4
    for v, reading in zip(doc["eigenvectors"], doc["tokens"], strict=True):
        pos, neg, s = expected_reading(X, np.array(v), 3)
        assert [e["token"] for e in reading["positive"]] == pos
        assert [e["token"] for e in reading["negative"]] == neg
        for e in reading["positive"] + reading["negative"]:
            assert e["value"] == pytest.approx(s[e["token"]], rel=1e-9, abs=1e-12)
            assert e["text"] == chr(97 + e["token"])  # config.json's character vocabulary
    assert any("direct path from the embedding" in n for n in doc["notes"])


def test_llama_reading_uses_the_mlp_norm_gain_and_tokenizer_text(cli, tmp_path):
    path = tmp_path / "llama"
    tok = write_tokenizer(path)
    n = tok.get_vocab_size()
    write_llama(path, vocab=n, mlp_gain=True)
    code, out, err = cli("eig", path, "--layer", "1", "--token", "2", "--all", "--tokens", str(n),
                         "--json", "--float64")
    assert code == 0, err
    doc = json.loads(out)
    sd = load_file(str(path / "model.safetensors"))
    g = sd["model.layers.1.post_attention_layernorm.weight"].astype(np.float64)
    X = rms_rows(sd["model.embed_tokens.weight"].astype(np.float64)) * g
    texts = {}
    for v, reading in zip(doc["eigenvectors"][:4], doc["tokens"][:4], strict=True):
        pos, neg, s = expected_reading(X, np.array(v), n)
        assert [e["token"] for e in reading["positive"]] == pos
        assert [e["token"] for e in reading["negative"]] == neg
        assert sorted(pos + neg) == [t for t in range(n) if s[t] != 0]
        texts |= {e["token"]: e["text"] for e in reading["positive"] + reading["negative"]}
    the, newline = tok.token_to_id("Ġthe"), tok.token_to_id("Ċ")
    assert texts[the] == " the" and texts[newline] == "\n" and texts[0] == "<s>"
    assert texts[tok.token_to_id("Ã©")] == "é"
    # The table shows them visibly: a space as ␣, a newline escaped.
    code, out, err = cli("eig", path, "--layer", "1", "--token", "2", "--top", "2", "--tokens",
                         str(n))
    assert code == 0, err
    assert "tokens" in out and "␣the" in out and "\\n" in out


def test_tokens_default_off_and_errors(cli, tmp_path):
    write_transformer(tmp_path / "lm", d=8, h=16, vocab=11, n_layer=2)
    code, out, _ = cli("eig", tmp_path / "lm", "--token", "1", "--json")
    assert code == 0 and len(json.loads(out)["tokens"][0]["positive"]) <= 5
    code, out, _ = cli("eig", tmp_path / "lm", "--token", "1", "--tokens", "0", "--json")
    assert code == 0 and "tokens" not in json.loads(out)
    code, _, err = cli("eig", tmp_path / "lm", "--token", "1", "--tokens", "-2")
    assert code == 1 and "--tokens must be 0 or positive" in err
    code, _, err = cli("eig", tmp_path / "lm", "--layer", "1", "--token", "1", "--tokens", "3",
                       "--chain", "1")
    assert code == 1 and "do not combine" in err
    write_image(tmp_path / "img")
    code, out, _ = cli("eig", tmp_path / "img", "--class", "1", "--json")
    assert code == 0 and "tokens" not in json.loads(out)
    code, _, err = cli("eig", tmp_path / "img", "--class", "1", "--tokens", "3")
    assert code == 1 and err.startswith("error: --tokens reads eigenvectors through")


def test_readme_reading_matches_the_shakespeare_sample(cli):
    """The token reading the README shows is what `eig` computes on the shipped sample."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    shown = [line.split("│")[-1].strip() for line in readme.splitlines()
             if line.strip().startswith(("1 │", "2 │", "3 │")) and " | " in line]
    assert len(shown) == 3
    code, out, err = cli("eig", root / "sample_checkpoints" / "shakespeare", "--layer", "1",
                         "--token-str", " ", "--top", "3", "--json")
    assert code == 0, err
    from bilin_cli.render.views import token_text

    for text, reading in zip(shown, json.loads(out)["tokens"], strict=True):
        left, right = text.split(" | ")
        assert left.split() == [token_text(e) for e in reading["positive"]]
        assert right.split() == [token_text(e) for e in reading["negative"]]


def test_llama_chain_applies_the_mlp_norm_gain(cli, tmp_path):
    """Chaining into layer 0 of a LLaMA model: the direction is g_1 * v (v from layer 1)."""
    from conftest import reference_eigvals

    path = tmp_path / "llama"
    refs, unembed = write_llama(path, vocab=9, mlp_gain=True)
    code, out, err = cli("eig", path, "--layer", "1", "--token", "4", "--chain", "1", "--all",
                         "--json", "--float64")
    assert code == 0, err
    steps = json.loads(out)["steps"]
    v = np.array(steps[0]["eigenvectors"][0])
    g = load_file(str(path / "model.safetensors"))["model.layers.1.post_attention_layernorm.weight"]
    assert steps[1]["direction"]["norm_gain"] is True
    np.testing.assert_allclose(steps[1]["eigenvalues"],
                               reference_eigvals(refs[0], g.astype(np.float64) * v), atol=1e-9)
    assert any("gain is applied" in n for n in steps[1]["notes"])


def test_token_scores_do_not_depend_on_the_block_size(tmp_path):
    from bilin_cli.analyses.token_reading import token_scores
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import recognise

    write_llama(tmp_path / "llama", vocab=23, mlp_gain=True)
    model = recognise(open_checkpoint(tmp_path / "llama"))
    vecs = np.random.default_rng(0).standard_normal((3, 8))
    whole = token_scores(model, 1, vecs)
    assert whole.shape == (23, 3)
    np.testing.assert_allclose(token_scores(model, 1, vecs, block=4), whole, rtol=1e-12)


# --token-str with tokenizers that have an unknown token ------------------------------------


def _lm_with(path, tok):
    """A bilinear transformer whose head rows match ``tok``'s vocabulary, read through it."""
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    write_transformer(path, vocab=tok.get_vocab_size(), n_layer=1)
    cfg = json.loads((path / "config.json").read_text())
    del cfg["vocab"]  # the tokenizer.json, not config.json's character list
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def _token_of(cli, path, text):
    code, out, err = cli("eig", path, "--token-str", text, "--json")
    return code, (json.loads(out)["direction"]["index"] if code == 0 else None), err


CORPUS = ["the cat sat on the mat", "the dog ate the cat food", "a bird sang"] * 10


def _wordlevel():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["<unk>"]))
    return tok


def test_token_str_word_outside_a_wordlevel_vocabulary_is_an_error(cli, tmp_path):
    tok = _wordlevel()
    path = _lm_with(tmp_path / "wl", tok)
    assert _token_of(cli, path, "cat")[:2] == (0, tok.token_to_id("cat"))
    code, tid, err = _token_of(cli, path, "zebra")
    assert code == 1 and tid is None
    assert err.startswith("error: 'zebra' is not in the vocabulary")
    assert "unknown token '<unk>'" in err and f"id {tok.token_to_id('<unk>')}" in err
    assert len(err.strip().splitlines()) == 1
    # Several words, one of them unknown: the unknown one is what is wrong.
    code, _, err = _token_of(cli, path, "cat zebra")
    assert code == 1 and "not in the vocabulary" in err and "in 2 tokens" in err
    # The unknown token's own spelling is a real request for its row.
    assert _token_of(cli, path, "<unk>")[:2] == (0, tok.token_to_id("<unk>"))


def test_token_str_wordpiece_stored_continuation_and_unknown(cli, tmp_path):
    """A WordPiece continuation piece ('##at') encodes to [UNK] in running text: its stored
    spelling is looked up first; a word of unseen characters is an error naming [UNK]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=60,
                                                              special_tokens=["[UNK]"]))
    path = _lm_with(tmp_path / "wp", tok)
    pieces = sorted(t for t in tok.get_vocab() if t.startswith("##"))
    assert pieces
    piece = pieces[0]
    assert tok.encode(piece, add_special_tokens=False).ids != [tok.token_to_id(piece)]
    assert _token_of(cli, path, piece)[:2] == (0, tok.token_to_id(piece))
    assert _token_of(cli, path, "the")[:2] == (0, tok.token_to_id("the"))
    code, _, err = _token_of(cli, path, "xyz")
    assert code == 1 and "'xyz' is not in the vocabulary" in err and "'[UNK]'" in err
    assert _token_of(cli, path, "[UNK]")[:2] == (0, tok.token_to_id("[UNK]"))


def test_token_str_bpe_with_unk_token(cli, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=80, special_tokens=["<unk>"]))
    path = _lm_with(tmp_path / "bpe", tok)
    assert tok.encode("Q", add_special_tokens=False).tokens == ["<unk>"]
    code, _, err = _token_of(cli, path, "Q")
    assert code == 1 and "'Q' is not in the vocabulary" in err and "'<unk>'" in err
    assert _token_of(cli, path, "cat")[:2] == (0, tok.token_to_id("cat"))


def test_token_str_sentencepiece_unigram(cli, tmp_path):
    """SentencePiece-style (Unigram, unk_id, Metaspace): ' the' is stored as '▁the'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = [("<unk>", 0.0), ("▁the", -1.0), ("▁cat", -1.5), ("▁", -2.0), ("t", -3.0),
             ("h", -3.0), ("e", -3.0), ("c", -3.0), ("a", -3.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    path = _lm_with(tmp_path / "sp", tok)
    the = tok.token_to_id("▁the")
    assert _token_of(cli, path, " the")[:2] == (0, the)  # the stored spelling, by ▁
    assert _token_of(cli, path, "▁the")[:2] == (0, the)
    assert _token_of(cli, path, "the")[:2] == (0, the)  # encoded as running text
    code, _, err = _token_of(cli, path, "zq")
    assert code == 1 and "'zq' is not in the vocabulary" in err and "'<unk>' (id 0)" in err


def test_token_str_byte_level_spellings(cli, tmp_path):
    """Byte-level BPE: ' the' is Ġthe, 'é' the two-byte token Ã© (not the lone byte é)."""
    from bilin_cli.storage.vocabulary import stored_spellings

    assert stored_spellings(" the") == ["Ġthe", " the", "▁the"]
    assert stored_spellings(" the", byte_level=False) == [" the", "▁the"]
    assert stored_spellings("é")[0] == "Ã©" and stored_spellings("\n")[0] == "Ċ"
    tok = write_tokenizer(tmp_path / "bl")
    path = _lm_with(tmp_path / "bl", tok)
    for text, stored in ((" the", "Ġthe"), ("Ġthe", "Ġthe"), ("é", "Ã©"), ("\n", "Ċ")):
        assert _token_of(cli, path, text)[:2] == (0, tok.token_to_id(stored)), text
    code, _, err = _token_of(cli, path, " café")
    assert code == 1 and "is 2 tokens" in err  # no unknown token in byte-level BPE
