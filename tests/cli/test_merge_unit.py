"""Direct unit tests of ``bilin_cli.cli.shards`` (``Shard``, ``parse_shard``,
``validate_part``, ``read_part``, ``check_parts``, ``merge``) and ``bilin merge``, on a tiny
model: parts written by ``bilin eig/spectrum --shard i/N -o`` merge to exactly the whole run,
and a malformed part is one ``error:`` line naming the file and the field."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import write_image
from hypothesis import given, settings
from hypothesis import strategies as st

from bilin_cli.cli.shards import (
    Shard,
    check_parts,
    merge,
    parse_shard,
    read_part,
    validate_part,
)
from bilin_cli.core.errors import BilinError

N_CLS = 5


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A folder holding the tiny model ``m``, as the current directory (jobs name paths as
    given, so every shard runs from one place)."""
    write_image(tmp_path / "m", d=4, n_in=6, n_cls=N_CLS, seed=5)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def shards(cli, args: list[str], n: int, stem: str = "part") -> list[str]:
    names = []
    for i in range(1, n + 1):
        name = f"{stem}{i}of{n}"
        code, out, err = cli(*args, "--shard", f"{i}/{n}", "-o", name)
        assert code == 0, err
        assert out == ""
        assert f"part {i}/{n} of {args[0]}" in err
        names.append(name)
    return names


def whole(cli, args: list[str]) -> str:
    code, out, err = cli(*args)
    assert code == 0, err
    return out


def one_error(cli, *args) -> str:
    code, out, err = cli(*args)
    assert code == 1, (code, out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------- merge == whole


JOBS = [
    ["eig", "m", "--class", "all", "--top", "2", "--json"],
    ["eig", "m", "--class", "0-3", "--top", "3", "--format", "csv"],
    ["eig", "m", "--class", "1,4", "--top", "2"],
    ["eig", "m", "--class", "2", "--top", "4", "--json"],
    ["spectrum", "m"],
    ["spectrum", "m", "--json"],
    ["spectrum", "m", "--class", "0,2,4", "--format", "tsv"],
]


@pytest.mark.parametrize("args", JOBS, ids=lambda a: "-".join(a[::2]))
@pytest.mark.parametrize("n", [1, 3])
def test_parts_merge_to_the_whole_run(cli, scratch, args, n):
    if n > 1 and "--class" in args and args[args.index("--class") + 1] == "2":
        n = 1  # a job of one direction has one shard's worth of work
    parts = shards(cli, args, n)
    expected = whole(cli, args)
    code, merged, err = cli("merge", *reversed(parts))
    assert code == 0, err
    assert merged == expected


def test_merge_output_format_and_file(cli, scratch):
    args = ["spectrum", "m"]
    parts = shards(cli, args, 2)
    code, out, err = cli("merge", *parts, "--json")
    assert code == 0, err
    assert out == whole(cli, [*args, "--json"])
    code, out, err = cli("merge", *parts, "--format", "csv", "-o", "merged.csv")
    assert code == 0 and out == ""
    assert (scratch / "merged.csv").read_text() == whole(cli, [*args, "--format", "csv"])
    # an existing output is kept without --force
    line = one_error(cli, "merge", *parts, "--format", "csv", "-o", "merged.csv")
    assert "merged.csv" in line


def test_merge_functions_directly(cli, scratch, capsys):
    args = ["eig", "m", "--class", "all", "--top", "2", "--json"]
    parts = shards(cli, args, 3)
    expected = whole(cli, args)
    docs = [read_part(p) for p in reversed(parts)]
    assert [d["_path"] for d in docs] == list(reversed(parts))
    ordered = check_parts(docs)
    assert [d["shard"] for d in ordered] == [1, 2, 3]
    assert sum(len(d["items"]) for d in ordered) == N_CLS
    # contiguous, nearly equal blocks in job order: 2, 2, 1
    assert [[it["key"] for it in d["items"]] for d in ordered] == [
        ["class0", "class1"], ["class2", "class3"], ["class4"]]
    capsys.readouterr()
    merge(ordered, "json", None, False)
    assert capsys.readouterr().out == expected


# ---------------------------------------------------------------------------- Shard


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(n=st.integers(0, 200), count=st.integers(1, 30), align=st.integers(1, 8))
def test_shards_cover_every_item_once_in_order(n, count, align):
    items = list(range(n))
    got = [Shard(i, count).select(items, align) for i in range(1, count + 1)]
    assert [x for block in got for x in block] == items
    sizes = [Shard(i, count).bounds(n)[1] - Shard(i, count).bounds(n)[0]
             for i in range(1, count + 1)]
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the first n mod N hold one more
    for block in got:
        if block:
            assert block[0] % align == 0  # blocks start on chunk boundaries


@pytest.mark.parametrize("text,shard", [("1/1", Shard(1, 1)), (" 3 / 4 ", Shard(3, 4)),
                                        ("10/10", Shard(10, 10))])
def test_parse_shard(text, shard):
    assert parse_shard(text) == shard and str(shard) == f"{shard.index}/{shard.count}"
    assert parse_shard(None) is None


@pytest.mark.parametrize("text,says", [("0/4", "i counts from 1 to N (4); got 0"),
                                       ("5/4", "i counts from 1 to N (4); got 5"),
                                       ("1/0", "N must be in 1..")])
def test_parse_shard_out_of_range(text, says):
    with pytest.raises(BilinError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_shard(text)


def test_parse_shard_malformed_is_a_usage_error(cli, scratch):
    code, out, err = cli("spectrum", "m", "--shard", "two", "-o", "x")
    assert code == 2 and "is not i/N" in err


# ---------------------------------------------------------------------------- the schema


def run_cli(args: list[str], cwd) -> tuple[int, str, str]:
    """``bilin ARGS`` in-process from ``cwd``, for module-scoped fixtures (no capsys)."""
    import contextlib
    import io
    import sys

    from bilin_cli.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        mp.chdir(cwd)
        mp.setattr(sys, "argv", ["bilin", *args])
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Valid parts of one eig and one spectrum job (two shards each), written once."""
    folder = tmp_path_factory.mktemp("parts")
    write_image(folder / "m", d=4, n_in=6, n_cls=N_CLS, seed=5)
    names = {}
    for stem, args in (("e", ["eig", "m", "--class", "all", "--top", "2", "--json"]),
                       ("s", ["spectrum", "m"])):
        names[stem] = []
        for i in (1, 2):
            name = f"{stem}{i}of2"
            code, _, err = run_cli([*args, "--shard", f"{i}/2", "-o", name], folder)
            assert code == 0, err
            names[stem].append(name)
    return folder, names


@pytest.fixture
def good(made, scratch):
    """The parts, copied into this test's folder, and parsed."""
    folder, names = made
    docs = {}
    for name in names["e"] + names["s"]:
        text = (folder / name).read_text()
        (scratch / name).write_text(text)
        docs[name] = json.loads(text)
    return {"eig": docs[names["e"][0]], "spectrum": docs[names["s"][0]],
            "eig_names": names["e"], "spectrum_names": names["s"]}


def mutate(doc: dict, path: list, value=None, delete=False) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


BAD_EIG = [
    (["items"], None, True, "field items is missing"),
    (["command"], "eigs", False, "field command must be one of 'eig', 'spectrum', "
                                 "'rank-features', not the string 'eigs'"),
    (["shard"], "1", False, "field shard must be an integer in 1..1000000, not the string '1'"),
    (["shard"], True, False, "field shard must be an integer in 1..1000000, not true"),
    (["shard"], 3, False, "field shard: shard 3 of 2 (counts from 1 to shards)"),
    (["total"], 0, False, "field total must be an integer in 1.."),
    (["total"], 1, False, "field items: 3 results, more than the job's total (1)"),
    (["many"], "yes", False, "field many must be true or false"),
    (["warnings"], [3], False, "field warnings[0] must be a string, not 3"),
    (["format"], "xml", False, "field format must be one of"),
    (["job"], [], False, "field job must be an object, not a list of 0"),
    (["items", 0, "key"], "class 0", False, "field items[0].key must be a direction key"),
    (["items", 1, "key"], "class0", False,
     "field items[1].key: the string 'class0' is also items[0]"),
    (["items", 0, "doc"], None, True, "field items[0].doc is missing"),
    (["items", 0, "doc", "eigenvalues"], [], False,
     "field items[0].doc.eigenvalues must be a list of at least 1 numbers, not a list of 0"),
    (["items", 0, "doc", "eigenvalues", 1], "0.5", False,
     "field items[0].doc.eigenvalues[1] must be a finite number, not the string '0.5'"),
    (["items", 0, "doc", "eigenvalues", 0], 1e39, False,
     "field items[0].doc.eigenvalues[0]: 1e+39 is beyond the range of float32"),
    (["items", 0, "doc", "eigenvectors", 1], [0.5], False,
     "field items[0].doc.eigenvectors[1]: 1 entries, eigenvectors[0] has 6"),
    (["items", 0, "doc", "dtype"], "float16", False,
     "field items[0].doc.dtype must be one of 'float32', 'float64'"),
    (["items", 0, "doc", "direction", "kind"], "vibe", False,
     "field items[0].doc.direction.kind must be one of 'class', 'token'"),
    (["items", 0, "doc", "direction", "index"], -1, False,
     "field items[0].doc.direction.index must be an integer in 0.."),
    (["items", 0, "doc", "effective_rank"], None, False,
     "field items[0].doc.effective_rank must be a finite number (sum_abs_eigenvalues is "
     "given), not null"),
    (["items", 0, "doc", "notes"], "n", False,
     "field items[0].doc.notes must be a list, not the string 'n'"),
]


@pytest.mark.parametrize("path,value,delete,says", BAD_EIG,
                         ids=[".".join(map(str, b[0])) + f"={b[1]!r}" for b in BAD_EIG])
def test_a_bad_eig_part_names_the_field(good, path, value, delete, says):
    bad = mutate(good["eig"], path, value, delete)
    with pytest.raises(BilinError) as exc:
        validate_part(bad, "bad.part")
    msg = str(exc.value)
    assert msg.startswith("bad.part: not a valid part file: "), msg
    assert says in msg, msg
    assert msg.endswith("(write it again with --shard i/N -o PART)")


BAD_SPECTRUM = [
    (["head", "_dtype"], "int8", False, "field head._dtype must be one of 'float32', 'float64'"),
    (["head", "n_eigenvalues"], 0, False, "field head.n_eigenvalues must be an integer in 1.."),
    (["head", "layer"], None, True, "field head.layer is missing"),
    (["items", 0, "eigenvalues"], [1.0], False,
     "field items[0].eigenvalues: 1 values, head.n_eigenvalues says 4"),
    (["items", 0, "row", "k50"], 1.5, False, "field items[0].row.k50 must be an integer"),
    (["items", 0, "row", "top_positive"], {"a": 1}, False,
     "field items[0].row.top_positive must be a list of numbers, not an object"),
]


@pytest.mark.parametrize("path,value,delete,says", BAD_SPECTRUM,
                         ids=[".".join(map(str, b[0])) + f"={b[1]!r}" for b in BAD_SPECTRUM])
def test_a_bad_spectrum_part_names_the_field(good, path, value, delete, says):
    with pytest.raises(BilinError) as exc:
        validate_part(mutate(good["spectrum"], path, value, delete), "s.part")
    assert says in str(exc.value), str(exc.value)


def test_another_part_version_is_named():
    with pytest.raises(BilinError, match="s.part: part format 2; this bilin reads 1"):
        validate_part({"bilin_part": 2}, "s.part")


@pytest.mark.parametrize("doc", [[], "x", 3, None, {}])
def test_what_is_not_an_object_is_one_error(doc):
    with pytest.raises(BilinError, match="p: not a valid part file: field"):
        validate_part(doc, "p")


def test_good_parts_validate(good):
    validate_part(good["eig"], "e")
    validate_part(good["spectrum"], "s")


# ---------------------------------------------------------------------------- through the CLI


@pytest.mark.parametrize("path,value,delete,says", [
    (["items", 0, "doc", "eigenvalues", 1], "0.5", False, "items[0].doc.eigenvalues[1]"),
    (["items"], None, True, "field items is missing"),
    (["shard"], 2.0, False, "field shard must be an integer"),
])
def test_bilin_merge_of_a_bad_part_is_one_line(good, cli, scratch, path, value, delete, says):
    name = good["eig_names"][0]
    bad = mutate(good["eig"], path, value, delete)
    (scratch / name).write_text(json.dumps(bad))
    line = one_error(cli, "merge", *good["eig_names"])
    assert name in line and says in line


@pytest.mark.parametrize("content,says", [
    ("", "not a bilin part file"),
    ('{"items": []}', "not a bilin part file"),
    ('{"bilin_part": 1, "command": ', "not valid JSON"),
    ('{"bilin_part": 1, "x": NaN}', "not valid JSON"),
])
def test_bilin_merge_of_what_is_not_a_part(cli, scratch, good, content, says):
    (scratch / "junk").write_text(content)
    line = one_error(cli, "merge", "junk", good["eig_names"][1])
    assert "junk" in line and says in line


def test_bilin_merge_of_a_missing_file(cli, scratch):
    line = one_error(cli, "merge", "nothere.part")
    assert "nothere.part: no such part file" in line


def test_merge_refuses_parts_that_do_not_make_one_job(cli, scratch, good):
    e1, e2 = good["eig_names"]
    s1, s2 = good["spectrum_names"]
    assert "missing part 2 of 2" in one_error(cli, "merge", e1)
    assert "is given twice" in one_error(cli, "merge", e1, e1)
    line = one_error(cli, "merge", e1, s2)
    assert "is a part of 'bilin spectrum'" in line and "merge the parts of one job" in line
    other = shards(cli, ["eig", "m", "--class", "all", "--top", "3", "--json"], 2, "o")
    line = one_error(cli, "merge", e1, other[1])
    assert "from another job" in line and "--top" in line
    three = shards(cli, ["eig", "m", "--class", "all", "--top", "2", "--json"], 3, "t")
    assert "from another job" in one_error(cli, "merge", e1, three[1], three[2])


def test_check_parts_counts_results(good):
    a = {**copy.deepcopy(good["eig"]), "_path": "a"}
    b = copy.deepcopy(a)
    b.update(shard=2, _path="b")
    # b repeats two of a's results: every shard present, 5 results, one given twice
    b["items"] = b["items"][:2]
    with pytest.raises(BilinError, match="a result is given twice"):
        check_parts([a, b])
    b["items"] = b["items"][:1]
    b["items"][0]["key"] = "class9"
    with pytest.raises(BilinError, match="the parts hold 4 results, the job has 5"):
        check_parts([a, b])
