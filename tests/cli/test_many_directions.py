"""Many directions in one run: lists, ranges, all and --token-file for eig and spectrum."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from conftest import write_image, write_transformer

from bilin_cli.cli.options import index_list
from bilin_cli.core.errors import BilinError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    write_image(root / "img")  # 5 classes
    write_transformer(root / "lm")  # 11 tokens
    return root


@pytest.mark.parametrize("text,n,want", [
    ("3", 10, [3]), ("0,3,7", 10, [0, 3, 7]), ("all", 4, [0, 1, 2, 3]), ("ALL", 2, [0, 1]),
    ("0-4", 10, [0, 1, 2, 3, 4]), ("7,0-2", 10, [7, 0, 1, 2]), (" 2 , 5-5 ", 10, [2, 5]),
])
def test_index_list_parses(text, n, want):
    assert index_list(text, "--class").resolve(n, "class", "classes") == want


def test_index_list_many_means_a_list():
    assert not index_list("3", "--class").many
    assert all(index_list(t, "--class").many for t in ("3,4", "3-4", "all", "3-3,5"))


@pytest.mark.parametrize("text,error,says", [
    ("", typer.BadParameter, "empty item"), ("1,,2", typer.BadParameter, "empty item"),
    ("1,", typer.BadParameter, "empty item"), ("x", typer.BadParameter, "not an index"),
    ("1.5", typer.BadParameter, "not an index"), ("all,3", typer.BadParameter, "alone"),
    ("5-2", BilinError, "runs backwards; write 2-5"), ("-3", BilinError, "out of range"),
    ("-3-4", BilinError, "out of range"), ("0-99999999999", BilinError, "more than"),
])
def test_index_list_refuses(text, error, says):
    with pytest.raises(error, match=says):
        index_list(text, "--class")


def test_index_list_beyond_the_model():
    with pytest.raises(BilinError, match=r"class 12 is out of range: this model has 10"):
        index_list("0,3-12", "--class").resolve(10, "class", "classes")


def test_eig_json_lines_each_the_single_document(cli, models):
    code, many, err = cli("eig", models / "img", "--class", "0,3", "--top", "2", "--json")
    assert code == 0, err
    lines = many.splitlines()
    assert len(lines) == 2
    for line, c in zip(lines, (0, 3), strict=True):
        code, single, _ = cli("eig", models / "img", "--class", str(c), "--top", "2", "--json")
        assert line + "\n" == single
        assert json.loads(line)["direction"]["index"] == c


def test_eig_all_range_and_repeat_agree(cli, models):
    outs = [cli("eig", models / "img", *args, "--top", "1", "--json")[1]
            for args in (["--class", "all"], ["--class", "0-4"], ["--class", "0,1,2,3,4"],
                         ["--class", "0-1", "--class", "2,3-4"])]
    assert len(set(outs)) == 1 and len(outs[0].splitlines()) == 5


def test_eig_single_direction_keeps_its_output(cli, models):
    """One plain index is one document; its npz keys are the plain ones."""
    code, out, _ = cli("eig", models / "img", "--class", "2", "--json")
    assert code == 0 and json.loads(out)["direction"]["index"] == 2
    code, _, _ = cli("eig", models / "img", "--class", "2", "--format", "npz", "-o",
                     models / "one.npz")
    assert sorted(np.load(models / "one.npz")) == ["eigenvalues", "eigenvectors"]


def test_eig_many_tables_csv_and_npz(cli, models):
    code, out, _ = cli("eig", models / "img", "--class", "1,4", "--top", "2")
    assert code == 0 and out.count("direction       class") == 2 and "\n\n" in out
    code, out, _ = cli("eig", models / "img", "--class", "1,4", "--top", "2", "--format", "csv")
    lines = out.splitlines()
    assert lines[0].startswith("direction,rank,eigenvalue,")
    assert [line.split(",")[0] for line in lines[1:]] == ["class1", "class1", "class4", "class4"]
    target = models / "many.npz"
    code, _, err = cli("eig", models / "img", "--class", "1,4", "--top", "2", "--basis",
                       "hidden", "--format", "npz", "-o", target)
    assert code == 0, err
    z = np.load(target)
    assert list(z["directions"]) == ["class1", "class4"]
    assert z["class4_eigenvalues"].shape == (2,) and z["class1_eigenvectors"].shape == (2, 12)
    code, single, _ = cli("eig", models / "img", "--class", "4", "--top", "2", "--basis",
                          "hidden", "--json")
    assert np.array_equal(z["class4_eigenvalues"],
                          np.asarray(json.loads(single)["eigenvalues"], np.float32))


def test_eig_many_to_a_file_is_what_stdout_gets(cli, models):
    args = ["eig", models / "img", "--class", "all", "--top", "2", "--json"]
    code, out, _ = cli(*args)
    code, _, _ = cli(*args, "-o", models / "all.jsonl")
    assert (models / "all.jsonl").read_text() == out


def test_token_lists_ranges_and_token_file(cli, models, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("# tokens to look at\n1\n4 5, 7\n8-9  # a range\n")
    code, from_file, err = cli("eig", models / "lm", "--token-file", ids, "--top", "1",
                               "--tokens", "0", "--json")
    assert code == 0, err
    got = [json.loads(line)["direction"]["index"] for line in from_file.splitlines()]
    assert got == [1, 4, 5, 7, 8, 9]
    code, listed, _ = cli("eig", models / "lm", "--token", "1,4-5,7,8-9", "--top", "1",
                          "--tokens", "0", "--json")
    assert listed == from_file
    code, out, _ = cli("spectrum", models / "lm", "--token-file", ids, "--token", "10", "--json")
    assert [r["direction"]["index"] for r in json.loads(out)["directions"]] == [10, 1, 4, 5, 7,
                                                                                8, 9]
    code, out, _ = cli("spectrum", models / "lm", "--token", "all", "--json")
    assert len(json.loads(out)["directions"]) == 11


@pytest.mark.parametrize("content,says", [
    ("", "no indices"), ("# only a comment\n", "no indices"), ("1 2 x\n", "not an index"),
    ("3 3\n", "named twice"), ("1 99\n", "token 99 is out of range"),
])
def test_token_file_refusals(cli, models, tmp_path, content, says):
    ids = tmp_path / "ids.txt"
    ids.write_text(content)
    code, out, err = cli("eig", models / "lm", "--token-file", ids)
    assert code in (1, 2) and out == "" and says in err


def test_spectrum_lists_and_ranges(cli, models):
    code, out, _ = cli("spectrum", models / "img", "--class", "0-2,4", "--json")
    assert [r["direction"]["index"] for r in json.loads(out)["directions"]] == [0, 1, 2, 4]
    code, out, _ = cli("spectrum", models / "img", "--class", "1", "--class", "3", "--json")
    assert [r["direction"]["index"] for r in json.loads(out)["directions"]] == [1, 3]


@pytest.mark.parametrize("args,code,says", [
    (["eig", "{r}/img", "--class", "3-1"], 1, "write 1-3"),
    (["eig", "{r}/img", "--class", "0-5"], 1, "class 5 is out of range"),
    (["eig", "{r}/img", "--class", "0,,1"], 2, "empty item"),
    (["eig", "{r}/img", "--class", "-1"], 1, "out of range"),
    (["eig", "{r}/img", "--class", "0-2", "--class", "2"], 1, "class 2 is named twice"),
    (["spectrum", "{r}/img", "--class", "all,1"], 2, "alone"),
    (["spectrum", "{r}/lm", "--token", "11"], 1, "token 11 is out of range"),
    (["eig", "{r}/img", "--class", "1", "--top", "2", "--top", "3"], 1, "given 2 times"),
])
def test_many_direction_errors_are_one_line(cli, models, args, code, says):
    got, out, err = cli(*(a.format(r=models) for a in args))
    assert got == code and out == "" and says in err, err
    if code == 1:
        assert len(err.splitlines()) == 1


def test_sae_feature_range(cli):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "sample_checkpoints" / "shakespeare"
    code, out, err = cli("eig", root, "--layer", "1", "--sae", root / "sae-mlp-out-L1",
                         "--feature", "0-2", "--top", "1", "--tokens", "0", "--json")
    assert code == 0, err
    assert [json.loads(line)["direction"]["feature"] for line in out.splitlines()] == [0, 1, 2]
