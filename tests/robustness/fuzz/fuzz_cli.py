"""Fuzz target: the ``bilin`` command line, in-process, with up to two fuzzed files.

The input is ``ARGS SEP FILE1 SEP FILE2 [SEP FILE3 [SEP FILE4]]`` (:data:`SEP` holds NUL
bytes): ARGS is the
command line, one argument per line (cut at a NUL byte and decoded as Python decodes argv,
with surrogateescape; at most 32 of them). A whole
argument (or the value of ``--opt=VALUE``) may name a fixture or a case file:

* ``@TOY`` ``@IMG`` ``@LM`` ``@FBT`` ``@ZOO`` ``@SAE`` ``@SAEP`` ``@SAE12`` ``@SAE12P``: fixed
  checkpoints (see :func:`fuzz_common.fixtures`): toy, a 4x4 image classifier, a 2-layer
  bilinear LM (d = 8), a fully bilinear transformer, the zoo of tensors, SAEs for the LM
  (SAELens', the paper's) and for toy;
* ``@F1.ext`` ... ``@F4.ext``: FILE1 ... FILE4 written as ``f1.ext`` ... ``f4.ext`` in the
  case folder (``ext`` up to 12 letters or digits; ``@F1.npz:3`` keeps the ``:3``);
* ``@LMT`` / ``@FBTT``: the LM / the fully bilinear transformer in a folder of the case,
  without config.json's character vocabulary, FILE2 as its ``tokenizer.json``;
* ``@OUT.ext``: a path in the case folder that does not exist yet (for ``-o``).

Every other argument has its slashes replaced by ``_`` (except a shard ``i/N``), and the
command runs from the case folder, so nothing is read or written outside it.
Acceptable: exit 0, 1 or 2, at most one ``error:`` line (exactly one on exit 1), no
traceback; after exit 0 no NaN or infinity in stdout or the files written; no temporary
file of bilin's left behind; an exception out of the entry point is a crash.

    python tests/robustness/fuzz/fuzz_cli.py WORK_CORPUS tests/robustness/fuzz/corpus/cli \
        -timeout=20 -rss_limit_mb=3072
"""

from __future__ import annotations

import os
import re
import shutil

import fuzz_common as common

MAX_ARGS = 32
FIXED = {"TOY": "toy", "IMG": "img", "LM": "lm", "ZOO": "zoo/zoo.safetensors",
         "SAE": "sae8", "SAEP": "sae8p", "SAE12": "sae12", "SAE12P": "sae12p", "FBT": "fbt"}
PLACEHOLDER = re.compile(
    r"(?P<opt>--[A-Za-z0-9-]+=)?@(?P<name>TOY|IMG|LMT|LM|FBTT|FBT|ZOO|SAE12P|SAE12|SAEP|SAE"
    r"|F1|F2|F3|F4|OUT)"
    r"(?P<ext>(?:\.[A-Za-z0-9]{1,12})?)(?P<index>(?::-?\d{1,6})?)")
SEP = b"\0\xffFILE\xff\0"
SHARD = re.compile(r"(--shard=)?\d{1,4}/\d{1,4}")


TOKENIZED = {"LMT": "lm", "FBTT": "fbt"}


def seed(args: list[str], *files: bytes) -> bytes:
    """The fuzz input for a command line and its files (for the corpus)."""
    files = files or (b"", b"")
    if len(files) == 1:
        files = (*files, b"")
    return SEP.join(["\n".join(args).encode("utf-8", "surrogateescape"), *files])


def _tokenized(case, fx, name: str, tokenizer: bytes):
    """``@LMT``/``@FBTT``: the fixture's weights, its config without a vocabulary, and the
    fuzzed tokenizer.json, in ``case/<name>``."""
    folder = case / name.lower()
    if not folder.exists():
        folder.mkdir()
        src = fx / TOKENIZED[name]
        try:  # a hard link: a command replacing it (-o @LMT --force) leaves the fixture be
            os.link(src / "model.safetensors", folder / "model.safetensors")
        except OSError:
            shutil.copy(src / "model.safetensors", folder)
        shutil.copy(fx / f"{TOKENIZED[name]}-config-novocab.json", folder / "config.json")
        (folder / "tokenizer.json").write_bytes(tokenizer)
    return folder


def argv(data: bytes, case) -> list[str]:
    """The command line an input stands for, its files written into ``case``."""
    head, *rest = data.split(SEP, 4)
    rest += [b""] * (4 - len(rest))
    files = {f"F{i}": f for i, f in enumerate(rest, 1)}
    fx = common.fixtures()
    args = []
    for raw in head.split(b"\n")[:MAX_ARGS]:
        # execve passes C strings: an argument ends at its first NUL, as it would in argv
        arg = raw.partition(b"\0")[0].decode("utf-8", "surrogateescape")
        m = PLACEHOLDER.fullmatch(arg)
        if m is None:
            if not SHARD.fullmatch(arg):
                arg = arg.replace("/", "_").replace("\\", "_")
            args.append(arg)
            continue
        name, ext = m["name"], m["ext"]
        if name in TOKENIZED:
            if ext:
                args.append(arg.replace("/", "_"))
                continue
            path = _tokenized(case, fx, name, files["F2"])
        elif name in FIXED:
            if ext:  # no name next to a fixture: it could land in the fixtures folder
                args.append(arg.replace("/", "_"))
                continue
            path = fx / FIXED[name]
        elif name == "OUT":
            path = case / f"out{ext}"
        else:
            path = case / f"{name.lower()}{ext}"
            if not path.exists():
                path.write_bytes(files[name])
        args.append(f"{m['opt'] or ''}{path}{m['index']}")
    return args


def one_input(data: bytes) -> None:
    case = common.fresh()
    args = argv(data, case)
    inputs = {p.name for p in case.iterdir()}
    with common.strict_warnings():
        code, out, _ = common.run_cli(args, case)
    common.check_leftovers(case, args)
    common.check_finite_outputs(code, out, case, args, inputs)


if __name__ == "__main__":
    common.main(one_input)
