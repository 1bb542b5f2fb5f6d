"""Library errors name the API's parameters; the CLI's name its flags (core.errors.option)."""

import numpy as np
import pytest
from safetensors.numpy import save_file

import bilin_cli as bilin
from bilin_cli.core.errors import BilinError, option, speaking_to_the_cli

MNIST = "sample_checkpoints/mnist"


@pytest.fixture
def headless(tmp_path):
    r = np.random.default_rng(0)
    path = tmp_path / "headless.safetensors"
    save_file({"left.weight": r.standard_normal((6, 4)).astype(np.float32),
               "right.weight": r.standard_normal((6, 4)).astype(np.float32)}, str(path))
    return path


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(BilinError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_option_follows_the_switch():
    assert option("--per-class", "per_class") == "per_class"
    with speaking_to_the_cli():
        with speaking_to_the_cli():
            assert option("--per-class", "per_class") == "--per-class"
        assert option("--per-class", "per_class") == "--per-class"
    assert option("--per-class", "per_class") == "per_class"


def test_api_messages_name_parameters(headless):
    msg = _message(bilin.truncate, MNIST, rank=-1)
    assert "rank must be >= 0" in msg and "--" not in msg
    msg = _message(bilin.hosvd, MNIST, components=0)
    assert "components must be a positive integer" in msg and "--" not in msg
    msg = _message(bilin.eig, bilin.load(headless), cls=0)
    assert "direction=" in msg and "--" not in msg


def test_cli_messages_name_flags(cli, headless):
    code, _, err = cli("truncate", MNIST, "--rank", "-1")
    assert code != 0 and "--rank" in err
    code, _, err = cli("hosvd", MNIST, "--components", "0")
    assert code != 0 and "--components" in err
    code, _, err = cli("eig", headless, "--class", "0")
    assert code != 0 and "give --direction FILE.npy" in err
    # after an in-process CLI command the API spelling is back
    assert option("--rank", "rank") == "rank"
    assert "--" not in _message(bilin.truncate, MNIST, rank=-1)
