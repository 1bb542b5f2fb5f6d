"""Fuzz target: one .safetensors file, opened by ``bilin.info``, ``bilin.load`` and ``eig``.

The fuzz bytes are the whole file (``model.safetensors``, no config.json beside it).

    python tests/robustness/fuzz/fuzz_safetensors.py WORK_CORPUS \
        tests/robustness/fuzz/corpus/safetensors -timeout=20 -rss_limit_mb=3072
"""

from __future__ import annotations

import fuzz_common as common


def one_input(data: bytes) -> None:
    case = common.fresh()
    path = case / "model.safetensors"
    path.write_bytes(data)
    with common.strict_warnings():
        common.exercise_path(path)


if __name__ == "__main__":
    common.main(one_input)
