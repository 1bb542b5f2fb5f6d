"""One job split over machines: ``--shard i/N`` parts and ``bilin merge``.

``--shard i/N`` (1-based ``i``, as ``$SLURM_ARRAY_TASK_ID`` with ``--array=1-N``) keeps
the i-th of N contiguous, nearly equal blocks of a command's directions or features (the
blocks of ``numpy.array_split``: the first ``n mod N`` blocks hold one more; rank-features
splits whole chunks of 32 features, 256 with ``--device``, as it computes them) and writes
a **part file** instead of the result: one JSON document on one line,

    {"bilin_part": 1, "command": "eig", "job": {...}, "shard": 2, "shards": 4,
     "total": 10, "format": "json", "many": true, "warnings": [...], "head": {...},
     "items": [...]}

* ``job``: what makes the result, the command's every option except ``--shard``, ``-o``,
  ``--force``, ``--threads``, ``--json``/``--format`` (paths as given: run the shards from
  one directory), so parts of different jobs are told apart; ``total``: how many
  directions or features the whole job has;
* ``format``: the output the job asked for (``table``, ``json``, ``csv``, ``tsv``,
  ``npz``), which ``bilin merge`` prints unless told otherwise; ``many``: whether the job
  names many directions (JSON Lines) or one (one document);
* ``head``: what every part shares: the single run's JSON document with its rows left
  out (their places kept), and ``_dtype`` (spectrum) or ``_top`` (rank-features' --top);
* ``items``: this shard's results, in job order: eig ``{"key", "doc"}`` (``doc`` is what
  ``bilin eig --json`` prints for that direction), spectrum ``{"key", "row",
  "eigenvalues"}``, rank-features every row of the shard (not only its top N: ``--top``
  applies after the merge, to the union, as a single run applies it).

``bilin merge`` checks that the parts come from one job, that none is missing and none
is given twice, and prints exactly what the single run prints.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from bilin_cli.errors import BilinError
from bilin_cli.render.printable import printable
from bilin_cli.storage.atomic import atomic_write

PART_VERSION = 1
MAX_PART_BYTES = 4 * 1024**3
NOT_JOB = {"shard", "output", "force", "threads", "json_", "fmt"}


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def bounds(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` of this shard among ``n`` items (numpy.array_split's blocks)."""
        q, r = divmod(n, self.count)
        i = self.index - 1
        start = i * q + min(i, r)
        return start, start + q + (1 if i < r else 0)

    def select(self, items, align: int = 1):
        """This shard's block of ``items``. With ``align`` the blocks start at multiples of
        it: work done in chunks of ``align`` (rank-features) then meets every item in the
        same chunk, at the same place, as the single run does, so float32 results agree to
        the last bit."""
        n = len(items)
        start, stop = self.bounds(-(-n // align))
        return items[min(start * align, n):min(stop * align, n)]


def parse_shard(text: str | None) -> Shard | None:
    """``i/N`` with ``1 <= i <= N``: a malformed value is a usage error, one out of range
    an ``error:`` line."""
    if text is None:
        return None
    import typer

    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if m is None:
        raise typer.BadParameter(f"{str(text)[:40]!r} is not i/N (e.g. 2/4: the second of "
                                 "four parts, counted from 1)", param_hint="--shard")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or n > 1_000_000:
        raise BilinError(f"--shard {text}: N must be in 1..1000000")
    if not 1 <= i <= n:
        raise BilinError(f"--shard {text}: i counts from 1 to N ({n}); got {i}")
    return Shard(i, n)


def shard_option(ctx, param, value):
    """Click callback: ``--shard i/N`` as a :class:`Shard` (None when not given)."""
    return parse_shard(value)


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def job_identity(command: str) -> dict:
    """The running command's options that make its result (see :data:`NOT_JOB`)."""
    from typer._click.globals import get_current_context

    params = get_current_context().params
    return {"command": command,
            **{k: _plain(v) for k, v in sorted(params.items()) if k not in NOT_JOB}}


def write_part(command: str, shard: Shard, total: int, fmt: str, items: list,
               output: str | None, force: bool, *, many: bool = True,
               head: dict | None = None, warnings: list[str] | None = None) -> None:
    """Write a part file to ``output`` (atomically) or stdout."""
    from bilin_cli.render.output import _clean

    doc = {"bilin_part": PART_VERSION, "command": command, "job": job_identity(command),
           "shard": shard.index, "shards": shard.count, "total": total, "format": fmt,
           "many": many, "warnings": list(warnings or []), "head": head or {}, "items": items}
    text = json.dumps(_clean(doc), allow_nan=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    data = text.encode("utf-8")
    atomic_write(output, lambda fh: fh.write(data), force)
    print(f"wrote {output} (part {shard} of {command}, {len(items)} of {total})",
          file=sys.stderr)


# ---- reading and merging


def read_part(path: str | os.PathLike) -> dict:
    from bilin_cli.storage.files import parse_json, regular_file

    p = regular_file(path, "part file")
    name = printable(p)
    if p.stat().st_size > MAX_PART_BYTES:
        raise BilinError(f"{name}: larger than {MAX_PART_BYTES} bytes; not a part file")
    with open(p, "rb") as fh:
        start = fh.read(32)
        if not start.startswith(b'{"bilin_part": '):
            raise BilinError(f"{name}: not a bilin part file (write one with --shard i/N -o "
                             "PART)")
        raw = start + fh.read()
    doc = parse_json(raw, name)
    keys = ("command", "job", "shard", "shards", "total", "format", "items")
    if not isinstance(doc, dict) or any(k not in doc for k in keys):
        raise BilinError(f"{name}: a damaged part file (a key is missing); write it again")
    if doc["bilin_part"] != PART_VERSION:
        raise BilinError(f"{name}: part format {doc['bilin_part']}; this bilin reads "
                         f"{PART_VERSION}")
    doc["_path"] = name
    return doc


def _differs(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join("--" + k.rstrip("_").replace("_", "-") for k in keys[:4])


def check_parts(parts: list[dict]) -> list[dict]:
    """The parts of one job, every shard once, in shard order; else one error line."""
    first = parts[0]
    for p in parts[1:]:
        if p["command"] != first["command"]:
            raise BilinError(f"{p['_path']} is a part of 'bilin {p['command']}', "
                             f"{first['_path']} of 'bilin {first['command']}': merge the parts "
                             "of one job")
        if p["job"] != first["job"] or p["shards"] != first["shards"] \
                or p["total"] != first["total"] or p["format"] != first["format"]:
            what = _differs(p["job"], first["job"]) or (
                "the number of shards" if p["shards"] != first["shards"] else "the output")
            raise BilinError(f"{p['_path']} is from another job than {first['_path']} "
                             f"(they differ in {what}): merge the parts of one job")
    by_shard: dict[int, dict] = {}
    for p in parts:
        if p["shard"] in by_shard:
            raise BilinError(f"shard {p['shard']}/{p['shards']} is given twice "
                             f"({by_shard[p['shard']]['_path']} and {p['_path']})")
        by_shard[p["shard"]] = p
    n = first["shards"]
    missing = [i for i in range(1, n + 1) if i not in by_shard]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        raise BilinError(f"missing part{'s' if len(missing) > 1 else ''} {shown} of {n}: "
                         "merge needs every shard")
    ordered = [by_shard[i] for i in range(1, n + 1)]
    count = sum(len(p["items"]) for p in ordered)
    if count != first["total"]:
        raise BilinError(f"the parts hold {count} results, the job has {first['total']}: "
                         "a part file is damaged; write it again")
    return ordered


def merge(parts: list[dict], fmt: str, output: str | None, force: bool) -> None:
    """Print (or write to ``output``) exactly what the single run prints, in ``fmt``."""
    from bilin_cli.render.output import Stream, emit

    first = parts[0]
    items = [it for p in parts for it in p["items"]]
    warnings = first.get("warnings") or []
    command = first["command"]
    if command == "eig":
        from bilin_cli.render.views import eig_doc_report

        reports = [(it["key"], eig_doc_report(it["doc"], warnings)) for it in items]
        if not first["many"]:
            emit(reports[0][1], fmt, output, force)
            return
        stream = Stream(fmt, output, force)
        for key, report in reports:
            stream.add(report, key)
        stream.close()
    elif command == "spectrum":
        from bilin_cli.render.views import spectrum_report

        doc = dict(first["head"])
        dtype = doc.pop("_dtype")
        doc["directions"] = [it["row"] for it in items]
        report = spectrum_report(doc)
        report.arrays = {"eigenvalues": np.stack(
            [np.asarray(it["eigenvalues"], dtype=dtype) for it in items])}
        report.warnings = warnings
        emit(report, fmt, output, force)
    elif command == "rank-features":
        from bilin_cli.render.views import rank_features_report

        doc = dict(first["head"])
        top = doc.pop("_top", None)
        rows = sorted(items, key=lambda r: r["feature"])
        rows = sort_feature_rows(rows, doc.get("sorted_by", "top_k_share"))
        doc["features_ranked"] = len(rows)
        doc["features"] = rows[:top]
        report = rank_features_report(doc)
        report.warnings = warnings
        emit(report, fmt, output, force)
    else:
        raise BilinError(f"{first['_path']}: parts of 'bilin {command}' cannot be merged")


def sort_feature_rows(rows: list[dict], sort_by: str) -> list[dict]:
    """rank-features' order (a stable sort of rows in feature order): most low-rank first."""
    if sort_by == "effective_rank":
        return sorted(rows, key=lambda r: r["effective_rank"])
    return sorted(rows, key=lambda r: -r["top_k_share"])
