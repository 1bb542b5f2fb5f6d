"""Fuzz target: every JSON document bilin reads, chosen by the first byte.

``kind = data[0] % 7``; the rest of the input is the document:

0. ``config.json`` beside toy's ``model.safetensors`` (a folder; may carry ``bilin_map``)
1. a ``--map`` file for ``zoo.safetensors`` (tensors of many roles); also passed as a dict
2. ``model.safetensors.index.json`` in a folder of two safetensors shards (+ toy config)
3. ``pytorch_model.bin.index.json`` in a folder of two torch shards (+ toy config)
4. an SAELens SAE folder's ``cfg.json`` (beside ``sae_weights.safetensors``), as the
   output SAE of ``eig(toy, sae=..., feature=0)``
5. a paper-format SAE folder's ``config.json`` (beside its ``model.safetensors``), likewise
6. ``bilin merge`` part files: the document is split at :data:`PART_SEP` into parts
   ``p1``, ``p2``, ... (at most 8); ``(data[0] // 7) % 4`` picks the output option
   (none, ``--json``, ``--format csv``, ``--format tsv``); run through the CLI in-process.

    python tests/robustness/fuzz/fuzz_json_docs.py WORK_CORPUS \
        tests/robustness/fuzz/corpus/json_docs -timeout=20 -rss_limit_mb=3072
"""

from __future__ import annotations

import json
import shutil

import fuzz_common as common

KINDS = ("config", "map", "index", "index_bin", "sae_cfg", "sae_config", "merge")
PART_SEP = b"\n\x00\n"
MERGE_FORMATS = ([], ["--json"], ["--format", "csv"], ["--format", "tsv"])
_TOY_MODEL: list = []


def seed(kind: str, doc: bytes, fmt: int = 0) -> bytes:
    """The fuzz input for a document of ``kind`` (for the corpus)."""
    return bytes([KINDS.index(kind) + 7 * fmt]) + doc


def _toy_model():
    import bilin_cli as bilin

    if not _TOY_MODEL:
        _TOY_MODEL.append(bilin.load(common.fixtures() / "toy"))
    return _TOY_MODEL[0]


def _as_dict(doc: bytes):
    try:
        obj = json.loads(doc)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def one_input(data: bytes) -> None:
    if not data:
        return
    kind, doc = KINDS[data[0] % len(KINDS)], data[1:]
    fx = common.fixtures()
    case = common.fresh()
    with common.strict_warnings():
        if kind == "config":
            folder = case / "ckpt"
            folder.mkdir()
            shutil.copy(fx / "toy" / "model.safetensors", folder)
            (folder / "config.json").write_bytes(doc)
            common.exercise_path(folder)
        elif kind == "map":
            (case / "map.json").write_bytes(doc)
            zoo = fx / "zoo" / "zoo.safetensors"
            common.exercise_path(zoo, map=case / "map.json")
            as_dict = _as_dict(doc)
            if as_dict is not None:
                common.exercise_path(zoo, map=as_dict)
        elif kind in ("index", "index_bin"):
            folder = case / "ckpt"
            suffix = ".safetensors" if kind == "index" else ".bin"
            shutil.copytree(fx / "shards", folder,
                            ignore=lambda _, names: [n for n in names
                                                     if n.endswith((".bin", ".safetensors"))
                                                     and not n.endswith(suffix)])
            name = "model.safetensors.index.json" if kind == "index" else \
                "pytorch_model.bin.index.json"
            (folder / name).write_bytes(doc)
            common.exercise_path(folder)
        elif kind in ("sae_cfg", "sae_config"):
            import bilin_cli as bilin

            folder = case / "sae"
            shutil.copytree(fx / ("sae12" if kind == "sae_cfg" else "sae12p"), folder)
            (folder / ("cfg.json" if kind == "sae_cfg" else "config.json")).write_bytes(doc)
            common.api(bilin.eig, _toy_model(), sae=folder, feature=0, top=3)
        else:
            parts = doc.split(PART_SEP)[:8]
            names = []
            for i, part in enumerate(parts, 1):
                (case / f"p{i}").write_bytes(part)
                names.append(f"p{i}")
            common.run_cli(["merge", *names, *MERGE_FORMATS[(data[0] // 7) % 4]], case)


if __name__ == "__main__":
    common.main(one_input)
