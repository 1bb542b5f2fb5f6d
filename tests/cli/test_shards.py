"""--shard i/N parts and bilin merge: four shards run at once, merged, equal the single run
byte for byte; parts of other jobs, missing parts and duplicates are refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bilin_cli.cli.shards import Shard, parse_shard

ROOT = Path(__file__).resolve().parents[2]
MNIST = "sample_checkpoints/mnist"
SHAKE = "sample_checkpoints/shakespeare"
SAE_OUT = f"{SHAKE}/sae-mlp-out-L1"


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    (tmp_path / "sample_checkpoints").symlink_to(ROOT / "sample_checkpoints")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_whole(args: list[str]) -> str:
    """The single run, as a process of its own like the shards (numbers computed in one
    process state: the test process's BLAS threads may differ)."""
    proc = subprocess.run([sys.executable, "-m", "bilin_cli", *args], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_shards(args: list[str], n: int = 4) -> list[str]:
    """Run the n shards of ``bilin ARGS`` as concurrent processes; return the part names."""
    procs, parts = [], []
    for i in range(1, n + 1):
        part = f"part{i}of{n}"
        parts.append(part)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bilin_cli", *args, "--shard", f"{i}/{n}", "-o", part],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out == ""
    return parts


@pytest.mark.parametrize("args", [
    ["eig", MNIST, "--class", "all", "--top", "3", "--json"],
    ["eig", MNIST, "--class", "0-6", "--top", "2", "--format", "csv"],
    ["eig", MNIST, "--class", "1,4,7", "--top", "2"],
    ["spectrum", MNIST],
    ["spectrum", SHAKE, "--layer", "1", "--token", "0-9", "--json"],
    ["rank-features", SHAKE, "--layer", "1", "--sae-out", SAE_OUT, "--limit", "128", "--top",
     "10", "--format", "csv"],
    ["rank-features", SHAKE, "--layer", "1", "--sae-out", SAE_OUT, "--limit", "128", "--sort",
     "effective_rank", "--json"],
], ids=["eig-jsonl", "eig-csv", "eig-table", "spectrum-table", "spectrum-lm",
        "rank-features-csv", "rank-features-json"])
def test_four_concurrent_shards_merge_to_the_single_run(cli, scratch, args):
    parts = run_shards(args)
    single = run_whole(args)
    code, merged, err = cli("merge", *reversed(parts))
    assert code == 0, err
    assert merged == single
    # -o writes the same bytes
    code, _, err = cli("merge", *parts, "-o", "merged.out")
    assert code == 0 and Path("merged.out").read_text() == single


def test_rank_features_top_applies_after_the_merge(cli, scratch):
    """A part keeps every row of its shard, so the merged top 5 is the single run's top 5
    even where one shard holds all of them."""
    args = ["rank-features", SHAKE, "--layer", "1", "--sae-out", SAE_OUT, "--limit", "128",
            "--top", "5", "--json"]
    parts = run_shards(args, n=2)
    rows = [r for p in parts for r in json.loads(Path(p).read_text())["items"]]
    assert sorted(r["feature"] for r in rows) == list(range(128))
    code, merged, _ = cli("merge", *parts)
    assert merged == run_whole(args) and len(json.loads(merged)["features"]) == 5


def test_merge_output_format_can_be_chosen(cli, scratch):
    args = ["eig", MNIST, "--class", "2,5", "--top", "2", "--json"]
    parts = run_shards(args, n=2)
    code, csv_merged, err = cli("merge", *parts, "--format", "csv")
    assert code == 0 and csv_merged == run_whole([*args[:-1], "--format", "csv"])
    code, _, err = cli("merge", *parts, "--format", "npz")
    assert code == 2  # npz needs -o


def _parts(cli, prefix, args, n):
    names = []
    for i in range(1, n + 1):
        name = f"{prefix}{i}"
        code, _, err = cli(*args, "--shard", f"{i}/{n}", "-o", name)
        assert code == 0, err
        names.append(name)
    return names


def test_merge_refuses_mixed_missing_duplicate_and_foreign_parts(cli, scratch):
    base = ["eig", MNIST, "--class", "0-3", "--top", "2", "--json"]
    a1, a2, a3 = _parts(cli, "a", base, 3)
    [b1, b2, b3] = _parts(cli, "b", ["eig", MNIST, "--class", "0-3", "--top", "3", "--json"], 3)
    [c1, c2] = _parts(cli, "c", ["spectrum", MNIST, "--class", "0-3", "--json"], 2)
    Path("notes.txt").write_text("hello\n")

    def refused(*names, says):
        code, out, err = cli("merge", *names)
        assert code == 1 and out == "", err
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and says in err, err

    refused(a1, b2, a3, says="another job")
    refused(a1, b2, a3, says="--top")
    refused(a1, a3, says="missing part 2 of 3")
    refused(a1, a2, a2, a3, says="shard 2/3 is given twice")
    refused(a1, c2, says="bilin spectrum")
    refused(a1, "notes.txt", says="not a bilin part file")
    refused(a1, "no-such-part", says="no such")
    # the three of one job, in any order, merge
    code, out, _ = cli("merge", a3, a1, a2)
    assert code == 0 and len(out.splitlines()) == 4
    # a damaged part (a row lost) is refused
    doc = json.loads(Path(a2).read_text())
    doc["items"] = doc["items"][:-1]
    Path("damaged").write_text(json.dumps(doc))
    refused(a1, "damaged", a3, says="damaged")


@pytest.mark.parametrize("value,code,says", [
    ("0/4", 1, "counts from 1"), ("5/4", 1, "counts from 1"), ("1/0", 1, "N must be"),
    ("x", 2, "i/N"), ("1/", 2, "i/N"),
])
def test_bad_shard_values(cli, scratch, value, code, says):
    got, out, err = cli("eig", MNIST, "--class", "all", "--shard", value, "-o", "p")
    assert got == code and out == "" and says in err and not Path("p").exists()


def test_shard_does_not_combine_with_plot_show_chain(cli, scratch):
    for args in (["spectrum", MNIST, "--plot", "s.png"], ["eig", MNIST, "--class", "1,2",
                                                          "--show"]):
        code, _, err = cli(*args, "--shard", "1/2", "-o", "p")
        assert code == 2 and "--shard" in err


def test_part_to_stdout_and_merge(cli, scratch):
    args = ["spectrum", MNIST, "--class", "0-4", "--json"]
    for i in (1, 2):
        out = run_whole([*args, "--shard", f"{i}/2"])
        assert out.startswith('{"bilin_part": 1, ')
        Path(f"p{i}").write_text(out)
    code, merged, _ = cli("merge", "p1", "p2")
    assert merged == run_whole(args)


def test_shard_blocks_cover_everything_once():
    for n in (0, 1, 5, 10, 1024):
        for count in (1, 3, 4, 7):
            got = [x for i in range(1, count + 1)
                   for x in Shard(i, count).select(list(range(n)))]
            assert got == list(range(n))
            aligned = [x for i in range(1, count + 1)
                       for x in Shard(i, count).select(list(range(n)), align=32)]
            assert aligned == list(range(n))
            for i in range(1, count + 1):
                part = Shard(i, count).select(list(range(n)), align=32)
                assert not part or part[0] % 32 == 0
    assert parse_shard("2/4") == Shard(2, 4) and parse_shard(None) is None
