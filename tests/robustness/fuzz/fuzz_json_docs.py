"""Fuzz target: every JSON document bilin reads, chosen by the first byte.

``kind = data[0] % 7``; the rest of the input is the document:

0. ``config.json`` beside a ``model.safetensors`` (a folder; may carry ``bilin_map``):
   ``(data[0] // 7) % 4`` picks toy's, the LM's, the fully bilinear transformer's or the
   image classifier's (:data:`HOSTS`)
1. a ``--map`` file; ``(data[0] // 7) % 4`` picks the checkpoint it maps: ``zoo.safetensors``
   (tensors of many roles), the LM, the fully bilinear transformer or the image
   classifier; also passed as a dict. A map that loads a language model is also read by
   ``bilin.spectrum`` (and ``bilin.attention`` where it names attention heads)
2. ``model.safetensors.index.json`` in a folder of two safetensors shards (+ toy config)
3. ``pytorch_model.bin.index.json`` in a folder of two torch shards (+ toy config)
4. an SAELens SAE folder's ``cfg.json`` (beside ``sae_weights.safetensors``), as the
   output SAE of ``eig(toy, sae=..., feature=0)``
5. a paper-format SAE folder's ``config.json`` (beside its ``model.safetensors``), likewise
6. ``bilin merge`` part files: the document is split at :data:`PART_SEP` into parts
   ``p1``, ``p2``, ... (at most 8); ``(data[0] // 7) % 6`` picks the output option
   (none, ``--json``, ``--format csv``, ``--format tsv``, ``--format npz -o out.npz``,
   ``-o out``); run through the CLI in-process, its outputs checked as fuzz_cli's are
   (no NaN or infinity after exit 0, no temporary file left).

    python tests/robustness/fuzz/fuzz_json_docs.py WORK_CORPUS \
        tests/robustness/fuzz/corpus/json_docs -timeout=20 -rss_limit_mb=3072
"""

from __future__ import annotations

import json
import os
import shutil

import fuzz_common as common

KINDS = ("config", "map", "index", "index_bin", "sae_cfg", "sae_config", "merge")
PART_SEP = b"\n\x00\n"
HOSTS = ("toy", "lm", "fbt", "img")  # config.json beside these; --map for zoo or the last 3
MAP_HOSTS = ("zoo/zoo.safetensors", "lm/model.safetensors", "fbt/model.safetensors",
             "img/model.safetensors")
MERGE_FORMATS = ([], ["--json"], ["--format", "csv"], ["--format", "tsv"],
                 ["--format", "npz", "-o", "out.npz"], ["-o", "out"])
_TOY_MODEL: list = []


def seed(kind: str, doc: bytes, fmt: int = 0) -> bytes:
    """The fuzz input for a document of ``kind`` (for the corpus); ``fmt``: the merge
    output or the config/map host (an index into :data:`MERGE_FORMATS`, :data:`HOSTS`,
    :data:`MAP_HOSTS`)."""
    return bytes([KINDS.index(kind) + 7 * fmt]) + doc


def _exercise_map_model(path, map_) -> None:
    """info, load, eig; for a model with attention heads, attention and spectrum too."""
    import bilin_cli as bilin

    common.api(bilin.info, path, map=map_)
    model = common.api(bilin.load, path, map=map_)
    common.exercise_model(model)
    if model is not None and getattr(model, "kind", None) == "lm":
        common.api(bilin.spectrum, model, token=[0, 1])
        if getattr(model, "attention_keys", None):
            common.api(bilin.attention, model, top=2, pairs=2, tokens=2)


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
            host = HOSTS[(data[0] // 7) % len(HOSTS)]
            os.link(fx / host / "model.safetensors", folder / "model.safetensors")
            (folder / "config.json").write_bytes(doc)
            common.exercise_path(folder)
        elif kind == "map":
            (case / "map.json").write_bytes(doc)
            target = fx / MAP_HOSTS[(data[0] // 7) % len(MAP_HOSTS)]
            _exercise_map_model(target, case / "map.json")
            as_dict = _as_dict(doc)
            if as_dict is not None:
                _exercise_map_model(target, as_dict)
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
            args = ["merge", *names, *MERGE_FORMATS[(data[0] // 7) % len(MERGE_FORMATS)]]
            code, out, _ = common.run_cli(args, case)
            common.check_leftovers(case, args)
            common.check_finite_outputs(code, out, case, args, set(names))


if __name__ == "__main__":
    common.main(one_input)
