"""Dotted tensor names taken apart: the module a tensor belongs to, its leaf, its parent.

``blocks.0.mlp.w.weight`` is the parameter ``weight`` of the module ``blocks.0.mlp.w``,
whose leaf is ``w`` and whose parent is ``blocks.0.mlp``. Which trailing names count as
a parameter (and are cut off) is the caller's choice: the structure search cuts only
``.weight``, the transformer rules also a norm's ``.scale``, ``.gain`` or ``.g``.
"""

from __future__ import annotations

import re

WEIGHT_ONLY: tuple[str, ...] = (".weight",)


def module_name(key: str, suffixes: tuple[str, ...] = WEIGHT_ONLY) -> str:
    """``key`` less the first of ``suffixes`` it ends with (``x.weight`` -> ``x``)."""
    for suffix in suffixes:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def leaf_name(key: str, suffixes: tuple[str, ...] = WEIGHT_ONLY) -> str:
    """The last dotted part of the module of ``key`` (``a.b.weight`` -> ``b``)."""
    return module_name(key, suffixes).rsplit(".", 1)[-1]


def parent_name(key: str, suffixes: tuple[str, ...] = WEIGHT_ONLY) -> str:
    """The module above the module of ``key`` (``a.b.weight`` -> ``a``); ``""`` at the top."""
    m = module_name(key, suffixes)
    return m.rsplit(".", 1)[0] if "." in m else ""


def natural_key(text: str) -> list:
    """A sort key that orders the numbers in names by value (``h.2`` before ``h.10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
