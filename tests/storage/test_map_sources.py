"""Map files name themselves in their errors; odd values of valid keys are refused; an
ambiguity found by structure is said, not replaced by 'nothing found'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

TOY = Path(__file__).resolve().parents[2] / "sample_checkpoints" / "toy"


@pytest.mark.parametrize(("mapping", "words"), [
    ({"layers": [{"w": "left.weight"}]}, "needs either 'wv' or both 'w' and 'v'"),
    ({"layers": [{"w": "left.weight", "v": "right.weight"}], "head": "head.weight",
      "inputs": 2.0}, "'inputs' must be 1 or 2"),
    ({"layers": [{"w": "left.weight", "v": "right.weight"}], "inputs": 1.0},
     "'inputs' must be 1 or 2"),
    ({"layers": [{"w": "", "v": "right.weight"}]}, "layers[0].w is an empty string"),
])
def test_a_map_file_error_names_the_file(cli, tmp_path, mapping, words):
    path = tmp_path / "my-map.json"
    path.write_text(json.dumps(mapping))
    code, out, err = cli("eig", TOY, "--class", "0", "--map", path)
    assert code == 1
    assert err.startswith(f"error: {path}: ") and words in err and err.count("\n") == 1, err


def test_a_map_given_as_a_dict_is_still_called_map():
    from bilin_cli import api
    from bilin_cli.core.errors import BilinError

    with pytest.raises(BilinError, match=r"^map: layers\[0\] needs"):
        api.load(TOY, map={"layers": [{"w": "left.weight"}]})


def test_suggest_map_says_the_ambiguity_it_found(cli, tmp_path):
    r = np.random.default_rng(0)
    ck = tmp_path / "amb.safetensors"
    save_file({k: r.standard_normal(s).astype(np.float32) for k, s in
               {"x.a": (6, 4), "x.b": (6, 4), "x.c": (5, 4), "x.d": (5, 4),
                "head.weight": (3, 6)}.items()}, str(ck))
    code, out, err = cli("info", ck, "--suggest-map")
    assert code == 0, err
    assert "several pairs of equal shape" in err and "x.a" in err
    assert "no two sibling matrices" not in err
