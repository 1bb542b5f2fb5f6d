"""The shared output machinery: formats, -o, --force, atomic writes."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest
from conftest import write_image

from bilin_cli.core.errors import BilinError
from bilin_cli.storage.atomic import atomic_write


@pytest.fixture
def ckpt(tmp_path):
    write_image(tmp_path / "m")
    return tmp_path / "m"


def test_csv_and_tsv_rows_match_json(cli, ckpt):
    _, out, _ = cli("eig", ckpt, "--class", "0", "--top", "4", "--json")
    doc = json.loads(out)
    for fmt, delim in (("csv", ","), ("tsv", "\t")):
        code, out, _ = cli("eig", ckpt, "--class", "0", "--top", "4", "--format", fmt)
        assert code == 0
        rows = list(csv.reader(io.StringIO(out), delimiter=delim))
        assert rows[0] == ["rank", "eigenvalue", "share", "cumulative_share", "largest_entries"]
        assert [float(r[1]) for r in rows[1:]] == doc["eigenvalues"]
        shares = [float(r[2]) for r in rows[1:]]
        assert sum(shares) == pytest.approx(doc["top_k_share"])


def test_npz_output(cli, ckpt, tmp_path):
    target = tmp_path / "eig.npz"
    code, out, err = cli("eig", ckpt, "--class", "3", "--all", "--basis", "hidden",
                         "--format", "npz", "-o", target)
    assert code == 0 and out == "" and "wrote" in err
    with np.load(target) as z:
        lam, vecs = z["eigenvalues"], z["eigenvectors"]
    assert lam.shape == (12,) and vecs.shape == (12, 12)
    np.testing.assert_allclose(vecs @ vecs.T, np.eye(12), atol=1e-5)


def test_output_refuses_overwrite_without_force(cli, ckpt, tmp_path):
    target = tmp_path / "out.json"
    target.write_text("precious")
    code, out, err = cli("eig", ckpt, "--class", "1", "--json", "-o", target)
    assert code == 1 and "--force" in err
    assert target.read_text() == "precious"
    code, _, _ = cli("eig", ckpt, "--class", "1", "--json", "-o", target, "--force")
    assert code == 0
    assert json.loads(target.read_text())["direction"]["index"] == 1
    assert sorted(os.listdir(tmp_path)) == ["m", "out.json"]  # no temporary files left


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "half.bin"

    def write(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write)
    assert os.listdir(tmp_path) == []
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write, force=True)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["half.bin"]
    with pytest.raises(BilinError, match="no such directory"):
        atomic_write(tmp_path / "nodir" / "x", lambda fh: None)


def test_table_output_to_file(cli, ckpt, tmp_path):
    code, _, _ = cli("info", ckpt, "-o", tmp_path / "info.txt")
    assert code == 0
    text = (tmp_path / "info.txt").read_text()
    assert "image classifier" in text and "\x1b[" not in text  # no colour codes in files


def test_info_json_is_pipeable(cli, ckpt):
    code, out, err = cli("info", ckpt, "--format", "json")
    assert code == 0 and json.loads(out)["n_layers"] == 1


def test_repeated_single_value_option_is_one_error_line(cli, ckpt):
    for args in (("--class", "1", "--top", "2", "--top", "3"),
                 ("--class", "1", "--layer", "0", "--layer", "0")):
        code, out, err = cli("eig", ckpt, *args)
        assert code == 1 and out == "" and err.startswith("error:") and len(err.splitlines()) == 1
        assert "given 2 times" in err
    # flags and repeatable options are not refused
    code, out, _ = cli("eig", ckpt, "--class", "1", "--json", "--json")
    assert code == 0 and json.loads(out)["direction"]["index"] == 1
    code, _, _ = cli("spectrum", ckpt, "--class", "1", "--class", "2", "--json")
    assert code == 0


def test_eig_class_repeated_or_all_does_what_it_says(cli, ckpt):
    """--class given twice is two directions (JSON Lines), --class all is every class."""
    code, out, err = cli("eig", ckpt, "--class", "1", "--class", "2", "--json")
    assert code == 0 and [json.loads(line)["direction"]["index"]
                          for line in out.splitlines()] == [1, 2]
    code, out, err = cli("eig", ckpt, "--class", "all", "--json")
    assert code == 0 and [json.loads(line)["direction"]["index"]
                          for line in out.splitlines()] == [0, 1, 2, 3, 4]
    code, out, err = cli("eig", ckpt, "--class", "1", "--class", "1")
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and "twice" in err


def test_top_beyond_the_spectrum_is_said(cli, ckpt):
    code, out, err = cli("eig", ckpt, "--class", "0", "--top", "1000", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["top_k"] == doc["n_eigenvalues"] == 12
    assert any("--top 1000" in n and "all 12" in n for n in doc["notes"])
    code, out, err = cli("eig", ckpt, "--class", "0", "--top", "1000")
    assert "note: --top 1000" in out


def test_piped_table_has_no_title_or_trailing_spaces(cli, ckpt):
    code, out, _ = cli("eig", ckpt, "--class", "0", "--top", "3")
    assert code == 0 and not out.startswith("bilin eig")
    assert all(line == line.rstrip() for line in out.splitlines())
    # shares are percentages in the table, fractions in CSV/JSON
    assert "%" in out.split("rank", 1)[1]


def test_csv_headers_are_json_keys(cli, ckpt, tmp_path):
    """snake_case CSV/TSV column names, equal to the JSON keys of the rows they come from."""
    import re
    from pathlib import Path

    mnist = Path(__file__).resolve().parents[2] / "sample_checkpoints" / "mnist"  # has data
    for args, rows_key in ((("eval", mnist), "per_class"),
                           (("truncate", mnist, "--sweep", "0,2"), "sweep"),
                           (("compare", ckpt, ckpt), "classes"),
                           (("spectrum", ckpt), "directions"),
                           (("info", ckpt), "layers")):
        code, out, err = cli(*args, "--format", "csv")
        assert code == 0, err
        header = next(csv.reader(io.StringIO(out)))
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", h) for h in header), header
        _, out, _ = cli(*args, "--json")
        rows = json.loads(out)[rows_key]
        keys = set(rows[0]) | {"direction"}
        assert set(header) <= keys | set(rows[0].get("direction", {})), (header, keys)


def test_help_keeps_brackets_and_defaults(cli):
    code, out, _ = cli("eig", "--help")
    assert code == 0
    assert "[default: 5]" in out and "[default: 10]" in out
    assert "<bool>" not in out
    code, out, _ = cli("truncate", "--help")
    assert "[x; 1]" in " ".join(out.split())
    # examples are kept on one line each, ready to paste
    assert "bilin eig sample_checkpoints/mnist --class 3 --top 20 --json | jq '.eigenvalues'" in (
        cli("eig", "--help")[1])


def test_short_flags_mean_one_thing(cli):
    """Every short flag names the same long option in every command."""
    import typer.main

    from bilin_cli.cli.app import app

    meaning: dict[str, set[str]] = {}
    for command in typer.main.get_command(app).commands.values():
        for param in command.params:
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts + param.secondary_opts
                          if o.startswith("-") and not o.startswith("--")):
                meaning.setdefault(short, set()).update(longs)
    # -k counts eigenvalues everywhere: the top K eigenpairs (--top) or, in rank-features,
    # the k eigenvalues a share counts (--k); -n is the number of rows, as head -n
    assert meaning.pop("-k") == {"--top", "--k"}
    assert meaning["-n"] == {"--top"}
    assert {k: v for k, v in meaning.items() if len(v) > 1} == {}
    k_help = {cmd: p.help for cmd, c in typer.main.get_command(app).commands.items()
              for p in c.params if "-k" in p.opts}
    assert all(any(w in text.lower() for w in ("eigen", "components", "contributions"))
               for text in k_help.values()), k_help


def test_old_short_flags_still_work_with_a_warning(cli):
    code, out, err = cli("adversarial", "sample_checkpoints/mnist", "--target", "3", "--variant",
                         "top-pixels", "-n", "40", "--json")
    assert code == 0, err
    assert "deprecated" in err
    assert "-k counts eigenvalues" in err
    same = cli("adversarial", "sample_checkpoints/mnist", "--target", "3", "--variant",
               "top-pixels", "--pixels", "40", "--json")
    assert same[0] == 0 and json.loads(same[1]) == json.loads(out)

