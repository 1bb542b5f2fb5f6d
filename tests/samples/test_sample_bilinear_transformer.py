"""The shipped fully bilinear transformer is read without a map, exactly as its own
forward pass computes it (tests/bilinear_transformer_ref.py, written from the sample's
README, shares nothing with bilin)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

import bilin_cli as bilin

sys.path.insert(0, str(Path(__file__).parents[1]))
import bilinear_transformer_ref as ref  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "sample_checkpoints" / "shakespeare-bilinear"


def test_bilin_composes_the_sample_exactly_as_its_forward():
    config = json.loads((SAMPLE / "config.json").read_text())
    params = {k: v.astype(np.float64) for k, v in load_file(SAMPLE / "model.safetensors").items()}
    m = bilin.load(SAMPLE)
    assert m.n_layers == m.n_attention == config["n_layers"]
    assert m.attention_settings.n_heads == config["n_heads"]
    vocab = config["vocab"]
    text = "To be, or not to be, that is the question:\nWhether 'tis nobler"
    tokens = [vocab.index(ch) for ch in text]
    x = m.embed(np.float64)[tokens]
    for i in range(m.n_layers):
        x = x + m.attention(i, np.float64).forward(x)
        x = x + m.layer(i, np.float64).forward(x)
    logits = x @ m.head(np.float64).T
    np.testing.assert_allclose(logits, ref.forward(params, config, tokens), rtol=1e-9,
                               atol=1e-9)
    # and it predicts Shakespeare better than chance: most next characters rank in the top 5
    ranks = [(logits[t] > logits[t, tokens[t + 1]]).sum() for t in range(len(tokens) - 1)]
    assert np.mean(np.array(ranks) < 5) > 0.6
