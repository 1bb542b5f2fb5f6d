"""Start-up time of ``bilin``, whole processes, against a bare ``python -c "import numpy"``.

Every figure is the best of N runs in this one run (so the ratios compare like with like
on whatever else the machine is doing):

* ``python -c "import numpy"``: the floor any numpy CLI pays;
* ``bilin --version`` and ``bilin --help``: no command module, no numpy;
* ``bilin eig sample_checkpoints/mnist --class 3 --top 5``: the fast path, whole process;
* a shell-style loop of 10 ``bilin eig --class c`` calls (c = 0..9), as users run it.

    python benchmarks/bench_startup.py [--repeat N]

bilin_cli is compiled to bytecode first, as ``pip install .`` leaves it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST = str(ROOT / "sample_checkpoints" / "mnist")
# The console script next to this interpreter (as users run it), else python -m bilin_cli.
_SCRIPT = Path(sys.executable).with_name("bilin")
BILIN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bilin_cli"]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.decode()[-500:]}")


def best(cmds: list[list[str]], repeat: int) -> float:
    """Best wall time of running ``cmds`` one after another, over ``repeat`` tries."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for cmd in cmds:
            run(cmd)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement (best of)")
    args = parser.parse_args()
    n = args.repeat
    # `pip install .` compiles every module to bytecode; an editable install (or
    # PYTHONDONTWRITEBYTECODE) leaves bilin_cli to be compiled from source at every start
    # (~45 ms here). Time what an installed bilin does.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "bilin_cli")],
                   check=True, stdout=subprocess.DEVNULL)
    numpy = best([[sys.executable, "-c", "import numpy"]], n)
    rows = [
        ('python -c "import numpy"', numpy, 1),
        ("bilin --version", best([BILIN + ["--version"]], n), 1),
        ("bilin --help", best([BILIN + ["--help"]], n), 1),
        ("bilin eig mnist --class 3 --top 5",
         best([BILIN + ["eig", MNIST, "--class", "3", "--top", "5"]], n), 1),
        ("bilin eig mnist --class 3 --json",
         best([BILIN + ["eig", MNIST, "--class", "3", "--json"]], n), 1),
        ("10 x bilin eig mnist --class c",
         best([BILIN + ["eig", MNIST, "--class", str(c)] for c in range(10)], max(2, n // 3)),
         10),
    ]
    print(f"best of {n} (the loop: best of {max(2, n // 3)}), python {sys.version.split()[0]}")
    print(f"{'command':40s} {'seconds':>9s} {'per call':>9s} {'x numpy':>8s}")
    for name, seconds, calls in rows:
        per = seconds / calls
        print(f"{name:40s} {seconds:9.3f} {per:9.3f} {per / numpy:8.2f}")


if __name__ == "__main__":
    main()
