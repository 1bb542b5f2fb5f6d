"""Noise that native libraries print themselves: a Rust panic inside ``tokenizers`` and
PIL's DecompressionBombWarning never reach stderr; each ends as one error line or not at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# A tokenizer.json that loads, but whose post-processor names a special token it does not
# define: encoding with special tokens panics inside the Rust library (tokenizers 0.2x).
PANICKY = {"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
           "post_processor": {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "X", "type_id": 0}}],
                              "pair": [], "special_tokens": {}}}


def test_a_rust_panic_is_one_error_and_no_backtrace(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(PANICKY))
    script = textwrap.dedent(f"""
        from bilin_cli.core.errors import BilinError
        from bilin_cli.storage import vocabulary as v
        tok = v._tokenizer({str(path)!r})
        try:
            v._call("encode", {str(path)!r}, lambda: tok.encode("a"))
        except BilinError as exc:
            print("error:", exc)
        import sys
        print("after", file=sys.stderr)  # stderr works again after the call
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env={"RUST_BACKTRACE": "1", "PATH": ""})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("error: ") and "failed to encode" in run.stdout
    assert run.stderr == "after\n"


def _huge_png(path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (the data is never decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("command", ["explain", "adversarial"])
def test_a_decompression_bomb_is_refused_quietly(cli, tmp_path, command):
    pytest.importorskip("PIL")
    from safetensors.numpy import save_file

    r = np.random.default_rng(0)
    ck = tmp_path / "m.safetensors"
    save_file({"embed.weight": r.standard_normal((6, 16)).astype(np.float32),
               "blocks.0.w": r.standard_normal((6, 6)).astype(np.float32),
               "blocks.0.v": r.standard_normal((6, 6)).astype(np.float32),
               "head.weight": r.standard_normal((3, 6)).astype(np.float32)}, str(ck))
    png = tmp_path / "bomb.png"
    _huge_png(png, 10_000, 10_000)  # 1e8 pixels: past PIL's warning threshold
    args = (["explain", ck, "--input", png] if command == "explain"
            else ["adversarial", ck, "--target", "0", "--input", png])
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = cli(*args)
    assert not [w for w in caught if "Decompression" in type(w.message).__name__], caught
    assert code in (1, 2), (out, err)
    assert "DecompressionBomb" not in err and "Warning" not in err
    assert err.count("\n") <= 1 or "Usage" in err


_WARNING_COMMAND = textwrap.dedent("""
    import sys, warnings
    import bilin_cli.api.loading as loading
    real = loading.info
    def noisy(*args, **kwargs):
        warnings.warn("a library's deprecation notice", UserWarning)
        return real(*args, **kwargs)
    loading.info = noisy
    from bilin_cli.cli import entry
    sys.argv = ["bilin", "info", "sample_checkpoints/toy", "--json"]
    entry.main()
""")


@pytest.mark.parametrize("env_warnings", [None, "default"])
def test_the_console_script_leaks_no_library_warning(env_warnings):
    """A Python warning some library raises never reaches a user's stderr; -W or
    PYTHONWARNINGS still shows it to someone debugging."""
    import os
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    if env_warnings:
        env["PYTHONWARNINGS"] = env_warnings
    run = subprocess.run([sys.executable, "-c", _WARNING_COMMAND], capture_output=True,
                         text=True, timeout=120, env=env,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["layout"]
    assert ("UserWarning" in run.stderr) == (env_warnings is not None), run.stderr
