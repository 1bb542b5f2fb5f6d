"""Opening checkpoints: ``load``, ``info``, ``suggest_map``."""

from __future__ import annotations

from bilin_cli.api._types import PathLike
from bilin_cli.core.errors import BilinError, option
from bilin_cli.model.bilinear import BilinearModel

# ----------------------------------------------------------------------------- loading


def load(path: PathLike, map: dict | PathLike | None = None) -> BilinearModel:  # noqa: A002
    """Open a checkpoint and recognise its layout, as every ``bilin`` command does.

    ``path`` is a ``.safetensors`` file, a Hugging Face style directory or a PyTorch state
    dict; ``map`` names the tensors of each role where the layout is not recognised: a dict
    (the JSON object ``bilin info --suggest-map`` prints) or the path of such a JSON file.
    Tensors are read lazily (memory-mapped) when a function needs them.

    Example::

        >>> m = bilin.load("sample_checkpoints/mnist")
        >>> m.kind, m.n_layers, (m.shapes[0].d, m.shapes[0].h, m.shapes[0].o)
        ('classifier', 1, (512, 512, 10))
    """
    return _opened(path, map)[1]


def _opened(path: PathLike, map: dict | PathLike | None = None):  # noqa: A002
    """``(checkpoint, model)``: the container (for ``bilin info``'s description) and the
    model read from it, as :func:`load` returns it."""
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import recognise

    checkpoint = open_checkpoint(path)
    model = recognise(checkpoint, _mapping(map))
    # Where it came from: truncate() finds a shipped sample's own test split with these.
    model.meta.setdefault("source_path", str(path))
    model.meta.setdefault("source_config", dict(checkpoint.config))
    return checkpoint, model


def _mapping(map: dict | PathLike | None) -> dict | None:  # noqa: A002
    """A map given as a dict, or read from the JSON file it names."""
    from bilin_cli.storage.maps import read_map

    return map if map is None or isinstance(map, dict) else read_map(map)


def _model(model: BilinearModel | PathLike) -> BilinearModel:
    return model if isinstance(model, BilinearModel) else load(model)


def info(path: PathLike, map: dict | PathLike | None = None) -> dict:  # noqa: A002
    """What a checkpoint holds, from headers and config.json only (``bilin info``).

    Returns the ``bilin info --json`` document: ``layout``, ``kind``, ``layers`` (each
    with ``d``, ``h``, ``o``), ``dtype``, ``parameters``, ``outputs``... A checkpoint whose
    layout is not recognised is described tensor by tensor (``recognised: false``, with
    the reason) unless ``map`` was given, in which case the map's error is raised.

    Example::

        >>> doc = bilin.info("sample_checkpoints/mnist")
        >>> doc["layout"], [(L["d"], L["h"], L["o"]) for L in doc["layers"]]
        ('image classifier', [(512, 512, 10)])
    """
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import recognise
    from bilin_cli.storage.summary import describe, describe_unrecognised

    checkpoint = open_checkpoint(path)
    try:
        model = recognise(checkpoint, _mapping(map))
    except BilinError as exc:
        if map is not None:
            raise
        return describe_unrecognised(checkpoint, str(exc))
    return describe(checkpoint, model)


def suggest_map(path: PathLike) -> tuple[dict, list[str]]:
    """A ready-to-edit map for a checkpoint (``bilin info --suggest-map``).

    Returns ``(mapping, ambiguous)``: the roles found (the JSON object the CLI prints,
    which :func:`load` takes as ``map=``) and the ambiguities to settle in it by hand.
    """
    from bilin_cli.storage.containers import open_checkpoint
    from bilin_cli.storage.layouts import suggest_map as suggest

    return suggest(open_checkpoint(path))


def _dataset(model: BilinearModel, data: PathLike | None, dtype: type):
    """Labelled data: ``data``, else a shipped sample's own test split (an error if none)."""
    from bilin_cli.storage.data import default_data_path, load_dataset

    source = model.meta.get("source_path")
    path = data if data is not None else (
        default_data_path(source, model.meta.get("source_config", {}))
        if source is not None else None)
    if path is None:
        raise BilinError(f"no data: give {option('--data FILE.npz', 'data=FILE.npz')} (arrays x, "
                         f"y) or an idx directory")
    return load_dataset(path, dtype)
