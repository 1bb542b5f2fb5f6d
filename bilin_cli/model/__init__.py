"""The bilinear model in memory: layers, attention, Q(u) and its eigendecomposition conventions.

``from bilin_cli.model import BilinearModel`` (the path before the layers became folders)
still works: the model's classes are served from :mod:`bilin_cli.model.bilinear`.
"""

from bilin_cli.model.bilinear import BilinearLayer, BilinearModel, LayerShape  # noqa: F401
