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

``bilin merge`` checks every part against :data:`PART_SCHEMA` (every field it reads, with
its type and bounds: a part whose field is missing, of the wrong type or out of range is one
``error:`` line naming the file and the field, before anything is merged), that the parts
come from one job, that none is missing and none is given twice, and prints exactly what
the single run prints.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from bilin_cli.core.errors import BilinError
from bilin_cli.core.printable import printable, say_wrote
from bilin_cli.storage.atomic import atomic_write

PART_VERSION = 1
MAX_PART_BYTES = 4 * 1024**3
MAX_SHARDS = 1_000_000  # --shard i/N takes N up to this
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
    if n < 1 or n > MAX_SHARDS:
        raise BilinError(f"--shard {text}: N must be in 1..{MAX_SHARDS}")
    if not 1 <= i <= n:
        raise BilinError(f"--shard {text}: i counts from 1 to N ({n}); got {i}")
    return Shard(i, n)


# The context of the running command that has --shard: its parameters (all parsed by the
# time it writes a part) name the job, so parts of different jobs are never merged.
_running = threading.local()


def shard_option(ctx, param, value):
    """Click callback: ``--shard i/N`` as a :class:`Shard` (None when not given)."""
    _running.context = ctx
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
    ctx = getattr(_running, "context", None)
    params = ctx.params if ctx is not None else {}
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
    say_wrote(output, f"part {shard} of {command}, {len(items)} of {total}")


# ---- the part file's schema
#
# Every field ``bilin merge`` reads, with its type and bounds, written once: a check is a
# function ``(value, where)`` that returns nothing or raises :class:`_Bad` naming the field
# (``items[3].doc.eigenvalues[7]``). Objects may hold more keys than the schema names (they
# pass through to the JSON output as the single run wrote them); every key merge or the
# views read is here. Rules that relate fields (lengths, a dtype's range) are in
# :func:`_consistent`.

MAX_COUNT = 2**53  # any count or index: exact as a float, far past any real job
_TEXT_LIMIT = 1_000_000


class _Bad(Exception):
    """A field that does not match the schema: where it is, what it should be."""

    def __init__(self, where: str, expected: str, found: object = None, *,
                 missing: bool = False, problem: str | None = None):
        super().__init__(where)
        self.where, self.expected, self.found = where, expected, found
        self.missing, self.problem = missing, problem

    def line(self) -> str:
        field = f"field {self.where or '(the document)'}"
        if self.missing:
            return f"{field} is missing"
        if self.problem:
            return f"{field}: {self.problem}"
        return f"{field} must be {self.expected}, not {_describe(self.found)}"


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**15 else f"an integer of {len(str(abs(value)))} digits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return f"the string {printable(value, 40)!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _at(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


Check = Callable[[object, str], None]


def _integer(lo: int = 0, hi: int = MAX_COUNT) -> Check:
    def check(v, where):
        if type(v) is not int or not lo <= v <= hi:
            raise _Bad(where, f"an integer in {lo}..{hi}", v)
    return check


def _finite(v) -> bool:
    if type(v) is int:
        return abs(v) <= 2**1023
    return type(v) is float and math.isfinite(v)


def _number(v, where):
    if not _finite(v):
        raise _Bad(where, "a finite number", v)


def _numbers(min_len: int = 0) -> Check:
    """A list of finite numbers (checked at C speed: eigenvectors hold many)."""
    def check(v, where):
        if type(v) is not list:
            raise _Bad(where, "a list of numbers", v)
        if len(v) < min_len:
            raise _Bad(where, f"a list of at least {min_len} numbers", v)
        ok = set(map(type, v)) <= {int, float}
        if ok:
            try:
                ok = bool(np.isfinite(np.asarray(v, dtype=np.float64)).all())
            except OverflowError:
                ok = False
        if not ok:
            i = next(i for i, x in enumerate(v) if not _finite(x))
            raise _Bad(_at(where, i), "a finite number", v[i])
    return check


def _text(v, where):
    if type(v) is not str or len(v) > _TEXT_LIMIT:
        raise _Bad(where, "a string", v)


def _flag(v, where):
    if type(v) is not bool:
        raise _Bad(where, "true or false", v)


def _one_of(*choices: str) -> Check:
    def check(v, where):
        if type(v) is not str or v not in choices:
            raise _Bad(where, "one of " + ", ".join(repr(c) for c in choices), v)
    return check


def _key(v, where):
    if type(v) is not str or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,99}", v):
        raise _Bad(where, "a direction key (class3, token12, feature8, file0)", v)


def _nullable(check: Check) -> Check:
    def nullable(v, where):
        if v is not None:
            check(v, where)
    return nullable


def _list_of(check: Check, min_len: int = 0, max_len: int | None = None) -> Check:
    def list_of(v, where):
        if type(v) is not list:
            raise _Bad(where, "a list", v)
        if len(v) < min_len or (max_len is not None and len(v) > max_len):
            raise _Bad(where, f"a list of {min_len}..{max_len if max_len is not None else ''} "
                       "entries", v)
        for i, x in enumerate(v):
            check(x, _at(where, i))
    return list_of


def _obj(required: dict[str, Check], optional: dict[str, Check] | None = None) -> Check:
    def obj(v, where):
        if type(v) is not dict:
            raise _Bad(where, "an object", v)
        for k, check in required.items():
            if k not in v:
                raise _Bad(_at(where, k), "", missing=True)
            check(v[k], _at(where, k))
        for k, check in (optional or {}).items():
            if k in v:
                check(v[k], _at(where, k))
    return obj


def _tagged(tag: str, variants: dict[str, Check]) -> Check:
    """An object whose ``tag`` field says which of ``variants`` checks the rest."""
    def tagged(v, where):
        if type(v) is not dict:
            raise _Bad(where, "an object", v)
        if tag not in v:
            raise _Bad(_at(where, tag), "", missing=True)
        _one_of(*variants)(v[tag], _at(where, tag))
        variants[v[tag]](v, where)
    return tagged


_INDEX = _integer()
_COUNT = _integer()
_DTYPE = _one_of("float32", "float64")
_DIRECTION = _tagged("kind", {
    "class": _obj({"index": _INDEX}, {"name": _text, "path": _text}),
    "token": _obj({"index": _INDEX}, {"string": _text}),
    "sae_feature": _obj({"sae": _text, "feature": _INDEX, "format": _text}),
    "file": _obj({"path": _text, "norm": _number}),
    "chain": _obj({"from_layer": _INDEX, "eigenvector": _INDEX, "eigenvalue": _number}),
    "attention_query": _obj({"layer": _INDEX, "head": _INDEX, "query_token": _INDEX},
                            {"query_string": _text}),
})
_TOKEN_ENTRY = _obj({"token": _INDEX, "text": _nullable(_text), "value": _number})
_TOKEN_READING = _obj({"positive": _list_of(_TOKEN_ENTRY), "negative": _list_of(_TOKEN_ENTRY)})
# What ``bilin eig --json`` prints for one direction (Decomposition.as_dict).
_EIG_DOC = _obj({
    "eigenvalues": _numbers(min_len=1),
    "eigenvectors": _list_of(_numbers(min_len=1)),
    "basis": _text,
    "layer": _INDEX,
    "direction": _DIRECTION,
    "n_eigenvalues": _COUNT,
    "effective_rank": _nullable(_number),
    "sum_abs_eigenvalues": _nullable(_number),
    "top_k": _COUNT,
    "top_k_share": _nullable(_number),
    "layout": _text,
    "dtype": _DTYPE,
    "method": _text,
    "notes": _list_of(_text),
}, {
    "bias_parts": _nullable(_obj({}, {"interaction": _text, "linear": _nullable(_numbers()),
                                      "linear_norm": _nullable(_number),
                                      "constant": _nullable(_number)})),
    "input_shape": _nullable(_list_of(_integer(1, 2**31), max_len=8)),
    "tokens": _nullable(_list_of(_TOKEN_READING)),
})
_SPECTRUM_ROW = _obj({
    "direction": _DIRECTION, "n_eigenvalues": _COUNT, "top_positive": _numbers(),
    "top_negative": _numbers(), "sum_abs_eigenvalues": _nullable(_number),
    "effective_rank": _nullable(_number), "k50": _nullable(_COUNT), "k90": _nullable(_COUNT),
    "k99": _nullable(_COUNT),
})
_CERTIFICATE = _obj({}, {
    "features": _COUNT, "dense": _COUNT, "excluded": _COUNT, "cut": _nullable(_number),
    "lanczos_steps": _list_of(_COUNT, max_len=64), "screened_dense_float32": _nullable(_COUNT),
    "failure_probability_per_feature": _nullable(_number),
    "failure_probability_bound": _nullable(_number),
    "max_excluded_upper_bound": _nullable(_number),
})
# Per command: what ``head`` and each entry of ``items`` hold.
_COMMANDS: dict[str, tuple[Check, Check]] = {
    "eig": (_obj({}), _obj({"key": _key, "doc": _EIG_DOC})),
    "spectrum": (
        _obj({"layout": _text, "layer": _INDEX, "n_eigenvalues": _integer(1), "_dtype": _DTYPE}),
        _obj({"key": _key, "row": _SPECTRUM_ROW, "eigenvalues": _numbers(min_len=1)})),
    "rank-features": (
        _obj({"layer": _INDEX, "sae_out": _text, "k": _COUNT, "measure": _text,
              "sorted_by": _one_of("top_k_share", "effective_rank"), "features_ranked": _COUNT},
             {"route": _text, "notes": _list_of(_text), "certificate": _nullable(_CERTIFICATE),
              "_top": _nullable(_COUNT)}),
        _obj({"feature": _INDEX, "top_k_share": _number, "effective_rank": _number,
              "sum_abs_eigenvalues": _nullable(_number), "top_eigenvalues": _numbers()})),
}


def _formats() -> tuple[str, ...]:
    from bilin_cli.render.output import FORMATS

    return FORMATS


def _envelope() -> Check:
    return _obj({
        "bilin_part": _integer(PART_VERSION, PART_VERSION),
        "command": _one_of(*_COMMANDS),
        "job": _obj({}),
        "shard": _integer(1, MAX_SHARDS),
        "shards": _integer(1, MAX_SHARDS),
        "total": _integer(1),
        "format": _one_of(*_formats()),
        "many": _flag,
        "warnings": _list_of(_text),
        "head": _obj({}),
        "items": _list_of(_obj({})),
    })


def _within(values, dtype: str, where: str) -> None:
    """Finite numbers (checked by the schema: a number, a list of them or a rectangular list
    of lists) that also fit ``dtype``: float32 stops at 3.4e38."""
    if dtype == "float64" or values is None:
        return
    arr = np.abs(np.asarray(values, dtype=np.float64))
    big = float(np.finfo(np.float32).max)
    if arr.size and arr.max() > big:
        at = np.unravel_index(int(np.argmax(arr > big)), arr.shape)
        value = values
        for i in at:
            where, value = _at(where, int(i)), value[int(i)]
        raise _Bad(where, "", problem=f"{_describe(value)} is beyond the range of {dtype}")


def _consistent(doc: dict) -> None:
    """The rules that relate fields, once every field has its type."""
    if doc["shard"] > doc["shards"]:
        raise _Bad("shard", "", problem=f"shard {doc['shard']} of {doc['shards']} (counts "
                   "from 1 to shards)")
    items = doc["items"]
    if len(items) > doc["total"]:
        raise _Bad("items", "", problem=f"{len(items)} results, more than the job's total "
                   f"({doc['total']})")
    if not doc["many"] and doc["total"] != 1:
        raise _Bad("total", "", problem=f"{doc['total']} results in a job of one direction "
                   "(many is false)")
    command = doc["command"]
    head_check, item_check = _COMMANDS[command]
    head_check(doc["head"], "head")
    for i, item in enumerate(items):
        item_check(item, _at("items", i))
    seen: dict = {}
    for i, item in enumerate(items):
        name = item["feature"] if command == "rank-features" else item["key"]
        field = "feature" if command == "rank-features" else "key"
        if name in seen:
            raise _Bad(_at(_at("items", i), field), "", problem=f"{_describe(name)} is also "
                       f"items[{seen[name]}]; every result is in one place once")
        seen[name] = i
        where = _at("items", i)
        if command == "eig":
            _consistent_eig(item["doc"], _at(where, "doc"))
        elif command == "spectrum":
            n = doc["head"]["n_eigenvalues"]
            if len(item["eigenvalues"]) != n:
                raise _Bad(_at(where, "eigenvalues"), "", problem=f"{len(item['eigenvalues'])}"
                           f" values, head.n_eigenvalues says {n}")
            _within(item["eigenvalues"], doc["head"]["_dtype"], _at(where, "eigenvalues"))
    if command == "rank-features":
        cert = doc["head"].get("certificate") or {}
        if cert.get("excluded"):
            need = ("lanczos_steps", "dense", "features", "max_excluded_upper_bound", "cut",
                    "failure_probability_per_feature", "failure_probability_bound")
            for k in need:
                if cert.get(k) is None:
                    raise _Bad(_at("head.certificate", k), "", missing=True)


def _consistent_eig(doc: dict, where: str) -> None:
    k = len(doc["eigenvalues"])
    vecs = doc["eigenvectors"]
    if len(vecs) != k:
        raise _Bad(_at(where, "eigenvectors"), "", problem=f"{len(vecs)} vectors for {k} "
                   "eigenvalues")
    d = len(vecs[0])
    for i, v in enumerate(vecs):
        if len(v) != d:
            raise _Bad(_at(_at(where, "eigenvectors"), i), "", problem=f"{len(v)} entries, "
                       f"eigenvectors[0] has {d}")
    tokens = doc.get("tokens")
    if tokens and len(tokens) != k:
        raise _Bad(_at(where, "tokens"), "", problem=f"{len(tokens)} readings for {k} "
                   "eigenvalues")
    if doc["sum_abs_eigenvalues"] is not None:
        for f in ("effective_rank", "top_k_share"):
            if doc[f] is None:
                raise _Bad(_at(where, f), "a finite number (sum_abs_eigenvalues is given)",
                           None)
    dtype = doc["dtype"]
    bias = doc.get("bias_parts") or {}
    for name, values in (("eigenvalues", doc["eigenvalues"]), ("eigenvectors", vecs),
                         ("bias_parts.linear", bias.get("linear")),
                         ("bias_parts.constant", bias.get("constant"))):
        _within(values, dtype, f"{where}.{name}")


def validate_part(doc: object, name: str) -> None:
    """Check a parsed part file against the schema; a BilinError naming ``name`` and the
    first field that does not fit."""
    if type(doc) is dict and type(doc.get("bilin_part")) is int \
            and doc["bilin_part"] != PART_VERSION:
        raise BilinError(f"{name}: part format {doc['bilin_part']}; this bilin reads "
                         f"{PART_VERSION}")
    try:
        _envelope()(doc, "")
        _consistent(doc)
    except _Bad as bad:
        raise BilinError(f"{name}: not a valid part file: {bad.line()} (write it again with "
                         "--shard i/N -o PART)") from None


# ---- reading and merging


def read_part(path: str | os.PathLike) -> dict:
    from bilin_cli.storage.files import parse_json, regular_file
    from bilin_cli.storage.inputs import register_input

    p = regular_file(path, "part file")
    register_input(p)  # merge -o may not replace a part it reads
    name = printable(p)
    if p.stat().st_size > MAX_PART_BYTES:
        raise BilinError(f"{name}: larger than {MAX_PART_BYTES} bytes; not a part file")
    with open(p, "rb") as fh:
        start = fh.read(32)
        if not start.startswith(b'{"bilin_part": '):
            raise BilinError(f"{name}: not a bilin part file (write one with --shard i/N -o "
                             "PART)")
        raw = start + fh.read(MAX_PART_BYTES + 1 - len(start))
    if len(raw) > MAX_PART_BYTES:
        raise BilinError(f"{name}: larger than {MAX_PART_BYTES} bytes; not a part file")
    doc = parse_json(raw, name)
    validate_part(doc, name)
    doc["_path"] = name
    return doc


def _differs(a: dict, b: dict) -> str:
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join("--" + k.rstrip("_").replace("_", "-") for k in keys[:4])


def check_parts(parts: list[dict]) -> list[dict]:
    """The parts of one job, every shard once, in shard order; else one error line.

    Every part has passed :func:`validate_part`. Nothing here grows with what a part
    claims (``shards``, ``total``), only with what the parts hold."""
    first = parts[0]
    for p in parts[1:]:
        if p["command"] != first["command"]:
            raise BilinError(f"{p['_path']} is a part of 'bilin {p['command']}', "
                             f"{first['_path']} of 'bilin {first['command']}': merge the parts "
                             "of one job")
        if p["job"] != first["job"] or p["shards"] != first["shards"] \
                or p["total"] != first["total"] or p["format"] != first["format"] \
                or p["many"] != first["many"]:
            what = _differs(p["job"], first["job"]) or (
                "the number of shards" if p["shards"] != first["shards"] else "the output")
            raise BilinError(f"{p['_path']} is from another job than {first['_path']} "
                             f"(they differ in {what}): merge the parts of one job")
        if first["command"] == "spectrum":
            for k in ("n_eigenvalues", "_dtype"):
                if p["head"][k] != first["head"][k]:
                    raise BilinError(f"{p['_path']}: field head.{k} ({_describe(p['head'][k])})"
                                     f" differs from {first['_path']}'s "
                                     f"({_describe(first['head'][k])}): merge the parts of "
                                     "one job")
    by_shard: dict[int, dict] = {}
    for p in parts:
        if p["shard"] in by_shard:
            raise BilinError(f"shard {p['shard']}/{p['shards']} is given twice "
                             f"({by_shard[p['shard']]['_path']} and {p['_path']})")
        by_shard[p["shard"]] = p
    n = first["shards"]
    if len(by_shard) < n:
        # The first few missing shards, found in at most len(parts) + 10 steps.
        missing: list[int] = []
        i = 0
        while len(missing) < 10 and i < n:
            i += 1
            if i not in by_shard:
                missing.append(i)
        n_missing = n - len(by_shard)
        shown = ", ".join(map(str, missing)) + (", ..." if n_missing > len(missing) else "")
        raise BilinError(f"missing part{'s' if n_missing > 1 else ''} {shown} of {n}: "
                         "merge needs every shard")
    ordered = [by_shard[i] for i in range(1, n + 1)]
    count = sum(len(p["items"]) for p in ordered)
    if count != first["total"]:
        raise BilinError(f"the parts hold {count} results, the job has {first['total']}: "
                         "a part file is damaged; write it again")
    field = "feature" if first["command"] == "rank-features" else "key"
    seen: dict = {}
    for p in ordered:
        for i, item in enumerate(p["items"]):
            name = item[field]
            if name in seen:
                raise BilinError(f"{p['_path']}: field items[{i}].{field} "
                                 f"({_describe(name)}) is also in {seen[name]}: a result is "
                                 "given twice; write the parts again")
            seen[name] = p["_path"]
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
