"""What the atheris harnesses share: a scratch folder, fixtures, the contract checks.

The contract every harness checks: for any input, bilin either succeeds or raises
``bilin_cli.BilinError``; the CLI exits 0, 1 or 2, prints at most one ``error:`` line on
stderr (exactly one when it exits 1) and never a traceback. Python warnings are turned
into errors inside each case, so a warning that leaks out counts as a crash.

Nothing here imports bilin_cli (or atheris) at module level: :func:`fuzz` imports bilin
under atheris' coverage instrumentation, and ``tests/robustness/test_fuzz_replay.py``
imports the harnesses without atheris installed.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import traceback
import types
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TOY = ROOT / "sample_checkpoints" / "toy"
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"
MEMORY_LIMIT = 3 * 1024**3  # RLIMIT_AS while fuzzing (bytes)


class ContractViolation(AssertionError):
    """The CLI broke its contract (exit code, error lines, a traceback on stderr)."""

    def __init__(self, message: str, problem: str = "", command: str = ""):
        super().__init__(message)
        self.problem, self.command = problem, command


# ----------------------------------------------------------------------------- scratch space

_BASE: list[Path] = []


def base() -> Path:
    """This process's scratch folder (in /dev/shm where there is one), removed at exit."""
    if not _BASE:
        parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        path = Path(tempfile.mkdtemp(prefix="bilin-fuzz-", dir=parent))
        atexit.register(shutil.rmtree, path, True)
        _BASE.append(path)
    return _BASE[0]


def fresh() -> Path:
    """An empty case folder (the same path every time, emptied), for one input."""
    case = base() / "case"
    if case.exists():
        shutil.rmtree(case)
    case.mkdir()
    return case


# ----------------------------------------------------------------------------- fixtures

def _f32(a):
    import numpy as np

    return np.ascontiguousarray(a, dtype=np.float32)


def _save(tensors: dict, path: Path) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: _f32(v) for k, v in tensors.items()}, str(path))


def toy_tensors() -> dict:
    from safetensors.numpy import load_file

    return load_file(str(TOY / "model.safetensors"))


def zoo_tensors() -> dict:
    """Tensors of many shapes and roles, so that a fuzzed map can name any of them."""
    import numpy as np

    r = np.random.default_rng(7)
    t = dict(toy_tensors())  # left.weight (16, 4), right.weight (16, 4), head.weight (12, 16)
    d, h, n_in, vocab = 4, 16, 6, 10
    t.update({
        "embed.weight": r.standard_normal((d, n_in)),
        "tok.weight": r.standard_normal((vocab, d)),
        "unembed.weight": r.standard_normal((vocab, d)),
        "blocks.0.weight": r.standard_normal((2 * h, d)),
        "blocks.0.bias": r.standard_normal(2 * h),
        "blocks.1.weight": r.standard_normal((2 * h, d)),
        "down.weight": r.standard_normal((d, h)),
        "down.bias": r.standard_normal(d),
        "cls.weight": r.standard_normal((3, d)),
        "cls.bias": r.standard_normal(3),
        "left.bias": r.standard_normal(h),
        "right.bias": r.standard_normal(h),
        "norm.weight": np.ones(d),
        "norm.bias": np.zeros(d),
        "final.scale": np.full(d, 0.5),
        "scalar": np.array(2.0),
        "attn.q1.weight": r.standard_normal((4, d)),
        "attn.q2.weight": r.standard_normal((4, d)),
        "attn.k1.weight": r.standard_normal((4, d)),
        "attn.k2.weight": r.standard_normal((4, d)),
        "attn.v.weight": r.standard_normal((4, d)),
        "attn.o.weight": r.standard_normal((d, 4)),
        "empty": np.zeros((0, d)),
        "cube": r.standard_normal((2, 2, 2)),
    })
    return t


def write_lm(folder: Path, d: int = 8, h: int = 12, vocab: int = 11, n_layer: int = 2) -> None:
    """The paper's bilinear transformer keys, with a character vocabulary in config.json."""
    import numpy as np

    r = np.random.default_rng(2)
    t = {"transformer.wte.weight": r.standard_normal((vocab, d)),
         "lm_head.weight": r.standard_normal((vocab, d))}
    for i in range(n_layer):
        pre = f"transformer.h.{i}."
        t[pre + "n1.weight"] = np.ones(d)
        t[pre + "mlp.w.weight"] = r.standard_normal((2 * h, d)) / np.sqrt(d)
        t[pre + "mlp.p.weight"] = r.standard_normal((d, h)) / np.sqrt(h)
    _save(t, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(
        {"n_layer": n_layer, "d_model": d, "vocab": [chr(97 + i) for i in range(vocab)]}))


def write_image(folder: Path, d: int = 6, n_in: int = 16, n_cls: int = 3) -> None:
    """The paper's image classifier (4x4 pixels): embed -> blocks.0 (stacked W, V) -> head."""
    import numpy as np

    r = np.random.default_rng(0)
    _save({"embed.weight": r.standard_normal((d, n_in)) / 4,
           "blocks.0.weight": r.standard_normal((2 * d, d)) / np.sqrt(d),
           "head.weight": r.standard_normal((n_cls, d)) / np.sqrt(d)},
          folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(
        {"d_hidden": d, "d_input": n_in, "d_output": n_cls, "n_layer": 1, "bias": False,
         "residual": False, "classes": [f"c{i}" for i in range(n_cls)]}))


def write_sae(folder: Path, d: int, f: int, fmt: str, seed: int) -> None:
    """An SAE in SAELens' format (sae_weights.safetensors + cfg.json) or the paper's."""
    import numpy as np

    r = np.random.default_rng(seed)
    enc = r.standard_normal((f, d))
    dec = r.standard_normal((d, f))
    dec /= np.linalg.norm(dec, axis=0)
    if fmt == "saelens":
        _save({"W_enc": enc.T, "b_enc": r.standard_normal(f), "W_dec": dec.T,
               "b_dec": r.standard_normal(d)}, folder / "sae_weights.safetensors")
        (folder / "cfg.json").write_text(json.dumps({"d_in": d, "d_sae": f}))
    else:
        _save({"w_enc.weight": enc, "w_enc.bias": r.standard_normal(f), "w_dec.weight": dec,
               "b_dec": r.standard_normal(d)}, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps({"d_model": d, "n_features": f, "k": 2}))


def write_fbt(folder: Path, d: int = 8, h: int = 12, vocab: int = 11, n_layer: int = 2,
              n_heads: int = 2) -> None:
    """A tiny fully bilinear transformer (another group's names, recognised by rule)."""
    import numpy as np

    r = np.random.default_rng(5)
    t = {"embed.weight": r.standard_normal((vocab, d)),
         "unembed.weight": r.standard_normal((vocab, d)), "final_norm.scale": np.ones(d)}
    for i in range(n_layer):
        pre = f"blocks.{i}."
        for name in ("q1", "q2", "k1", "k2", "v"):
            t[f"{pre}attn.{name}_proj.weight"] = r.standard_normal((d, d)) / np.sqrt(d)
        t[f"{pre}attn.o_proj.weight"] = r.standard_normal((d, d)) / np.sqrt(d)
        t[f"{pre}norm_attn.scale"] = np.ones(d)
        t[f"{pre}norm_mlp.scale"] = np.ones(d)
        t[f"{pre}mlp.w_m.weight"] = r.standard_normal((h, d)) / np.sqrt(d)
        t[f"{pre}mlp.w_n.weight"] = r.standard_normal((h, d)) / np.sqrt(d)
        t[f"{pre}mlp.w_proj.weight"] = r.standard_normal((d, h)) / np.sqrt(h)
    _save(t, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(
        {"n_layer": n_layer, "d_model": d, "n_heads": n_heads, "rope": False, "causal": True,
         "vocab": [chr(97 + i) for i in range(vocab)]}))


def _torch_shard(tensors: dict, path: Path) -> None:
    import torch

    torch.save({k: torch.from_numpy(_f32(v)) for k, v in tensors.items()}, path)


_FIXTURES: list[Path] = []


def fixtures() -> Path:
    """Fixed checkpoints the harnesses put fuzzed documents beside (built once per process).

    ``toy/`` (the shipped sample), ``zoo/zoo.safetensors`` (tensors for maps), ``shards/``
    (the toy split in two safetensors shards and two torch shards, with toy's config.json),
    ``sae12/`` and ``sae12p/`` (SAEs reading toy's 12 outputs: SAELens', the paper's),
    ``lm/`` (a 2-layer bilinear transformer, d = 8), ``sae8/``, ``sae8p/`` (SAEs for it),
    ``img/`` (a 4x4-pixel image classifier), ``fbt/`` (a tiny fully bilinear transformer)."""
    if _FIXTURES:
        return _FIXTURES[0]
    fx = base() / "fixtures"
    if fx.exists():
        shutil.rmtree(fx)
    fx.mkdir()
    shutil.copytree(TOY, fx / "toy")
    _save(zoo_tensors(), fx / "zoo" / "zoo.safetensors")
    toy = toy_tensors()
    shards = fx / "shards"
    _save({k: toy[k] for k in ("left.weight", "right.weight")},
          shards / "model-00001-of-00002.safetensors")
    _save({"head.weight": toy["head.weight"]}, shards / "model-00002-of-00002.safetensors")
    _torch_shard({k: toy[k] for k in ("left.weight", "right.weight")},
                 shards / "pytorch_model-00001-of-00002.bin")
    _torch_shard({"head.weight": toy["head.weight"]}, shards / "pytorch_model-00002-of-00002.bin")
    shutil.copy(TOY / "config.json", shards / "config.json")
    write_sae(fx / "sae12", 12, 6, "saelens", 1)
    write_sae(fx / "sae12p", 12, 6, "paper", 2)
    write_lm(fx / "lm")
    write_sae(fx / "sae8", 8, 6, "saelens", 3)
    write_sae(fx / "sae8p", 8, 5, "paper", 4)
    write_image(fx / "img")
    write_fbt(fx / "fbt")
    for name in ("lm", "fbt"):  # without the character vocabulary: for a tokenizer.json
        cfg = json.loads((fx / name / "config.json").read_text())
        del cfg["vocab"]
        (fx / f"{name}-config-novocab.json").write_text(json.dumps(cfg))
    _FIXTURES.append(fx)
    _FIXTURE_LISTING[:] = [listing(fx)]
    return fx


def rebuild_fixtures() -> Path:
    """Write the fixtures again (a command changed them: ``truncate ... -o @TOY --force``)."""
    _FIXTURES.clear()
    return fixtures()


# ----------------------------------------------------------------------------- the contract

def bilin_error() -> type:
    import bilin_cli

    return bilin_cli.BilinError


@contextlib.contextmanager
def strict_warnings():
    """Every Python warning raised inside is an exception (a leaked warning is a crash).

    torch says some warnings once per process (TypedStorage's deprecation); a command is a
    new process each time, so inside they are said every time, as each command would."""
    torch_storage = sys.modules.get("torch.storage")
    always = getattr(torch_storage, "_get_always_warn_typed_storage_removal", None)
    before = always() if always else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if always:
            torch_storage._set_always_warn_typed_storage_removal(True)
        try:
            yield
        finally:
            if always:
                torch_storage._set_always_warn_typed_storage_removal(before)


def api(fn, *args, **kwargs):
    """Call one API entry point: its result, or None where it raised BilinError."""
    try:
        return fn(*args, **kwargs)
    except bilin_error():
        return None


def exercise_model(model) -> None:
    """What a command does with a loaded model: eig of its first output direction."""
    import bilin_cli as bilin

    if model is None:
        return
    if getattr(model, "kind", None) == "lm":
        api(bilin.eig, model, token=0, top=3)
    else:
        api(bilin.eig, model, cls=0, top=3)
        api(bilin.eig, model, cls=0, top=2, layer=0, basis="hidden")


def exercise_path(path, map=None) -> None:  # noqa: A002 - the API's own name
    """info, load and eig of a checkpoint path, as the API's users call them."""
    import bilin_cli as bilin

    api(bilin.info, path, map=map)
    exercise_model(api(bilin.load, path, map=map))


def check_cli(code: object, out: str, err: str, args: list[str]) -> None:
    """The CLI's contract for one run (raises ContractViolation)."""
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    problem = None
    if code not in (0, 1, 2):
        problem = f"exit code {code!r}"
    elif "Traceback" in err or "Exception ignored" in err:
        problem = "a traceback on stderr"
    elif len(errors) > 1:
        problem = f"{len(errors)} error: lines"
    elif code == 1 and len(errors) != 1:
        problem = "exit 1 without exactly one error: line"
    elif code == 0 and errors:
        problem = "exit 0 with an error: line"
    if problem:
        raise ContractViolation(f"bilin {' '.join(map(repr, args))}: {problem}\n"
                                f"--- stderr ---\n{err[-3000:]}", problem,
                                args[0] if args else "")


TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.(tmp|old)")  # storage/atomic.py's temp_name
NON_FINITE = re.compile(r"(?<![\w.])[-+]?(?:nan|inf(?:inity)?)(?!\w)", re.IGNORECASE)
TEXT_OUTPUTS = (".json", ".jsonl", ".csv", ".tsv", ".txt", ".part", ".md", "")


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: relative path -> (size, mtime_ns)."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


_FIXTURE_LISTING: list[dict] = []


def check_leftovers(case: Path, args: list[str]) -> None:
    """No temporary file of bilin's is left in ``case`` or the fixtures, which a command
    may write beside (``-o @TOY``); fixtures it changed are written again."""
    fx = fixtures()
    for folder in (case, fx):
        for root, dirs, files in os.walk(folder):
            for name in (*files, *dirs):
                if TEMP_NAME.fullmatch(name):
                    raise ContractViolation(
                        f"bilin {' '.join(map(repr, args))}: stray temporary "
                        f"{Path(root, name)}", "a stray temporary file",
                        args[0] if args else "")
    if _FIXTURE_LISTING and listing(fx) != _FIXTURE_LISTING[0]:
        rebuild_fixtures()


def _non_finite(text: str) -> str | None:
    m = NON_FINITE.search(text)
    return None if m is None else text[max(0, m.start() - 60):m.end() + 20]


def check_finite_outputs(code: object, out: str, case: Path, args: list[str],
                         inputs: set[str] = frozenset()) -> None:
    """After exit 0, no NaN or infinity in stdout or in what the command wrote to ``case``
    (text files by their words, .npz/.npy by their float arrays). ``inputs``: names in
    ``case`` that are the command's inputs, not its outputs."""
    if code != 0:
        return
    found = _non_finite(out)
    where = "stdout"
    if found is None:
        for p in sorted(case.rglob("*")):
            rel = str(p.relative_to(case))
            if not p.is_file() or rel.split("/")[0] in inputs:
                continue
            found = _file_non_finite(p)
            if found is not None:
                where = rel
                break
    if found is not None:
        raise ContractViolation(f"bilin {' '.join(map(repr, args))}: exit 0 with a non-finite "
                                f"number in {where}: {found!r}",
                                "a non-finite number in the output", args[0] if args else "")


def _file_non_finite(p: Path) -> str | None:
    if p.suffix in (".npz", ".npy"):
        import numpy as np

        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except AttributeError:  # .npy: an array, not an NpzFile
            arrays = {"": np.load(p, allow_pickle=False)}
        except Exception:  # noqa: BLE001 - not ours to judge here
            return None
        for k, a in arrays.items():
            if a.dtype.kind in "fc" and not np.isfinite(a).all():
                return f"array {k!r}"
        return None
    if p.suffix in TEXT_OUTPUTS and p.stat().st_size < 1 << 22:
        return _non_finite(p.read_text("utf-8", "replace"))
    return None


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """``bilin ARGS`` in-process through the real entry point, from ``cwd``; the contract is
    checked. stdout is strict UTF-8 (as Python's is in a UTF-8 locale), stderr
    backslash-escaped (as Python's is)."""
    from bilin_cli.cli.app import main

    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict",
                              write_through=True)
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace",
                              write_through=True)
    saved = sys.argv, sys.stdout, sys.stderr
    here = os.getcwd()
    sys.argv, sys.stdout, sys.stderr = ["bilin", *args], stdout, stderr
    code: object = 0
    try:
        os.chdir(cwd)
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.stdout, sys.stderr = saved
        os.chdir(here)
    out = stdout.buffer.getvalue().decode("utf-8", "replace")
    err = stderr.buffer.getvalue().decode("utf-8", "replace")
    check_cli(code, out, err, args)
    return code, out, err


# ----------------------------------------------------------------------------- running

def limit_memory(limit: int = MEMORY_LIMIT) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _preimport() -> None:
    """Import every bilin_cli module (under instrumentation); the package is being
    reorganised, so a module that does not import is skipped."""
    import importlib
    import pkgutil

    import bilin_cli

    importlib.import_module("bilin_cli.api")
    for mod in pkgutil.walk_packages(bilin_cli.__path__, "bilin_cli."):
        if mod.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception as exc:  # noqa: BLE001 - a module mid-move
            print(f"fuzz: skipped {mod.name}: {exc}", file=sys.stderr)
    # Importing a submodule binds it on its package; where the package serves a function of
    # the same name lazily (bilin_cli.api.report), put the function back, as a normal run,
    # which never imports the submodule by itself first, sees it.
    for name in ("bilin_cli", "bilin_cli.api"):
        pkg = sys.modules.get(name)
        lazy = getattr(pkg, "__getattr__", None)
        if lazy is None:
            continue
        for attr, value in list(vars(pkg).items()):
            if isinstance(value, types.ModuleType):
                del vars(pkg)[attr]
                try:
                    served = lazy(attr)
                except AttributeError:
                    served = value
                vars(pkg)[attr] = value if isinstance(served, types.ModuleType) else served


def signature(exc: BaseException) -> str:
    """What tells two crashes apart: the exception type and the innermost bilin_cli frame
    (for a broken CLI contract: the command and what was wrong)."""
    if isinstance(exc, ContractViolation):
        return f"ContractViolation {exc.command}: {exc.problem}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "bilin_cli" in f.filename]
    where = (f"{Path(frames[-1].filename).name}:{frames[-1].name}" if frames
             else "outside bilin_cli")
    return f"{type(exc).__name__} at {where}"


def keep_going(one_input, target: str):
    """``one_input`` that records each new kind of crash (the input and its traceback, in
    ``$BILIN_FUZZ_FOUND``, default /tmp/bilin-fuzz-found) and goes on fuzzing; a crash
    already seen is not reported again. Hangs and memory are still libFuzzer's to catch."""
    found = Path(os.environ.get("BILIN_FUZZ_FOUND", "/tmp/bilin-fuzz-found"))
    found.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()

    def run(data: bytes) -> None:
        try:
            one_input(data)
        except Exception as exc:  # noqa: BLE001 - every exception is a finding
            sig = signature(exc)
            if sig in seen:
                return
            seen.add(sig)
            digest = hashlib.sha1(data).hexdigest()[:10]
            name = f"{target}-{len(seen):02d}-{digest}"
            (found / name).write_bytes(data)
            (found / f"{name}.txt").write_text(
                f"{sig}\n\n" + "".join(traceback.format_exception(exc)))
            print(f"\n=== new crash {name}: {sig}\n", file=sys.stderr, flush=True)

    return run


def instrument_modules(names: tuple[str, ...]) -> int:
    """Instrument the functions and methods defined in the modules ``names`` (imported
    here) in place, with atheris: modules of a package too large to instrument whole
    (atheris' import hook takes whole top-level packages), e.g. torch's unpickler.
    Returns how many functions were instrumented."""
    import importlib
    import inspect

    import atheris

    done = 0
    for name in names:
        mod = importlib.import_module(name)
        seen = set()
        todo = list(vars(mod).values())
        while todo:
            obj = todo.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isclass(obj) and obj.__module__ == name:
                todo.extend(vars(obj).values())
            elif isinstance(obj, (staticmethod, classmethod)):
                todo.append(obj.__func__)
            elif isinstance(obj, property):
                todo.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
            elif inspect.isfunction(obj) and obj.__module__ == name:
                try:
                    atheris.instrument_func(obj)
                    done += 1
                except Exception as exc:  # noqa: BLE001 - leave that one as it is
                    print(f"fuzz: not instrumented {name}.{obj.__qualname__}: {exc}",
                          file=sys.stderr)
    return done


def fuzz(one_input, argv: list[str] | None = None, also: tuple[str, ...] = ()) -> None:
    """Run ``one_input`` under atheris (libFuzzer flags from ``argv``), bilin instrumented,
    and the functions of the modules named in ``also`` (:func:`instrument_modules`: e.g.
    torch's unpickler, so its branches guide the fuzzer too). With
    ``BILIN_FUZZ_KEEP_GOING=1`` crashes are recorded and fuzzing goes on
    (:func:`keep_going`); otherwise the first one stops it, as libFuzzer does."""
    import atheris

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    limit_memory()
    if also:
        print(f"fuzz: instrumented {instrument_modules(also)} functions of {', '.join(also)}",
              file=sys.stderr)
    with atheris.instrument_imports(include=["bilin_cli"]):
        _preimport()
    fixtures()
    if os.environ.get("BILIN_FUZZ_KEEP_GOING") == "1":
        target = Path(sys.argv[0]).stem.removeprefix("fuzz_")
        one_input = keep_going(one_input, target)
    atheris.Setup(list(argv or sys.argv), one_input)
    atheris.Fuzz()


def replay(one_input, paths: list[str]) -> None:
    """``python fuzz_X.py --replay FILE...``: run inputs without atheris."""
    limit_memory()
    for p in paths:
        print(f"replay {p}", file=sys.stderr)
        one_input(Path(p).read_bytes())


def main(one_input, also: tuple[str, ...] = ()) -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--replay":
        replay(one_input, sys.argv[2:])
    else:
        fuzz(one_input, also=also)
