"""The fast path: no torch import, no (o, d, d) or (h, d, d) tensor, lazy tensor reads."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from safetensors.numpy import save_file

from bilin_cli.analyses.decompose import decompose
from bilin_cli.analyses.directions import from_class
from bilin_cli.storage.containers import open_checkpoint
from bilin_cli.storage.layouts import recognise


def test_eig_on_safetensors_never_imports_torch(tmp_path):
    from conftest import write_image

    write_image(tmp_path / "m")
    script = (
        "import sys\n"
        "from bilin_cli.cli.app import main\n"
        f"sys.argv = ['bilin', 'eig', {str(tmp_path / 'm')!r}, '--class', '1', '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["layer"] == 0
    assert proc.stderr.strip().endswith("NOTORCH")


def test_memory_stays_far_below_the_full_tensor(tmp_path):
    d, h, o = 300, 600, 40
    r = np.random.default_rng(0)
    save_file({"embed.weight": r.standard_normal((d, 50)).astype(np.float32),
               "blocks.0.weight": r.standard_normal((2 * h, d)).astype(np.float32),
               "head.weight": r.standard_normal((o, h)).astype(np.float32)},
              str(tmp_path / "big.safetensors"))
    model = recognise(open_checkpoint(tmp_path / "big.safetensors"))
    u = from_class(model, 0, 3, np.float64)
    tracemalloc.start()
    dec = decompose(model, 0, u, top=5, dtype=np.float64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert dec.eigenvalues.shape == (5,)
    o_d_d = o * d * d * 8  # 28.8 MB; (h, d, d) would be 432 MB
    weights = 2 * h * d * 8  # 2.9 MB
    assert peak < weights + 12 * d * d * 8 < o_d_d, peak


def test_info_reads_no_tensor_data(tmp_path, monkeypatch):
    from conftest import write_image

    write_image(tmp_path / "m")
    ckpt = open_checkpoint(tmp_path / "m")
    calls = []
    real = ckpt._read
    ckpt._read = lambda key, rows=None: calls.append(key) or real(key, rows)
    model = recognise(ckpt)
    from bilin_cli.storage.summary import describe

    describe(ckpt, model)
    assert calls == []
    model.layer(0)
    assert sorted(calls) == ["blocks.0.weight", "head.weight"]


def test_a_token_direction_reads_one_row_of_a_bf16_unembedding(tmp_path):
    """--token T widens one row of a bf16 lm_head, not the whole matrix."""
    from conftest import write_transformer

    from bilin_cli.analyses import directions
    _, unembed = write_transformer(tmp_path / "lm", vocab=11, bf16=True)
    model = recognise(open_checkpoint(tmp_path / "lm"))
    seen = []
    real = model._load_tensor
    model._load_tensor = lambda key, dtype, rows=None: seen.append(rows) or real(key, dtype, rows)
    u = directions.from_token(model, 1, 7, np.float64)
    np.testing.assert_array_equal(u.u, unembed[7])
    assert seen == [slice(7, 8)]


@pytest.mark.parametrize("kind", ["f32", "bf16", "sharded", "pt"])
def test_row_reads_equal_slices_of_the_whole(tmp_path, kind):
    from conftest import write_llama, write_transformer

    if kind == "pt":
        write_llama(tmp_path / "m", vocab=13, as_bin=True)
    else:
        write_transformer(tmp_path / "m", vocab=13, bf16=kind == "bf16", sharded=kind == "sharded")
    ckpt = open_checkpoint(tmp_path / "m")
    whole = ckpt.get("lm_head.weight", np.float64)
    np.testing.assert_array_equal(ckpt.get("lm_head.weight", np.float64, slice(3, 9)), whole[3:9])


# ---- start-up: what the fast path imports --------------------------------------------------

_MODULES_AT_EXIT = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('MODULES', *sorted(m for m in sys.modules if "
    "'.' not in m), file=sys.stderr))\n"
    "sys.argv = ['bilin', *sys.argv[1:]]\n"
    "from bilin_cli.cli.entry import main\n"
    "main()\n"
)


def _imported(*args: str) -> tuple[set[str], str]:
    """Top-level modules a whole ``bilin ARGS`` process imported, and its stdout."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", _MODULES_AT_EXIT, *args], capture_output=True,
                          text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr
    line = [s for s in proc.stderr.splitlines() if s.startswith("MODULES ")][-1]
    return set(line.split()[1:]), proc.stdout


def test_eig_fast_path_imports_no_heavy_module():
    """eig on a safetensors model: numpy + LAPACK only; no torch, scipy, matplotlib, rich."""
    modules, out = _imported("eig", "sample_checkpoints/mnist", "--class", "3", "--json")
    assert json.loads(out)["method"] == "dense"
    assert "numpy" in modules
    assert not modules & {"torch", "scipy", "matplotlib", "rich", "PIL", "pandas", "ml_dtypes",
                          "plotly", "tokenizers"}


def test_ml_dtypes_only_for_files_that_hold_bfloat16(tmp_path):
    """ml_dtypes (about 0.6 s of start-up) is imported only where a tensor needs it."""
    import ml_dtypes
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {"left.weight": rng.standard_normal((6, 4)).astype(ml_dtypes.bfloat16),
               "right.weight": rng.standard_normal((6, 4)).astype(np.float32),
               "head.weight": rng.standard_normal((3, 6)).astype(np.float32)}
    save_file(tensors, str(tmp_path / "bf16.safetensors"))
    modules, out = _imported("eig", str(tmp_path / "bf16.safetensors"), "--class", "1", "--json")
    assert "ml_dtypes" in modules and len(json.loads(out)["eigenvalues"]) == 4


def test_version_and_help_import_no_command_module():
    """--version and --help: neither numpy nor pydantic nor rich, no command module."""
    from bilin_cli.cli.app import COMMANDS

    for args in (["--version"], ["--help"]):
        modules, out = _imported(*args)
        assert not modules & {"numpy", "pydantic", "rich", "scipy", "torch", "matplotlib"}, args
        if args == ["--help"]:
            for name, _, _ in COMMANDS:
                assert f"\n  {name} " in out, name


def test_lazy_command_table_matches_the_commands():
    """COMMANDS (names, order, short help for bilin --help) equals what the modules register."""
    import typer.main
    from typer._click.utils import make_default_short_help

    from bilin_cli.cli.app import COMMANDS, app

    group = typer.main.get_command(app)
    assert list(group.commands) == [name for name, _, _ in COMMANDS]
    for name, module, short in COMMANDS:
        command = group.commands[name]
        assert command.callback.__module__ == f"bilin_cli.cli.{module}", name
        for width in (40, 60, 200):
            assert make_default_short_help(short, width) == command.get_short_help_str(width)


def test_lazy_root_group_help_and_suggestions(cli):
    code, out, _ = cli("--help")
    assert code == 0 and "Commands:" in out and "rank-features" in out
    code, _, err = cli("eigg")
    assert code == 2 and "Did you mean 'eig'?" in err
    code, out, _ = cli("eig", "--help")
    assert code == 0 and "--method" in out and "bilin eig sample_checkpoints/mnist" in out
