"""The one in-memory model the rest of bilin works on, with NumPy forward passes.

A :class:`BilinearLayer` is ``y = P((W x + b_w) * (V x + b_v)) + b_p`` with
``W, V : (h, d)`` and ``P : (o, h)`` (``P = None`` means the identity, ``o = h``).
A :class:`BilinearModel` is an optional embedding ``E : (d, n_in)``, its layers
(loaded on demand, so a command reads only the tensors it needs), an optional
head, and the residual flag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bilin_cli.core.errors import BilinError


@dataclass
class BilinearLayer:
    """One bilinear layer; arrays are float32 or float64, never half precision."""

    W: np.ndarray  # (h, d) left
    V: np.ndarray  # (h, d) right
    P: np.ndarray | None = None  # (o, h); None = identity
    b_w: np.ndarray | None = None  # (h,)
    b_v: np.ndarray | None = None  # (h,)
    b_p: np.ndarray | None = None  # (o,)

    @property
    def d(self) -> int:
        return self.W.shape[1]

    @property
    def h(self) -> int:
        return self.W.shape[0]

    @property
    def o(self) -> int:
        return self.h if self.P is None else self.P.shape[0]

    @property
    def has_bias(self) -> bool:
        return self.b_w is not None or self.b_v is not None

    def hidden(self, x: np.ndarray) -> np.ndarray:
        """``g = (W x + b_w) * (V x + b_v)``; ``x : (..., d) -> (..., h)``."""
        left = x @ self.W.T
        right = x @ self.V.T
        if self.b_w is not None:
            left = left + self.b_w
        if self.b_v is not None:
            right = right + self.b_v
        return left * right

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``y = P g(x) + b_p``; ``x : (..., d) -> (..., o)`` (no residual)."""
        g = self.hidden(x)
        y = g if self.P is None else g @ self.P.T
        return y if self.b_p is None else y + self.b_p


@dataclass
class LayerShape:
    """A layer's dimensions and flags, known from headers alone (no data read)."""

    d: int
    h: int
    o: int
    bias: bool
    out_space: str  # "logits", "outputs", "residual", "hidden"


@dataclass
class BilinearModel:
    """A bilinear network as bilin sees it.

    ``kind`` is ``"classifier"`` (embed -> layers -> head; the last layer's ``P`` is
    the head, so its output space is the logits), ``"toy"`` (one layer, ``P`` = head)
    or ``"lm"`` (each layer has its own ``P`` into the residual stream; ``head`` is
    the unembedding that ``--token`` reads).
    """

    layout: str
    kind: str
    shapes: list[LayerShape]
    _load_layer: Callable[[int, type], BilinearLayer] = field(repr=False)
    _load_tensor: Callable[..., np.ndarray | None] = field(repr=False)
    residual: bool = False
    output_names: list[str] | None = None
    input_shape: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    embed_key: str | None = None
    head_key: str | None = None
    meta: dict = field(default_factory=dict)

    embed_shape: tuple[int, int] | None = None
    # LMs: per layer, the key of the gain (and bias) of the norm right before the MLP, if
    # stored, and that norm's kind: "rms" (x / rms(x)), "layer" ((x - mean) / std) or "none".
    mlp_norm_keys: list[str | None] = field(default_factory=list)
    mlp_norm_bias_keys: list[str | None] = field(default_factory=list)
    norm_kind: str = "rms"
    # Fully bilinear transformers: one entry per block with bilinear attention (see
    # bilin_cli.model.attention), what config.json says about it, and how its input is scaled.
    attention_keys: list = field(default_factory=list)
    attention_settings: object = None  # bilin_cli.model.attention.AttentionSettings
    attention_norm: str = "scale"
    _load_attention: Callable | None = field(default=None, repr=False)

    @property
    def n_attention(self) -> int:
        return len(self.attention_keys)

    def attention(self, index: int, dtype: type = np.float32):
        """Block ``index``'s bilinear attention (:class:`bilin_cli.model.attention.AttentionLayer`),
        its linear pre-scale (or RMS gain) folded into the projections."""
        n = self.n_attention
        if n == 0:
            raise BilinError(f"this {self.layout} has no bilinear attention (two query and two "
                             "key projections per block)")
        if not -n <= index < n:
            raise BilinError(f"block {index} is out of range: this model has {n} attention "
                             f"block{'s' if n != 1 else ''} (0..{n - 1})")
        return self._load_attention(index % n, dtype)

    @property
    def n_layers(self) -> int:
        return len(self.shapes)

    def layer(self, index: int, dtype: type = np.float32) -> BilinearLayer:
        return self._load_layer(self.resolve_layer(index), dtype)

    def embed(self, dtype: type = np.float32, rows: slice | None = None) -> np.ndarray | None:
        """``E : (d, n_in)`` (a classifier) or ``(vocab, d)`` (an LM), or None; only ``rows``
        of it if given."""
        return self._load_tensor(self.embed_key, dtype, rows) if self.embed_key else None

    def mlp_norm_gain(self, index: int, dtype: type = np.float32) -> np.ndarray | None:
        """Gain ``(d,)`` of the RMS norm in front of layer ``index``'s MLP, or None."""
        keys = self.mlp_norm_keys
        key = keys[self.resolve_layer(index)] if keys else None
        return self._load_tensor(key, dtype) if key else None

    def mlp_norm_bias(self, index: int, dtype: type = np.float32) -> np.ndarray | None:
        """Bias ``(d,)`` of the norm in front of layer ``index``'s MLP (LayerNorm), or None."""
        keys = self.mlp_norm_bias_keys
        key = keys[self.resolve_layer(index)] if keys else None
        return self._load_tensor(key, dtype) if key else None

    def head(self, dtype: type = np.float32, rows: slice | None = None) -> np.ndarray | None:
        """Classifier head ``(n_classes, d_last)`` or unembedding ``(vocab, d_model)``; only
        ``rows`` of it if given."""
        return self._load_tensor(self.head_key, dtype, rows) if self.head_key else None

    def resolve_layer(self, index: int | None) -> int:
        """Default: the only layer, or the last one; negative indices count from the end."""
        n = self.n_layers
        if index is None:
            return n - 1
        if not -n <= index < n:
            raise BilinError(
                f"layer {index} is out of range: this model has {n} bilinear "
                f"layer{'s' if n != 1 else ''} (0..{n - 1})"
            )
        return index % n

    @property
    def n_outputs(self) -> int | None:
        """Number of classes / vocabulary entries the head defines, if any."""
        if self.kind == "lm":
            return self.meta.get("head_rows")
        return self.shapes[-1].o

    def forward(self, x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """Logits of a classifier or toy model; ``x : (N, n_in) -> (N, n_out)``.

        Language models have attention between their bilinear MLPs, which bilin does
        not model; use :meth:`BilinearLayer.forward` for one MLP. Weights near float32's
        limit can overflow a float32 pass: it is then redone in float64 (noted once in
        :attr:`warnings`) and, if even that overflows, refused in one error.
        """
        if self.kind == "lm":
            raise BilinError(
                f"{self.layout}: a full forward pass needs attention, which bilin does not "
                "model; the per-layer MLP forward is exact"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            y = self._forward(x, dtype)
            if np.isfinite(y).all():
                return y
            if not np.isfinite(np.asarray(x, dtype=np.float64)).all():
                raise BilinError("the inputs hold NaN or infinity")
            if np.dtype(dtype) != np.float64:
                y = self._forward(x, np.float64)
                if np.isfinite(y).all():
                    message = ("the forward pass overflowed float32; recomputed in float64")
                    if message not in self.warnings:
                        self.warnings.append(message)
                    return y
        raise BilinError("the forward pass overflows even in float64 (logits beyond 1e308); "
                         "rescale the checkpoint")

    def _forward(self, x: np.ndarray, dtype: type) -> np.ndarray:
        h = np.asarray(x, dtype=dtype)
        E = self.embed(dtype)
        if E is not None:
            h = h @ E.T
        for i in range(self.n_layers):
            layer = self.layer(i, dtype)
            y = layer.forward(h)
            if self.residual:
                # The skip path of the layer feeding the head goes through the head too.
                feeds_head = i == self.n_layers - 1 and layer.P is not None
                y = y + (h @ self.head(dtype).T if feeds_head else h)
            h = y
        return h
